"""``Module``: the base class of layers and models, with PyTorch's registration and state_dict rules.

Assigning a :class:`Parameter`, a ``Module`` or (through :meth:`register_buffer`) an array to an
attribute registers it.  ``state_dict()`` names every parameter and persistent buffer by its dotted
path (``features.0.weight``, ``bn1.running_mean`` ...), exactly as PyTorch does, so a PyTorch
``state_dict`` converted to NumPy arrays loads unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from .. import backend
from ..autograd import Tensor
from .parameter import Parameter

__all__ = ["Module", "StateDictError"]


class StateDictError(KeyError):
    """``load_state_dict`` found missing, unexpected or mis-shaped keys (all listed at once)."""

    def __init__(self, missing, unexpected, mismatched):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = ["state_dict does not match the model; nothing was loaded:"]
        if self.missing:
            lines.append("  missing keys: " + ", ".join(self.missing))
        if self.unexpected:
            lines.append("  unexpected keys: " + ", ".join(self.unexpected))
        for key, got, want in self.mismatched:
            lines.append(f"  size mismatch for {key}: checkpoint has {got}, model has {want}")
        super().__init__("\n".join(lines))

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class Module:
    """Base class for all layers and models.

    Subclasses call ``super().__init__()`` first, assign parameters/submodules as attributes, and
    define ``forward``.  Calling the module runs ``forward``.
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, Parameter):
            self.__dict__.pop(name, None)
            modules.pop(name, None)
            buffers.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params or name in modules:
            if value is not None:
                kind = "parameter" if name in params else "submodule"
                raise TypeError(f"cannot assign {type(value).__name__} to {kind} '{name}'")
            (params if name in params else modules)[name] = None
        elif name in buffers:
            buffers[name] = value if value is None or isinstance(value, Tensor) else Tensor._wrap(backend.asarray(value))
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter expects a Parameter or None, got {type(param).__name__}")
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """A non-learnable array saved in ``state_dict`` (unless ``persistent=False``)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor._wrap(backend.asarray(tensor))
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: "Module | None") -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module")
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self) -> Iterator["Module"]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, store: str, prefix: str, recurse: bool):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), v

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        yield from self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.data[...] = 0

    def apply(self, fn) -> "Module":
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ device and dtype conversion
    def to(self, *args, device=None, dtype=None) -> "Module":
        """Move parameters and buffers to ``device`` (``"cpu"`` or ``"cuda"``) and/or convert the
        floating ones to ``dtype``, in place, as ``torch.nn.Module.to``: ``to("cuda")``,
        ``to(np.float64)``, ``to("cuda", np.float32)`` or the keywords.  Parameters stay the same
        objects (an optimizer built before the move keeps working after it)."""
        from ..autograd.tensor import _split_to_args

        device, dtype = _split_to_args("Module.to", args, device, dtype)
        if device is not None:
            self._move(device)
        if dtype is None:
            return self
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and np.issubdtype(p.dtype, np.floating) and p.dtype != dtype:
                    p.data = p.data.astype(dtype)
                    if p.grad is not None:
                        p.grad.data = p.grad.data.astype(dtype)
            for b in m._buffers.values():
                if b is not None and np.issubdtype(b.dtype, np.floating):
                    b.data = b.data.astype(dtype)
        return self

    def _move(self, device: str) -> None:
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = backend.to_device(p.data, device)
                    if p.grad is not None:
                        p.grad.data = backend.to_device(p.grad.data, device)
            for b in m._buffers.values():
                if b is not None:
                    b.data = backend.to_device(b.data, device)

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self) -> "Module":
        return self.to("cuda")

    @property
    def device(self) -> str:
        """The device of the first parameter (or buffer); ``"cpu"`` for a module without either."""
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return "cpu"

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # ------------------------------------------------------------------ state_dict
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False) -> "OrderedDict[str, np.ndarray]":
        """Every parameter and persistent buffer by dotted name, as NumPy arrays (shared, not copied;
        on a device, host copies: a state_dict can always be saved or compared with NumPy)."""
        out = OrderedDict() if destination is None else destination
        for mod_prefix, m in self.named_modules(prefix=prefix.rstrip(".")):
            base = f"{mod_prefix}." if mod_prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    out[base + name] = p if keep_vars else backend.to_numpy(p.data)
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    out[base + name] = b if keep_vars else backend.to_numpy(b.data)
        return out

    def _state_slots(self):
        slots = OrderedDict()
        for mod_prefix, m in self.named_modules():
            base = f"{mod_prefix}." if mod_prefix else ""
            for name, p in m._parameters.items():
                if p is not None:
                    slots[base + name] = p
            for name, b in m._buffers.items():
                if b is not None and name not in m._non_persistent:
                    slots[base + name] = b
        return slots

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Every problem is found before anything is written: with ``strict=True`` missing and
        unexpected keys raise; a shape mismatch always raises.  The error lists all of them.
        Values are converted to each parameter's dtype.  Returns ``(missing, unexpected)``.
        """
        slots = self._state_slots()
        given = OrderedDict((k, np.asarray(backend.to_numpy(v.data if isinstance(v, Tensor) else v)))
                            for k, v in state_dict.items())
        missing = [k for k in slots if k not in given]
        unexpected = [k for k in given if k not in slots]
        mismatched = [
            (k, tuple(v.shape), tuple(slots[k].shape)) for k, v in given.items()
            if k in slots and tuple(v.shape) != tuple(slots[k].shape)
        ]
        if mismatched or (strict and (missing or unexpected)):
            raise StateDictError(missing, unexpected, mismatched)
        for k, v in given.items():
            if k in slots:
                dst = slots[k].data
                if backend.device_of(dst) == "cpu":
                    np.copyto(dst, v, casting="unsafe")  # in place: arrays shared with others stay shared
                else:  # a module on a device: copy the host values over, in place
                    dst[...] = backend.to_device(v.astype(dst.dtype, copy=False), backend.device_of(dst))
        return missing, unexpected

    # ------------------------------------------------------------------ calling and printing
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {sub}")
        main = type(self).__name__ + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._modules) | set(self._buffers))
