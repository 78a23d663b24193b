#!/usr/bin/env python
"""Convert a PyTorch weights file (.pt / .pth) into safetensors, for striate.io.load_torch_weights.

striate never unpickles: a .pt file is a pickle and loading one can execute code.  Run this once,
where torch is installed, to turn it into a safetensors file (plain tensors, nothing executable)::

    python tools/pt_to_safetensors.py resnet18-f37072fd.pth resnet18.safetensors
    python tools/pt_to_safetensors.py checkpoint.pt weights.safetensors --key model --dtype float32

The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``, PyTorch's
restricted unpickler that only rebuilds tensors and plain containers and refuses anything else.

What it accepts: a ``state_dict`` (a mapping of names to tensors), or a training checkpoint
holding one under a key (``state_dict``, ``model``, ``model_state_dict``, ``net``, ``weights``,
or the one named with ``--key``).  Non-tensor entries are dropped (and listed); tensors that
share storage are copied apart (safetensors stores each tensor once); ``--dtype float32``
widens half/bfloat16 tensors (striate computes in float32/float64 anyway).  Key names are kept
as they are: torchvision's names load directly into striate's models.

Exit status 0 on success, 2 with a one-line message on a user error (missing file, no state_dict
found, refused by weights_only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CANDIDATE_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")


class ConvertError(Exception):
    pass


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the tool needs torch by definition
        raise ConvertError("this converter needs PyTorch: pip install torch") from exc
    return torch


def find_state_dict(obj, key: str | None = None):
    """The mapping of tensors inside ``obj`` (a state_dict, or a checkpoint dict holding one)."""
    torch = _import_torch()

    def is_state_dict(d):
        return isinstance(d, dict) and d and any(isinstance(v, torch.Tensor) for v in d.values())

    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise ConvertError(f"no key {key!r} in the file (top-level keys: {_keys(obj)})")
        obj = obj[key]
        if not is_state_dict(obj):
            raise ConvertError(f"{key!r} does not hold a mapping of tensors")
        return obj
    if is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for k in CANDIDATE_KEYS:
            if is_state_dict(obj.get(k)):
                return obj[k]
    raise ConvertError(f"no state_dict found (top-level keys: {_keys(obj)}); name it with --key")


def _keys(obj) -> str:
    return ", ".join(map(str, list(obj)[:10])) if isinstance(obj, dict) else type(obj).__name__


def convert(src, dst, key: str | None = None, dtype: str | None = None, quiet: bool = False) -> dict:
    """Convert ``src`` (.pt/.pth) into the safetensors file ``dst``; returns the tensors written."""
    torch = _import_torch()
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConvertError(f"{src}: no such file")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: refused by the restricted unpickler
        raise ConvertError(f"{src}: torch.load(weights_only=True) refused it: {str(exc).splitlines()[0]}") from exc
    state = find_state_dict(obj, key)
    tensors, dropped = {}, []
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            dropped.append(str(name))
            continue
        t = value.detach()
        if dtype == "float32" and t.is_floating_point() and t.dtype != torch.float64:
            t = t.float()
        tensors[str(name)] = t.contiguous().clone()  # clone: no shared storage, as safetensors requires
    if not tensors:
        raise ConvertError(f"{src}: the state_dict holds no tensors")
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dst), metadata={"format": "pt", "source": src.name})
    if not quiet:
        extra = f" (dropped non-tensors: {', '.join(dropped)})" if dropped else ""
        print(f"wrote {len(tensors)} tensors to {dst}{extra}")
    return tensors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Convert a PyTorch .pt/.pth weights file into safetensors.")
    parser.add_argument("src", help="the .pt / .pth file")
    parser.add_argument("dst", help="the .safetensors file to write")
    parser.add_argument("--key", default=None, help="the checkpoint entry holding the state_dict")
    parser.add_argument("--dtype", choices=("keep", "float32"), default="keep",
                        help="float32: widen half and bfloat16 tensors")
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst, key=args.key, dtype=None if args.dtype == "keep" else args.dtype)
    except ConvertError as exc:
        print(f"pt_to_safetensors: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
