"""``striate export CHECKPOINT model.onnx``: write a trained run's model as an ONNX file.

The file is verified before it is written: the ONNX checker, then onnxruntime on two random
inputs (batch 2, and batch 3 for the dynamic batch axis) compared with striate's own outputs.
The run's class names, input shape and input normalisation go into the file's metadata
(``striate.classes``, ``striate.input_shape``, ``striate.normalize``), because the graph
expects *normalised* images: ``(pixel / 255 - mean) / std`` per channel.

Needs the optional ``onnx`` and ``onnxruntime`` packages: ``pip install 'striate[onnx]'``.
"""

from __future__ import annotations

import json


def _cmd_export(args) -> int:
    from ..cli import _load_for_inference
    from ..io.onnx_export import export_onnx

    model, cfg = _load_for_inference(args.checkpoint)
    shape = tuple(int(s) for s in cfg["input_shape"])
    metadata = {"striate.model": cfg.get("model", type(model).__name__),
                "striate.model_config": json.dumps(cfg.get("model_config", {}), sort_keys=True)}
    if cfg.get("classes") is not None:
        metadata["striate.classes"] = json.dumps([str(c) for c in cfg["classes"]])
    if cfg.get("normalize"):
        metadata["striate.normalize"] = json.dumps(cfg["normalize"])
    proto = export_onnx(model, args.output, shape, opset=args.opset, dynamic_batch=not args.static_batch,
                        verify=not args.no_verify, metadata=metadata)
    batch = "N" if not args.static_batch else "2"
    props = {p.key: p.value for p in proto.metadata_props}
    print(f"wrote {args.output}: {cfg.get('model', type(model).__name__)}, opset {args.opset}, "
          f"{len(proto.graph.node)} nodes, input ({batch}, {', '.join(map(str, shape))})")
    if "striate.verify_max_abs_diff" in props:
        print(f"checked in onnxruntime: outputs match striate's (max |diff| {props['striate.verify_max_abs_diff']})")
    else:
        print("not checked in onnxruntime (--no-verify)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a trained checkpoint as an ONNX file (checked in onnxruntime)")
    p.add_argument("checkpoint", help="a run directory written by `striate train` (or its checkpoint/ folder)")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17, at least 13)")
    p.add_argument("--static-batch", action="store_true", help="fix the batch size to 2 instead of a symbolic N")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check (onnx alone suffices)")
    p.set_defaults(func=_cmd_export)
