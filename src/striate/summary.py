"""Per-layer summary of a model: output shapes, parameters, receptive fields and multiply-adds.

:func:`summarize` runs one forward pass on a zero input of batch 1 and watches every leaf module
(a module without children) as it is called: each leaf's instance ``forward`` is temporarily
replaced by a recording wrapper and restored afterwards, even when the forward raises.  It works
for any :class:`~striate.nn.Module` whose leaves are striate layers -- a ``Sequential`` or a custom
``forward`` with branches and residual additions.  During the pass the model is in eval mode (so
batch normalisation neither needs a batch nor updates its running statistics); every module's
``training`` flag is restored afterwards.

Receptive field, per spatial axis, of one output unit of a layer with respect to the input image,
by the standard recurrence over kernel ``k``, dilation ``d`` and stride ``s``::

    r_out = r_in + (k - 1) * d * j_in          # size of the field, in input pixels
    j_out = j_in * s                           # jump: input pixels between adjacent outputs

starting from ``r = j = 1`` at the input.  Convolutions and pools apply it; elementwise layers
(activations, batch norm, dropout, ...) leave it unchanged; upsampling divides the jump;
``Flatten``, ``Linear`` and anything after them have no spatial field ("-").  When a leaf's input
was computed outside any leaf (``out + identity`` in a residual block), the field is traced back
through the autograd graph to the leaf outputs it came from, taking the largest field.

Multiply-adds, per single input: a convolution does ``N_out * (C_in / groups) * kH * kW`` (with
``N_out`` the number of output elements), a transposed convolution ``N_in * (C_out / groups) *
kH * kW``, a linear layer ``in * out`` per row; every other layer counts 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from .autograd import Tensor, enable_grad
from .nn import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, Conv1d, Conv2d, ConvTranspose1d,
                 ConvTranspose2d, Downsample, Flatten, Linear, MaxPool1d, MaxPool2d, MaxUnpool1d, MaxUnpool2d,
                 Module, Unflatten, Upsample)

__all__ = ["LayerSummary", "ModelSummary", "summarize", "format_summary"]


@dataclass
class LayerSummary:
    """One call of one leaf module.

    ``output_shape`` excludes the batch axis.  ``receptive_field`` and ``jump`` are ints when all
    spatial axes agree, tuples (one per axis) otherwise, and ``None`` where there is no spatial
    field (after Flatten/Linear).  ``params`` counts the module's own parameters at its first
    call (0 at later calls of the same module and for weights already counted elsewhere).
    """

    name: str
    layer_type: str
    output_shape: tuple
    params: int
    trainable_params: int
    receptive_field: int | tuple | None
    jump: int | float | tuple | None
    mult_adds: int

    def to_dict(self) -> dict:
        return asdict(self)


class ModelSummary(list):
    """The rows of :func:`summarize` (a list of :class:`LayerSummary`) plus model totals.

    ``total_params`` and ``trainable_params`` count every distinct parameter of the model (including
    those of modules that hold parameters themselves or were not called); ``total_mult_adds`` sums
    the rows.
    """

    def __init__(self, rows, *, input_shape, total_params, trainable_params, model_name):
        super().__init__(rows)
        self.input_shape = tuple(input_shape)
        self.total_params = int(total_params)
        self.trainable_params = int(trainable_params)
        self.model_name = model_name

    @property
    def total_mult_adds(self) -> int:
        return sum(r.mult_adds for r in self)


# ---------------------------------------------------------------------------- receptive fields
# A field is a tuple of (r, j) pairs, one per spatial axis, with Fractions (exact jumps even when
# upsampling halves them), or None where there is no spatial field.


def _axes(value, n: int):
    if isinstance(value, (tuple, list)):
        value = tuple(value)
        return value * n if len(value) == 1 else value
    return (value,) * n


def _window(field, kernel, stride, dilation):
    """The recurrence for a sliding window: r += (k - 1) d j; j *= s."""
    n = len(field)
    ks, ss, ds = _axes(kernel, n), _axes(stride, n), _axes(dilation, n)
    if not (len(ks) == len(ss) == len(ds) == n):
        return None
    return tuple((r + (k - 1) * d * j, j * s) for (r, j), k, s, d in zip(field, ks, ss, ds))


def _rescale(field, in_sizes, out_sizes, grow=0):
    """Resampling from ``in_sizes`` to ``out_sizes``: jump scaled by in/out, field widened by ``grow`` steps."""
    return tuple((r + grow * j, j * Fraction(int(i), int(o)))
                 for (r, j), i, o in zip(field, in_sizes, out_sizes))


def _adaptive(field, in_sizes, out_sizes):
    """Adaptive pooling: bin i spans [floor(i L / O), ceil((i + 1) L / O)); the widest bin sets k."""
    out = []
    for (r, j), L, O in zip(field, in_sizes, out_sizes):
        L, O = int(L), int(O)
        k = max(-(-((i + 1) * L) // O) - (i * L) // O for i in range(O))
        out.append((r + (k - 1) * j, j * Fraction(L, O)))
    return tuple(out)


def _layer_field(m: Module, field, x_shape, y_shape):
    """Field of ``m``'s output from the field of its input (``None`` in, ``None`` out)."""
    if field is None or isinstance(m, (Flatten, Unflatten, Linear)):
        return None
    n = len(field)
    in_sp, out_sp = tuple(x_shape[2:]), tuple(y_shape[2:])
    if len(in_sp) != n or len(out_sp) != n:
        return None
    if isinstance(m, (ConvTranspose1d, ConvTranspose2d)):
        # out[p*s + i*d] += x[p] w[i]: an output reads at most floor((k-1) d / s) + 1 inputs.
        ks, ss, ds = _axes(m.kernel_size, n), _axes(m.stride, n), _axes(m.dilation, n)
        return tuple((r + ((k - 1) * d // s) * j, j / s) for (r, j), k, s, d in zip(field, ks, ss, ds))
    if isinstance(m, (Conv1d, Conv2d)):
        return _window(field, m.kernel_size, m.stride, m.dilation)
    if isinstance(m, (MaxPool1d, MaxPool2d)):
        return _window(field, m.kernel_size, m.stride, m.dilation)
    if isinstance(m, (AvgPool1d, AvgPool2d)):
        return _window(field, m.kernel_size, m.stride, 1)
    if isinstance(m, (AdaptiveAvgPool1d, AdaptiveAvgPool2d)):
        return _adaptive(field, in_sp, out_sp)
    if isinstance(m, Upsample):
        # nearest (and zero insertion) read one input per output; (bi)linear two neighbours
        grow = 1 if m.mode in ("linear", "bilinear") else 0
        return _rescale(field, in_sp, out_sp, grow)
    if isinstance(m, (Downsample, MaxUnpool1d, MaxUnpool2d)):
        return _rescale(field, in_sp, out_sp)
    if in_sp == out_sp:  # activations, normalisation, dropout, identity: elementwise
        return field
    return None  # an unknown layer that changes the spatial size


def _combine(fields):
    """Field of a value computed from several (a residual sum): the widest field per axis."""
    fields = [f for f in fields if f is not None]
    if not fields or len({len(f) for f in fields}) != 1:
        return None
    return tuple(max(axis, key=lambda rj: (rj[0], rj[1])) for axis in zip(*fields))


def _plain(values):
    """Fractions to ints (or floats when not whole); one number when all axes agree."""
    vals = tuple(int(v) if Fraction(v).denominator == 1 else float(v) for v in values)
    return vals[0] if len(set(vals)) == 1 else vals


# ---------------------------------------------------------------------------- multiply-adds


def _mult_adds(m: Module, x_shape, y_shape) -> int:
    if isinstance(m, (ConvTranspose1d, ConvTranspose2d)):
        return math.prod(x_shape[1:]) * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, (Conv1d, Conv2d)):
        return math.prod(y_shape[1:]) * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, Linear):
        rows = math.prod(y_shape[1:-1]) if len(y_shape) > 2 else 1
        return rows * m.in_features * m.out_features
    return 0


# ---------------------------------------------------------------------------- the traced pass


def _first_tensor(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, Tensor):
            return a
    return None


def _tensors(out):
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    return []


class _Tracer:
    def __init__(self, x: Tensor, ndim_spatial: int):
        start = tuple((Fraction(1), Fraction(1)) for _ in range(ndim_spatial)) if ndim_spatial > 0 else None
        self.fields = {id(x): start}
        self.keep = [x]  # keep recorded tensors alive so their ids stay unique
        self.last = start
        self.rows: list[LayerSummary] = []
        self.calls: dict[str, int] = {}
        self.counted: set[int] = set()

    def field_of(self, t: Tensor | None):
        if t is None:
            return self.last
        if id(t) in self.fields:
            return self.fields[id(t)]
        # computed outside any leaf: walk back through the autograd graph to recorded tensors
        found, stack, seen = [], [t], {id(t)}
        while stack:
            u = stack.pop()
            if id(u) in self.fields:
                found.append(self.fields[id(u)])
                continue
            node = u._node
            for v in (node.inputs if node is not None else ()):
                t = getattr(v, "tensor", None)  # an Edge: its Tensor if still alive, else the Edge
                v = t if t is not None else v  # (both have the ``_node`` to walk on through)
                if v is not None and id(v) not in seen:
                    seen.add(id(v))
                    stack.append(v)
        return _combine(found) if found else self.last

    def record(self, name: str, m: Module, args, kwargs, out) -> None:
        x = _first_tensor(args, kwargs)
        outs = _tensors(out)
        y = outs[0] if outs else None
        x_shape = tuple(x.shape) if x is not None else ()
        y_shape = tuple(y.shape) if y is not None else ()
        field = _layer_field(m, self.field_of(x), x_shape, y_shape) if y is not None else None
        for t in outs:
            self.fields[id(t)] = field
            self.keep.append(t)
        self.last = field

        k = self.calls[name] = self.calls.get(name, 0) + 1
        params = trainable = 0
        for p in m._parameters.values():
            if p is not None and id(p) not in self.counted:
                self.counted.add(id(p))
                params += p.numel()
                trainable += p.numel() if p.requires_grad else 0
        label = (name or type(m).__name__) + (f" ({k})" if k > 1 else "")
        self.rows.append(LayerSummary(
            name=label,
            layer_type=type(m).__name__,
            output_shape=y_shape[1:],
            params=params,
            trainable_params=trainable,
            receptive_field=None if field is None else _plain(r for r, _ in field),
            jump=None if field is None else _plain(j for _, j in field),
            mult_adds=_mult_adds(m, x_shape, y_shape) if y is not None else 0,
        ))


def _wrap(tracer: _Tracer, name: str, m: Module, forward):
    def forward_and_record(*args, **kwargs):
        out = forward(*args, **kwargs)
        tracer.record(name, m, args, kwargs, out)
        return out

    return forward_and_record


def summarize(model: Module, input_shape, *, dtype=None) -> ModelSummary:
    """Rows describing each leaf-module call of ``model`` on one input of shape ``input_shape``.

    ``input_shape`` excludes the batch axis, e.g. ``(1, 28, 28)``.  The input is zeros of batch 1
    in ``dtype`` (default: the dtype of the model's first floating parameter, else float32).
    Returns a :class:`ModelSummary` -- a list of :class:`LayerSummary` rows in call order, with
    ``total_params``, ``trainable_params`` and ``total_mult_adds``.  The model is left exactly as
    it was: its leaves' ``forward`` and every module's ``training`` flag are restored, even if the
    forward pass raises.
    """
    if not isinstance(model, Module):
        raise TypeError(f"summarize expects a striate nn.Module, got {type(model).__name__}")
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    shape = tuple(int(s) for s in input_shape)
    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if np.issubdtype(p.dtype, np.floating)), np.float32)
    x = Tensor(np.zeros((1,) + shape, dtype=dtype), requires_grad=True)  # so the graph reaches the input
    tracer = _Tracer(x, len(shape) - 1)

    leaves = [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]
    modes = [(m, m.training) for m in model.modules()]
    patched = []  # (module, had an instance forward, that forward)
    try:
        for name, m in leaves:
            had = "forward" in m.__dict__
            patched.append((m, had, m.__dict__.get("forward")))
            object.__setattr__(m, "forward", _wrap(tracer, name, m, m.forward))
        model.eval()
        with enable_grad():
            model(x)
    finally:
        for m, had, previous in reversed(patched):
            if had:
                object.__setattr__(m, "forward", previous)
            else:
                m.__dict__.pop("forward", None)
        for m, mode in modes:
            object.__setattr__(m, "training", mode)

    seen, total, trainable = set(), 0, 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
    return ModelSummary(tracer.rows, input_shape=shape, total_params=total, trainable_params=trainable,
                        model_name=type(model).__name__)


# ---------------------------------------------------------------------------- text table


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _fmt_field(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple):
        return "x".join(_fmt_number(a) for a in v)
    return _fmt_number(v)


def _fmt_number(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def format_summary(rows) -> str:
    """A text table of :func:`summarize`'s rows with totals (parameters, trainable, multiply-adds).

    Plain lists of :class:`LayerSummary` work too; their totals are then the sums of the rows.
    """
    rows = list(rows) if not isinstance(rows, ModelSummary) else rows
    header = ("Layer", "Type", "Output shape", "Params", "RF", "Jump", "Mult-adds")
    body = [(r.name, r.layer_type, _fmt_shape(r.output_shape), f"{r.params:,}", _fmt_field(r.receptive_field),
             _fmt_field(r.jump), f"{r.mult_adds:,}") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    right = {3, 4, 5, 6}

    def line(cells):
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    rule = "-" * len(line(header))
    total = getattr(rows, "total_params", sum(r.params for r in rows))
    trainable = getattr(rows, "trainable_params", sum(r.trainable_params for r in rows))
    madds = sum(r.mult_adds for r in rows)
    out = []
    if isinstance(rows, ModelSummary):
        out.append(f"{rows.model_name} on input {_fmt_shape(rows.input_shape)} (batch 1)")
    out += [rule, line(header), rule, *(line(b) for b in body), rule,
            f"Total params:         {total:,}",
            f"Trainable params:     {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            f"Total mult-adds:      {madds:,} ({_human(madds)})",
            "RF: receptive field (input pixels) of one output unit; Jump: input pixels between adjacent units"]
    return "\n".join(out)
