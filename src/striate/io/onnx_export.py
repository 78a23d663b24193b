"""Export a striate model to ONNX, and check the file by running it in onnxruntime.

:func:`export_onnx` traces one forward pass of the model on a random input.  Every
:class:`~striate.autograd.Function` that runs during the pass reports itself (through
``striate.autograd.function.observers``) with its arguments and outputs; each call whose inputs
derive from the model input becomes one or a few ONNX nodes.  Because the trace is taken at the
Function level, operations written inside a custom ``forward`` -- a residual ``out + x``,
``F.cat``, ``F.pad``, ``x.flatten(1)``, slicing -- are captured exactly like layers.  Every
module's ``forward`` is wrapped during the pass only to know *where* an op happens: node names
carry the module path (``layer1.0.conv1/Conv``) and an op that cannot be exported raises
:class:`OnnxExportError` naming the layer.

Values that do not derive from the input -- parameters, buffers, scalars, tensors computed
from parameters alone -- become initializers (parameters and buffers under their
``state_dict`` names).  Batch normalisation is exported in eval mode (the model is put in eval
mode for the trace and restored afterwards).

The op mapping (ONNX default domain), each checked against striate's own output:

- conv1d/2d (groups, dilation, asymmetric or 'same' padding): ``Conv``
- conv_transpose1d/2d (output_padding, groups, dilation): ``ConvTranspose``
- max_pool (ceil_mode, dilation): ``MaxPool``, PyTorch's ceil_mode written as explicit end
  padding (``-inf`` padding where runtimes refuse pads as large as the kernel)
- avg_pool (ceil_mode, count_include_pad, divisor_override): ``AveragePool``, or window sums
  over an explicitly padded input times a constant map of striate's divisors
- adaptive_avg_pool: ``GlobalAveragePool``, ``AveragePool`` (sizes that divide evenly) or two
  ``MatMul`` with the averaging matrices; adaptive_max_pool: ``GlobalMaxPool`` or ``MaxPool``
  (sizes that divide evenly only)
- batch_norm in eval mode: ``BatchNormalization``
- relu, leaky_relu, elu, selu, celu, sigmoid, tanh, hardtanh/relu6, hardsigmoid, hardswish,
  prelu: ``Relu``, ``LeakyRelu``, ``Elu``, ``Selu``, ``Celu``, ``Sigmoid``, ``Tanh``, ``Clip``,
  ``HardSigmoid``, ``HardSwish``, ``PRelu``; softplus: ``Softplus`` plus a ``Where`` for the
  threshold; threshold: ``Where``; silu: ``x * Sigmoid(x)``; mish: ``Mish`` (opset 18 and
  later) or ``x * Tanh(Softplus(x))``; logsigmoid: ``-Softplus(-x)``
- gelu: ``Gelu`` from opset 20, else ``0.5 x (1 + Erf(x / sqrt 2))`` or the tanh formula
- softmax, log_softmax, softmin: ``Softmax``, ``LogSoftmax``, ``Softmax(-x)``
- linear: ``Gemm`` for 2-D inputs, else ``MatMul`` + ``Add``
- flatten, reshape, view, (un)squeeze: ``Flatten`` or ``Reshape`` (the batch axis stays dynamic)
- ``+ - * /``, neg, pow, matmul, exp, log, sqrt, abs: the ONNX op of the same name
- sum, mean, max over axes: ``ReduceSum``, ``ReduceMean``, ``ReduceMax``
- cat, stack, split: ``Concat``, ``Unsqueeze`` + ``Concat``, ``Slice``
- pad (constant, negative amounts crop): ``Pad``; ``x[...]`` with slices, steps, integers,
  ``None`` and ``...``: ``Slice``, ``Squeeze``, ``Unsqueeze``; permute/transpose: ``Transpose``
- interpolate / Upsample: ``Resize`` ('nearest', 'nearest-exact', 'linear', 'bilinear',
  'trilinear', 'bicubic'; align_corners through ``coordinate_transformation_mode``) wherever
  Resize provably computes striate's (PyTorch's) result, else exact per-axis ``Gather`` or
  ``MatMul`` (an axis resized to length 1, an unchanged length with a scale factor, a nearest
  index that depends on rounding); 'area' as adaptive average pooling
- downsample: ``Slice`` with steps; upsample_zeros: a depthwise ``ConvTranspose`` with a 1x1
  kernel of ones

Anything else (losses, dropout in training mode, max-unpooling, pooling indices, batch norm
with batch statistics, a reshape that mixes the batch axis into others under a dynamic batch)
raises :class:`OnnxExportError` naming the layer and the op.

``onnx`` and ``onnxruntime`` are optional: ``pip install 'striate[onnx]'``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["export_onnx", "verify_onnx", "OnnxExportError", "MIN_OPSET"]

MIN_OPSET = 13  # single-axis Softmax, axes as inputs of Squeeze/Unsqueeze/ReduceSum
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


class OnnxExportError(ValueError):
    """A model (or one of its ops) that cannot be written as ONNX, or a file that fails verification."""


def _require_onnx():
    try:
        import onnx  # noqa: F401
        from onnx import helper, numpy_helper  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ONNX export needs the 'onnx' package (and 'onnxruntime' to verify the file): "
            "pip install 'striate[onnx]'"
        ) from exc
    return onnx


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "verifying an ONNX export needs the 'onnxruntime' package: pip install 'striate[onnx]' "
            "(or pass verify=False)"
        ) from exc
    return onnxruntime


# ============================================================================ the graph builder
class _Unsupported:
    """Marks a traced output that has no ONNX value (e.g. max-pool indices)."""

    def __init__(self, reason: str):
        self.reason = reason


class _Call:
    """One observed ``Function.apply``: what the op handlers see."""

    __slots__ = ("fn", "args", "kwargs", "outs", "inputs", "scope", "module")

    def __init__(self, fn, args, kwargs, outs, inputs, scope, module):
        self.fn, self.args, self.kwargs, self.outs = fn, args, kwargs, outs
        self.inputs = inputs  # ONNX value name per positional argument ('' for None)
        self.scope, self.module = scope, module

    def array(self, i: int) -> np.ndarray | None:
        from ..autograd import Tensor

        a = self.args[i] if i < len(self.args) else None
        if a is None:
            return None
        return a.data if isinstance(a, Tensor) else np.asarray(a)

    @property
    def x(self) -> np.ndarray:
        return self.array(0)

    @property
    def y(self) -> np.ndarray:
        return self.outs[0].data


class _Graph:
    """Nodes, initializers and the bookkeeping of a trace."""

    def __init__(self, model, opset: int, dynamic_batch: bool):
        from onnx import helper

        self.helper = helper
        self.opset = opset
        self.dynamic = dynamic_batch
        self.nodes: list = []
        self.initializers: list = []
        self.values: dict[int, object] = {}  # id(Tensor) -> ONNX name or _Unsupported
        self.keep: list = []  # every traced Tensor, kept alive so ids stay unique
        self.params = {}
        for name, p in model.named_parameters():
            self.params.setdefault(id(p), (name, p))
        for name, b in model.named_buffers():
            if b is not None:
                self.params.setdefault(id(b), (name, b))
        self.param_names: dict[int, str] = {}
        self.counter = 0
        self.scope: list[tuple[str, object]] = []  # (module path, module) of the modules being run
        self.error: Exception | None = None

    # ------------------------------------------------------------------ names and initializers
    def fresh(self, hint: str) -> str:
        self.counter += 1
        where = self.scope[-1][0] if self.scope and self.scope[-1][0] else "model"
        return f"{where}/{hint}_{self.counter}"

    def add_initializer(self, array: np.ndarray, name: str) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value, dtype=None, hint: str = "const") -> str:
        array = np.asarray(value, dtype=dtype)
        return self.add_initializer(array, self.fresh(hint))

    def ints(self, values, hint: str = "ints") -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), hint=hint)

    def value_of(self, a) -> str:
        """The ONNX name for an argument: traced value, parameter, buffer or constant."""
        from ..autograd import Tensor

        if a is None:
            return ""
        if isinstance(a, Tensor):
            known = self.values.get(id(a))
            if isinstance(known, _Unsupported):
                raise OnnxExportError(known.reason)
            if known is not None:
                return known
            if id(a) in self.params:
                if id(a) not in self.param_names:
                    name, p = self.params[id(a)]
                    self.param_names[id(a)] = self.add_initializer(p.data, name)
                return self.param_names[id(a)]
            return self.const(a.data)
        return self.const(np.asarray(a))

    def node(self, op_type: str, inputs, n_out: int = 1, **attrs):
        """Append a node; returns its output name (or the list of names when ``n_out > 1``)."""
        outs = [self.fresh(op_type) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs if n_out > 1 else outs[0]

    # ------------------------------------------------------------------ opset-aware helpers
    def reduce(self, op: str, x: str, axes, keepdims: bool) -> str:
        axes = [int(a) for a in axes]
        axes_as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if axes_as_input:
            return self.node(op, [x, self.ints(axes, "axes")], keepdims=int(keepdims))
        return self.node(op, [x], axes=axes, keepdims=int(keepdims))

    def squeeze(self, x: str, axes) -> str:
        return self.node("Squeeze", [x, self.ints(axes, "axes")])

    def unsqueeze(self, x: str, axes) -> str:
        return self.node("Unsqueeze", [x, self.ints(axes, "axes")])

    def slice(self, x: str, starts, ends, axes, steps=None) -> str:
        inputs = [x, self.ints(starts, "starts"), self.ints(ends, "ends"), self.ints(axes, "axes")]
        if steps is not None:
            inputs.append(self.ints(steps, "steps"))
        return self.node("Slice", inputs)

    def pad(self, x: str, begins, ends, value=0.0, dtype=np.float32) -> str:
        """Constant padding; ``begins``/``ends`` have one entry per axis of ``x``."""
        return self.node("Pad", [x, self.ints(list(begins) + list(ends), "pads"), self.const(value, dtype, "pad_value")],
                         mode="constant")


# ============================================================================ op handlers
# Each handler takes (graph, call) and returns one ONNX name (or _Unsupported) per output of the
# Function, in order.


def _pairs_to_pads(pairs):
    return [int(lo) for lo, _ in pairs] + [int(hi) for _, hi in pairs]


def _need_batched(call: _Call, nd: int, what: str):
    if call.x.ndim != nd + 2:
        raise OnnxExportError(f"{what}: only batched inputs can be exported, got shape {call.x.shape}")


def _conv(g: _Graph, call: _Call):
    k = call.kwargs
    nd = k["nd"]
    _need_batched(call, nd, f"conv{nd}d")
    w = call.array(1)
    inputs = [i for i in call.inputs[:3] if i]
    return [g.node("Conv", inputs, kernel_shape=list(w.shape[2:]), strides=list(k["stride"]),
                   pads=_pairs_to_pads(k["padding"]), dilations=list(k["dilation"]), group=int(k["groups"]))]


def _conv_transpose(g: _Graph, call: _Call):
    k = call.kwargs
    nd = k["nd"]
    _need_batched(call, nd, f"conv_transpose{nd}d")
    w = call.array(1)
    x, wn = call.inputs[0], call.inputs[1]
    bn = call.inputs[2] if len(call.inputs) > 2 else ""
    stride, out_pad = list(k["stride"]), list(k["output_padding"])
    begins = [int(lo) for lo, _ in k["padding"]]
    attrs = dict(kernel_shape=list(w.shape[2:]), strides=stride, dilations=list(k["dilation"]), group=int(k["groups"]))
    if all(a < s for a, s in zip(out_pad, stride)):
        return [g.node("ConvTranspose", [x, wn] + ([bn] if bn else []),
                       pads=_pairs_to_pads(k["padding"]), output_padding=out_pad, **attrs)]
    # output_padding >= stride (allowed below the dilation): runtimes reject the attribute, so
    # take the extra rows from the full output by cropping less at the end, and append zero
    # rows (bias only) where the output padding reaches past it
    ends = [int(hi) - a for (_, hi), a in zip(k["padding"], out_pad)]
    y = g.node("ConvTranspose", [x, wn], pads=begins + [max(e, 0) for e in ends], **attrs)
    if any(e < 0 for e in ends):
        y = g.pad(y, [0] * (nd + 2), [0, 0] + [max(-e, 0) for e in ends], 0.0, call.x.dtype)
    if bn:
        y = g.node("Add", [y, g.node("Reshape", [bn, g.ints([-1] + [1] * nd, "shape")])])
    return [y]


def _geometry(call: _Call, dilation=1):
    from ..kernels import pool as KP

    k = call.kwargs
    _need_batched(call, k["nd"], k["op"])
    return KP.pool_geometry(call.x.shape, k["nd"], k["kernel_size"], k["stride"], k["padding"], dilation,
                            k["ceil_mode"], op=k["op"])


def _end_pads(geom):
    """End padding that makes floor-mode ONNX pooling give striate's (PyTorch's) output size.

    PyTorch's ceil_mode drops a last window that would start in the right padding; expressing
    the overhang as explicit end padding (with ceil_mode=0) is exact and needs no ONNX ceil rule.
    """
    return [max(p, hi) for p, hi in zip(geom.pad, geom.pad_hi)]


def _max_pool(g: _Graph, call: _Call):
    geom = _geometry(call, call.kwargs["dilation"])
    begins, ends = list(geom.pad), _end_pads(geom)
    x = call.inputs[0]
    if any(p >= kk for p, kk in zip(begins + ends, geom.kernel * 2)):
        # runtimes want pads < kernel; pad explicitly with -inf (never a window's maximum, since
        # every window holds a real element) and pool without padding
        lead = call.x.ndim - geom.nd
        x = g.pad(x, [0] * lead + begins, [0] * lead + ends, -np.inf, call.x.dtype)
        begins, ends = [0] * geom.nd, [0] * geom.nd
    y = g.node("MaxPool", [x], kernel_shape=list(geom.kernel), strides=list(geom.stride),
               pads=begins + ends, dilations=list(geom.dilation), ceil_mode=0)
    outs = [y]
    if call.kwargs["return_indices"]:
        outs.append(_Unsupported(
            f"{call.kwargs['op']} indices (return_indices=True) cannot be exported: ONNX numbers them "
            "over the whole tensor, PyTorch and striate within each plane"))
    return outs


def _avg_divisors(geom, count_include_pad: bool, divisor_override) -> np.ndarray:
    """striate's (PyTorch's) divisor of every output window, shape ``geom.out``."""
    if divisor_override is not None:
        return np.full(geom.out, float(divisor_override))
    per_axis = []
    for n, o, kk, s, p in zip(geom.size, geom.out, geom.kernel, geom.stride, geom.pad):
        start = np.arange(o) * s - p
        end = start + kk
        if count_include_pad:  # the window cut at the padded end
            per_axis.append(np.minimum(end, n + p) - start)
        else:  # the real elements only
            per_axis.append(np.minimum(end, n) - np.maximum(start, 0))
    out = per_axis[0].astype(np.float64)
    for d in per_axis[1:]:
        out = np.multiply.outer(out, d)
    return out


def _avg_pool(g: _Graph, call: _Call):
    k = call.kwargs
    geom = _geometry(call)
    nd = geom.nd
    lead = call.x.ndim - nd
    begins, ends = list(geom.pad), _end_pads(geom)
    x = call.inputs[0]
    attrs = dict(kernel_shape=list(geom.kernel), strides=list(geom.stride), ceil_mode=0)
    native = all(p < kk for p, kk in zip(begins + ends, geom.kernel * 2)) and k["divisor_override"] is None
    if native and not k["count_include_pad"]:
        return [g.node("AveragePool", [x], pads=begins + ends, count_include_pad=0, **attrs)]
    if native and ends == begins:
        return [g.node("AveragePool", [x], pads=begins + ends, count_include_pad=1, **attrs)]
    # general case: window sums over an explicitly zero-padded input (every window full, so the
    # average times the area is the sum), divided by striate's divisor of each window
    x = g.pad(x, [0] * lead + begins, [0] * lead + ends, 0.0, call.x.dtype)
    y = g.node("AveragePool", [x], pads=[0] * (2 * nd), **attrs)
    factor = math.prod(geom.kernel) / _avg_divisors(geom, k["count_include_pad"], k["divisor_override"])
    if np.all(factor == factor.flat[0]):
        factor = factor.flat[0]
    return [g.node("Mul", [y, g.const(factor, call.x.dtype, "area_over_divisor")])]


def _adaptive_sizes(call: _Call):
    from ..kernels import pool as KP

    k = call.kwargs
    _need_batched(call, k["nd"], k["op"])
    out = KP.adaptive_output_size(call.x.shape, k["nd"], k["output_size"], k["op"])
    return call.x.shape[-k["nd"]:], out


def _separable(g: _Graph, x: str, matrices, ndim: int) -> str:
    """Contract each trailing axis with its (out, in) matrix (None: unchanged) by MatMuls:
    ``Y = A_h X A_w^T`` for two axes; an earlier axis is swapped to the end and back."""
    nd = len(matrices)
    for i, A in enumerate(matrices):
        if A is None:
            continue
        axis = ndim - nd + i
        if axis == ndim - 1:
            x = g.node("MatMul", [x, g.const(A.T, hint="resample_matrix")])
        elif axis == ndim - 2:
            x = g.node("MatMul", [g.const(A, hint="resample_matrix"), x])
        else:
            perm = list(range(ndim))
            perm[axis], perm[-1] = perm[-1], perm[axis]
            x = g.node("Transpose", [x], perm=perm)
            x = g.node("MatMul", [x, g.const(A.T, hint="resample_matrix")])
            x = g.node("Transpose", [x], perm=perm)
    return x


def _adaptive_avg(g: _Graph, call: _Call):
    from ..kernels.resample import area_matrix

    size, out = _adaptive_sizes(call)
    x = call.inputs[0]
    if all(o == 1 for o in out):
        return [g.node("GlobalAveragePool", [x])]
    if all(n % o == 0 for n, o in zip(size, out)):
        kernel = [n // o for n, o in zip(size, out)]
        return [g.node("AveragePool", [x], kernel_shape=kernel, strides=kernel)]
    return [_separable(g, x, [area_matrix(n, o, call.x.dtype) for n, o in zip(size, out)], call.x.ndim)]


def _adaptive_max(g: _Graph, call: _Call):
    size, out = _adaptive_sizes(call)
    x = call.inputs[0]
    if all(o == 1 for o in out):
        y = g.node("GlobalMaxPool", [x])
    elif all(n % o == 0 for n, o in zip(size, out)):
        kernel = [n // o for n, o in zip(size, out)]
        y = g.node("MaxPool", [x], kernel_shape=kernel, strides=kernel)
    else:
        raise OnnxExportError(
            f"{call.kwargs['op']} from {tuple(size)} to {tuple(out)}: ONNX has no adaptive max pooling; "
            "only output sizes that divide the input size evenly can be exported")
    outs = [y]
    if call.kwargs["return_indices"]:
        outs.append(_Unsupported(f"{call.kwargs['op']} indices cannot be exported"))
    return outs


def _batch_norm(g: _Graph, call: _Call):
    k = call.kwargs
    if k["training"]:
        raise OnnxExportError(
            "batch_norm with batch statistics (training mode, or track_running_stats=False) cannot be "
            "exported; ONNX BatchNormalization uses running statistics")
    x = call.x
    if x.ndim < 2:
        raise OnnxExportError(f"batch_norm: input must be (N, C, ...), got shape {x.shape}")
    C = x.shape[1]
    scale = call.inputs[3] or g.const(np.ones(C, x.dtype), hint="bn_scale")
    bias = call.inputs[4] or g.const(np.zeros(C, x.dtype), hint="bn_bias")
    return [g.node("BatchNormalization", [call.inputs[0], scale, bias, call.inputs[1], call.inputs[2]],
                   epsilon=float(k["eps"]))]


def _unary(op_type: str, **attrs):
    def handler(g: _Graph, call: _Call):
        return [g.node(op_type, [call.inputs[0]], **attrs)]

    return handler


def _scalar(g: _Graph, call: _Call, value, hint="scalar") -> str:
    return g.const(value, call.x.dtype, hint)


def _leaky_relu(g, call):
    return [g.node("LeakyRelu", [call.inputs[0]], alpha=float(call.kwargs.get("negative_slope", 0.01)))]


def _elu(g, call):
    k = call.kwargs
    alpha, scale, input_scale = (float(k.get(n, 1.0)) for n in ("alpha", "scale", "input_scale"))
    x = call.inputs[0]
    if scale == 1.0 and input_scale == 1.0:
        return [g.node("Elu", [x], alpha=alpha)]
    if input_scale == 1.0:
        return [g.node("Selu", [x], alpha=alpha, gamma=scale)]
    if scale == 1.0 and alpha != 0 and abs(input_scale * alpha - 1.0) < 1e-12:
        return [g.node("Celu", [x], alpha=alpha)]
    # scale * (x if x > 0 else alpha * (exp(input_scale x) - 1))
    neg = g.node("Mul", [_scalar(g, call, alpha),
                         g.node("Sub", [g.node("Exp", [g.node("Mul", [x, _scalar(g, call, input_scale)])]),
                                        _scalar(g, call, 1.0)])])
    y = g.node("Where", [g.node("Greater", [x, _scalar(g, call, 0.0)]), x, neg])
    return [g.node("Mul", [y, _scalar(g, call, scale)])]


def _gelu(g, call):
    approximate = call.kwargs.get("approximate", "none")
    x = call.inputs[0]
    if g.opset >= 20:
        return [g.node("Gelu", [x], approximate=approximate)]
    if approximate == "none":
        # x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
        inner = g.node("Erf", [g.node("Mul", [x, _scalar(g, call, 1.0 / math.sqrt(2.0))])])
    else:
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        arg = g.node("Add", [x, g.node("Mul", [cube, _scalar(g, call, 0.044715)])])
        inner = g.node("Tanh", [g.node("Mul", [arg, _scalar(g, call, math.sqrt(2.0 / math.pi))])])
    half_x = g.node("Mul", [x, _scalar(g, call, 0.5)])
    return [g.node("Mul", [half_x, g.node("Add", [inner, _scalar(g, call, 1.0)])])]


def _softplus(g, call):
    beta = float(call.kwargs.get("beta", 1.0))
    threshold = float(call.kwargs.get("threshold", 20.0))
    x = call.inputs[0]
    bx = x if beta == 1.0 else g.node("Mul", [x, _scalar(g, call, beta)])
    sp = g.node("Softplus", [bx])
    if beta != 1.0:
        sp = g.node("Div", [sp, _scalar(g, call, beta)])
    # x itself where beta x > threshold (PyTorch's linear regime)
    return [g.node("Where", [g.node("Greater", [bx, _scalar(g, call, threshold)]), x, sp])]


def _hardtanh(g, call):
    k = call.kwargs
    return [g.node("Clip", [call.inputs[0], _scalar(g, call, k.get("min_val", -1.0), "min"),
                            _scalar(g, call, k.get("max_val", 1.0), "max")])]


def _hardswish(g, call):
    if g.opset >= 14:
        return [g.node("HardSwish", [call.inputs[0]])]
    x = call.inputs[0]
    return [g.node("Mul", [x, g.node("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)])]


def _threshold(g, call):
    k = call.kwargs
    x = call.inputs[0]
    return [g.node("Where", [g.node("Greater", [x, _scalar(g, call, k["threshold"])]), x,
                             _scalar(g, call, k["value"])])]


def _silu(g, call):
    x = call.inputs[0]
    return [g.node("Mul", [x, g.node("Sigmoid", [x])])]


def _mish(g, call):
    x = call.inputs[0]
    if g.opset >= 18:
        return [g.node("Mish", [x])]
    return [g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x])])])]


def _logsigmoid(g, call):
    x = call.inputs[0]
    return [g.node("Neg", [g.node("Softplus", [g.node("Neg", [x])])])]


def _prelu(g, call):
    x, w = call.x, call.array(1)
    slope = call.inputs[1]
    if w.size != 1 and x.ndim > 2:
        slope = g.node("Reshape", [slope, g.ints([w.size] + [1] * (x.ndim - 2), "shape")])
    return [g.node("PRelu", [call.inputs[0], slope])]


def _softmax_family(op_type: str, negate: bool = False):
    def handler(g, call):
        x = call.inputs[0]
        if call.y.dtype != call.x.dtype:  # softmax(..., dtype=...) casts first
            x = _cast(g, x, call.y.dtype)
        if negate:
            x = g.node("Neg", [x])
        return [g.node(op_type, [x], axis=int(call.kwargs["dim"]) % max(call.x.ndim, 1))]

    return handler


def _cast(g: _Graph, x: str, dtype) -> str:
    from onnx import helper

    return g.node("Cast", [x], to=int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype))))


def _binary(op_type: str):
    def handler(g, call):
        out_dtype = call.y.dtype
        inputs = []
        for i, name in enumerate(call.inputs[:2]):
            if call.array(i).dtype != out_dtype:
                name = _cast(g, name, out_dtype)
            inputs.append(name)
        return [g.node(op_type, inputs)]

    return handler


def _pow(g, call):
    return [g.node("Pow", [call.inputs[0], _scalar(g, call, call.kwargs["exponent"], "exponent")])]


def _reduction(op_type: str):
    def handler(g, call):
        dim, n = call.kwargs.get("dim"), call.x.ndim
        dims = range(n) if dim is None else ((dim,) if isinstance(dim, (int, np.integer)) else tuple(dim))
        axes = sorted({int(d) % max(n, 1) for d in dims})
        return [g.reduce(op_type, call.inputs[0], axes, call.kwargs.get("keepdim", False))]

    return handler


def _reshape(g, call):
    x, y = call.x, call.y
    name = call.inputs[0]
    shape = list(y.shape)
    if not g.dynamic:
        return [g.node("Reshape", [name, g.ints(shape, "shape")])]
    if x.ndim >= 1 and len(shape) >= 1 and shape[0] == x.shape[0]:
        if len(shape) == 2 and x.ndim >= 2 and shape[1] == math.prod(x.shape[1:]):
            return [g.node("Flatten", [name], axis=1)]
        return [g.node("Reshape", [name, g.ints([0] + shape[1:], "shape")])]
    raise OnnxExportError(
        f"reshape from {tuple(x.shape)} to {tuple(shape)} does not keep the batch axis (axis 0) in place, "
        "so it cannot be exported with a dynamic batch size; use export_onnx(..., dynamic_batch=False)")


def _permute(g, call):
    dims = [int(d) % call.x.ndim for d in call.kwargs["dims"]]
    return [g.node("Transpose", [call.inputs[0]], perm=dims)]


def _getitem(g, call):
    index = call.kwargs["index"]
    if not isinstance(index, tuple):
        index = (index,)
    x = call.x
    if any(isinstance(i, (np.ndarray, list)) or isinstance(i, (bool, np.bool_)) for i in index):
        raise OnnxExportError("indexing with arrays, lists or booleans (advanced indexing) cannot be exported; "
                              "use slices and integers")
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    if sum(1 for i in index if i is Ellipsis) > 1:
        raise OnnxExportError("an index can only have a single ellipsis")
    expanded = []
    for i in index:
        if i is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(i)
    expanded.extend([slice(None)] * (x.ndim - sum(1 for i in expanded if i is not None)))
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    axis = 0  # axis of x
    out_axis = 0  # axis of the result after squeezes/unsqueezes
    for i in expanded:
        if i is None:
            unsqueeze.append(out_axis)
            out_axis += 1
            continue
        if isinstance(i, slice):
            step = 1 if i.step is None else int(i.step)
            if i != slice(None) and not (i.start in (None, 0) and i.stop is None and step == 1):
                start = i.start if i.start is not None else (0 if step > 0 else -1)
                stop = i.stop if i.stop is not None else (_INT64_MAX if step > 0 else _INT64_MIN)
                starts.append(int(start)), ends.append(int(stop)), axes.append(axis), steps.append(step)
            out_axis += 1
        else:
            k = int(i)
            starts.append(k), ends.append(k + 1 if k != -1 else _INT64_MAX), axes.append(axis), steps.append(1)
            squeeze.append(axis)
        axis += 1
    y = call.inputs[0]
    if axes:
        y = g.slice(y, starts, ends, axes, steps)
    if squeeze:
        y = g.squeeze(y, squeeze)
    if unsqueeze:
        y = g.unsqueeze(y, unsqueeze)
    if y == call.inputs[0]:
        y = g.node("Identity", [y])
    return [y]


def _cast_op(g, call):
    return [_cast(g, call.inputs[0], call.y.dtype)]


def _linear(g, call):
    x, w = call.x, call.array(1)
    xn, wn, bn = call.inputs[0], call.inputs[1], call.inputs[2] if len(call.inputs) > 2 else ""
    if x.ndim == 2:
        return [g.node("Gemm", [xn, wn] + ([bn] if bn else []), transB=1)]
    y = g.node("MatMul", [xn, g.node("Transpose", [wn], perm=[1, 0])])
    return [g.node("Add", [y, bn]) if bn else y]


def _cat(g, call):
    axis = int(call.kwargs["dim"]) % call.x.ndim
    return [g.node("Concat", list(call.inputs), axis=axis)]


def _stack(g, call):
    axis = int(call.kwargs["dim"]) % (call.x.ndim + 1)
    return [g.node("Concat", [g.unsqueeze(v, [axis]) for v in call.inputs], axis=axis)]


def _slice_op(g, call):
    k = call.kwargs
    return [g.slice(call.inputs[0], [k["start"]], [k["stop"]], [k["axis"]])]


def _pad_op(g, call):
    x = call.x
    pairs = [(0, 0)] * x.ndim
    pad = call.kwargs["pad"]
    for j in range(len(pad) // 2):
        pairs[x.ndim - 1 - j] = (pad[2 * j], pad[2 * j + 1])
    return [g.pad(call.inputs[0], [lo for lo, _ in pairs], [hi for _, hi in pairs], call.kwargs["value"], x.dtype)]


def _downsample(g, call):
    factor = list(call.kwargs["factor"])
    nd = len(factor)
    axes = list(range(call.x.ndim - nd, call.x.ndim))
    return [g.slice(call.inputs[0], [0] * nd, [_INT64_MAX] * nd, axes, factor)]


def _upsample_zeros(g, call):
    # a depthwise transposed convolution with a 1x1 kernel of ones and stride S puts x[i] at
    # i*S and zeros in between: exactly the zero insertion, length (L-1)*S + 1
    x = call.x
    factor = list(call.kwargs["factor"])
    nd = len(factor)
    if x.ndim != nd + 2:
        raise OnnxExportError(f"upsample_zeros: only (N, C, *spatial) inputs can be exported, got shape {x.shape}")
    C = x.shape[1]
    w = g.const(np.ones((C, 1) + (1,) * nd, dtype=x.dtype), hint="zero_insertion_kernel")
    return [g.node("ConvTranspose", [call.inputs[0], w], kernel_shape=[1] * nd, strides=factor, group=C)]


def _onnx_source(in_n: int, out_n: int, onnx_scale: float, ctm: str, dtype) -> np.ndarray:
    """ONNX Resize's source coordinate of every output sample (the spec's formulas)."""
    dt = np.dtype(dtype).type
    i = np.arange(out_n).astype(dt)
    s = dt(onnx_scale)
    if ctm == "asymmetric":
        return i / s
    if ctm == "align_corners":
        return i * (dt(in_n - 1) / dt(out_n - 1))
    return (i + dt(0.5)) / s - dt(0.5)  # half_pixel, pytorch_half_pixel (out > 1)


def _resize_matches(mode: str, ctm: str, in_size, out_size, scales, striate_ops) -> bool:
    """Whether ONNX Resize computes striate's resampling exactly on every axis.

    Excluded: an axis of output length 1 (pytorch_half_pixel then reads sample 0, PyTorch the
    centre of the window) and an unchanged length with a scale factor other than 1 (PyTorch
    copies such an axis in some modes; runtimes may short-cut it).  For the nearest modes the
    spec's indices are compared with striate's, in float32 and float64 arithmetic (an index
    that depends on rounding is not trusted); the linear and cubic weights are continuous in
    the source coordinate, so equal coordinates suffice.
    """
    for k, (n, o) in enumerate(zip(in_size, out_size)):
        onnx_scale = float(np.float32(scales[k])) if scales is not None else o / n
        if o == 1 or (o == n and onnx_scale != 1.0):
            return False
        if scales is not None:  # the runtime derives the size floor(n * s) itself: it must agree
            if any(int(np.floor(dt(n) * dt(onnx_scale))) != o for dt in (np.float32, np.float64)):
                return False
        if mode != "nearest":
            continue
        for dt in (np.float32, np.float64):
            src = _onnx_source(n, o, onnx_scale, ctm, dt)
            idx = np.floor(src) if ctm == "asymmetric" else np.floor(src + dt(0.5))  # round_prefer_ceil
            idx = np.clip(idx, 0, n - 1).astype(np.intp)
            if not np.array_equal(idx, striate_ops[k]):
                return False
    return True


def _interpolate(g, call):
    from ..kernels import resample as KR

    k = call.kwargs
    x = call.x
    mode, align, scales, out_size = k["mode"], k["align_corners"], k["scales"], [int(o) for o in k["out_size"]]
    nd = len(out_size)
    if x.ndim != nd + 2:
        raise OnnxExportError(f"interpolate: only (N, C, *spatial) inputs can be exported, got shape {x.shape}")
    in_size = x.shape[2:]
    sc = scales if scales is not None else (None,) * nd
    # striate's own per-axis operators (the kernels' formulas): gathers or matrices
    dt = np.float64 if x.dtype == np.float64 else np.float32
    if mode in ("nearest", "nearest-exact"):
        exact, legacy = mode == "nearest-exact", mode == "nearest" and nd == 2
        ops = [KR.nearest_indices(n, o, s, exact=exact, legacy=legacy) for n, o, s in zip(in_size, out_size, sc)]
    elif mode in ("linear", "bilinear", "trilinear"):
        ops = [KR.linear_matrix(n, o, align, s, dt) for n, o, s in zip(in_size, out_size, sc)]
    elif mode == "bicubic":
        ops = [KR.cubic_matrix(n, o, align, s, dt) for n, o, s in zip(in_size, out_size, sc)]
    else:  # area = adaptive average pooling
        mats = [KR.area_matrix(n, o, x.dtype) for n, o in zip(in_size, out_size)]
        return [_separable(g, call.inputs[0], mats, x.ndim)]

    attrs = {}
    if mode == "nearest":  # src = floor(i / scale)
        attrs.update(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    elif mode == "nearest-exact":  # src = floor((i + 0.5) / scale) = round_prefer_ceil((i + 0.5) / scale - 0.5)
        attrs.update(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")
    else:
        attrs["mode"] = "cubic" if mode == "bicubic" else "linear"
        attrs["coordinate_transformation_mode"] = "align_corners" if align else "pytorch_half_pixel"
        if mode == "bicubic":
            attrs.update(cubic_coeff_a=-0.75, exclude_outside=0)
    kind = "nearest" if mode.startswith("nearest") else "weights"
    if not _resize_matches(kind, attrs["coordinate_transformation_mode"], in_size, out_size, scales, ops):
        # exact fallback: one Gather (nearest) or MatMul (weights) per axis with striate's operators
        y = call.inputs[0]
        if kind == "nearest":
            for axis, (n, idx) in enumerate(zip(in_size, ops), start=2):
                if not (len(idx) == n and np.array_equal(idx, np.arange(n))):
                    y = g.node("Gather", [y, g.ints(idx, "indices")], axis=axis)
            return [y if y != call.inputs[0] else g.node("Identity", [y])]
        mats = [None if A.shape[0] == A.shape[1] and np.array_equal(A, np.eye(len(A))) else A.astype(x.dtype)
                for A in ops]
        y = _separable(g, y, mats, x.ndim)
        return [y if y != call.inputs[0] else g.node("Identity", [y])]

    if scales is not None:
        # the user's scale factor: ONNX's output size floor(in * s) and source step 1 / s are PyTorch's
        sc = g.const(np.asarray([1.0, 1.0] + [float(s) for s in scales], dtype=np.float32), hint="scales")
        return [g.node("Resize", [call.inputs[0], "", sc], **attrs)]
    if g.opset >= 18:
        sizes = g.ints(out_size, "sizes")
        return [g.node("Resize", [call.inputs[0], "", "", sizes], axes=list(range(2, 2 + nd)), **attrs)]
    if g.dynamic:
        lead = g.slice(g.node("Shape", [call.inputs[0]]), [0], [2], [0])
        sizes = g.node("Concat", [lead, g.ints(out_size, "sizes")], axis=0)
    else:
        sizes = g.ints(list(x.shape[:2]) + out_size, "sizes")
    return [g.node("Resize", [call.inputs[0], "", "", sizes], **attrs)]


def _handlers() -> dict:
    from ..autograd import ops as O
    from ..functional import activation as A
    from ..functional import array as R
    from ..functional import conv as C
    from ..functional import norm as N
    from ..functional import pool as P
    from ..functional import resample as S

    return {
        C._Conv: _conv,
        C._ConvTranspose: _conv_transpose,
        P._MaxPool: _max_pool,
        P._AvgPool: _avg_pool,
        P._AdaptiveAvgPool: _adaptive_avg,
        P._AdaptiveMaxPool: _adaptive_max,
        N._BatchNorm: _batch_norm,
        A._ReLU: _unary("Relu"),
        A._LeakyReLU: _leaky_relu,
        A._ELU: _elu,
        A._GELU: _gelu,
        A._Sigmoid: _unary("Sigmoid"),
        A._Tanh: _unary("Tanh"),
        A._Softplus: _softplus,
        A._Hardtanh: _hardtanh,
        A._Hardsigmoid: _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
        A._Hardswish: _hardswish,
        A._Threshold: _threshold,
        A._SiLU: _silu,
        A._Mish: _mish,
        A._LogSigmoid: _logsigmoid,
        A._PReLU: _prelu,
        A._Softmax: _softmax_family("Softmax"),
        A._LogSoftmax: _softmax_family("LogSoftmax"),
        A._Softmin: _softmax_family("Softmax", negate=True),
        O.Add: _binary("Add"),
        O.Sub: _binary("Sub"),
        O.Mul: _binary("Mul"),
        O.Div: _binary("Div"),
        O.MatMul: _binary("MatMul"),
        O.Neg: _unary("Neg"),
        O.Pow: _pow,
        O.Exp: _unary("Exp"),
        O.Log: _unary("Log"),
        O.Sqrt: _unary("Sqrt"),
        O.Abs: _unary("Abs"),
        O.Sum: _reduction("ReduceSum"),
        O.Mean: _reduction("ReduceMean"),
        O.Amax: _reduction("ReduceMax"),
        O.Reshape: _reshape,
        O.Permute: _permute,
        O.GetItem: _getitem,
        O.Cast: _cast_op,
        O.Clone: _unary("Identity"),
        R._Linear: _linear,
        R._Cat: _cat,
        R._Stack: _stack,
        R._Slice: _slice_op,
        R._Pad: _pad_op,
        S._Downsample: _downsample,
        S._UpsampleZeros: _upsample_zeros,
        S._Interpolate: _interpolate,
    }


# ============================================================================ tracing
def _op_label(fn) -> str:
    return fn.__name__.lstrip("_")


def _where(g: _Graph) -> str:
    if not g.scope:
        return "the model's forward"
    path, module = g.scope[-1]
    return f"layer '{path}' ({type(module).__name__})" if path else f"the forward of {type(module).__name__}"


class _Observer:
    def __init__(self, g: _Graph, handlers: dict):
        self.g, self.handlers = g, handlers

    def __call__(self, fn, args, kwargs, result):
        from ..autograd import Tensor

        g = self.g
        if g.error is not None:
            return
        traced = any(isinstance(a, Tensor) and id(a) in g.values for a in args)
        if not traced:
            return  # computed from parameters/constants only: a constant wherever it is used
        outs = list(result) if isinstance(result, tuple) else [result]
        handler = self.handlers.get(fn)
        try:
            if handler is None:
                raise OnnxExportError(f"the op {_op_label(fn)} has no ONNX exporter")
            inputs = [g.value_of(a) for a in args]
            call = _Call(fn, args, kwargs, outs, inputs, g.scope[-1][0] if g.scope else "",
                         g.scope[-1][1] if g.scope else None)
            names = handler(g, call)
        except OnnxExportError as exc:
            g.error = OnnxExportError(f"cannot export {_op_label(fn)} in {_where(g)}: {exc}")
            raise g.error from None
        except Exception as exc:  # a bug or an unforeseen argument: still say where
            g.error = OnnxExportError(f"cannot export {_op_label(fn)} in {_where(g)}: "
                                      f"{type(exc).__name__}: {exc}")
            raise g.error from exc
        for t, name in zip(outs, names):
            g.values[id(t)] = name
            g.keep.append(t)


def _wrap_forward(g: _Graph, path: str, module, forward):
    def traced_forward(*args, **kwargs):
        g.scope.append((path, module))
        try:
            return forward(*args, **kwargs)
        finally:
            g.scope.pop()

    return traced_forward


def _flat_outputs(out, what="output") -> list:
    from ..autograd import Tensor

    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat_outputs(o, what)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat_outputs(o, what)]
    raise OnnxExportError(f"the model's {what} must be a Tensor or a tuple/list/dict of Tensors, got {type(out).__name__}")


def _forward(model, x: np.ndarray):
    from ..autograd import Tensor, no_grad

    with no_grad():
        out = model(Tensor(x))
    return [t.data for t in _flat_outputs(out)]


def _trace(model, x: np.ndarray, opset: int, dynamic_batch: bool):
    """Run the model once on ``x`` while recording; returns (graph, output Tensors)."""
    from ..autograd import Tensor, function, no_grad

    g = _Graph(model, opset, dynamic_batch)
    xt = Tensor(x)
    g.values[id(xt)] = "input"
    g.keep.append(xt)
    observer = _Observer(g, _handlers())
    patched = []
    function.observers.append(observer)
    try:
        for path, m in model.named_modules():
            had = "forward" in m.__dict__
            patched.append((m, had, m.__dict__.get("forward")))
            object.__setattr__(m, "forward", _wrap_forward(g, path, m, m.forward))
        with no_grad():
            out = model(xt)
        if g.error is not None:  # raised inside the forward but caught there
            raise g.error
    finally:
        function.observers.remove(observer)
        for m, had, previous in reversed(patched):
            if had:
                object.__setattr__(m, "forward", previous)
            else:
                m.__dict__.pop("forward", None)
    return g, _flat_outputs(out)


def _build_model(g: _Graph, outputs, x: np.ndarray, opset: int, dynamic_batch: bool, doc: str):
    from onnx import helper

    graph_outputs = []
    names = ["output"] if len(outputs) == 1 else [f"output_{k}" for k in range(len(outputs))]
    for name, t in zip(names, outputs):
        value = g.values.get(id(t))
        if isinstance(value, _Unsupported):
            raise OnnxExportError(f"model output {name}: {value.reason}")
        if value is None:
            raise OnnxExportError(
                f"model output {name} does not depend on the input through striate ops (was it computed "
                "with NumPy or from .data?); it cannot be exported")
        g.nodes.append(helper.make_node("Identity", [value], [name], name=f"{name}/Identity"))
        dims = list(t.shape)
        if dynamic_batch and dims and dims[0] == x.shape[0]:
            dims[0] = "N"
        graph_outputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(t.dtype), dims))
    in_dims = (["N"] if dynamic_batch else [x.shape[0]]) + list(x.shape[1:])
    graph_input = helper.make_tensor_value_info("input", helper.np_dtype_to_tensor_dtype(x.dtype), in_dims)
    graph = helper.make_graph(g.nodes, "striate", [graph_input], graph_outputs, initializer=g.initializers,
                              doc_string=doc)
    opsets = [helper.make_opsetid("", opset)]
    model_proto = helper.make_model(graph, opset_imports=opsets, producer_name="striate",
                                    producer_version=_version(), doc_string=doc)
    try:  # the oldest IR version that carries this opset: readable by older runtimes too
        model_proto.ir_version = helper.find_min_ir_version_for(opsets)
    except Exception:  # pragma: no cover - older onnx without the table entry
        pass
    return model_proto


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("striate")
    except Exception:  # pragma: no cover
        return "0"


def verify_onnx(model, onnx_model, inputs, *, atol: float = 1e-4, rtol: float = 1e-4) -> float:
    """Run ``onnx_model`` (a ModelProto, bytes or a path) in onnxruntime on each input array and
    compare with ``model``'s own outputs (in eval mode; the modules' flags are restored).

    Returns the largest absolute difference; raises :class:`OnnxExportError` when onnxruntime
    cannot load or run the file, or when some output differs by more than
    ``atol + rtol * |expected|``.
    """
    ort = _require_onnxruntime()
    if hasattr(onnx_model, "SerializeToString"):
        onnx_model = onnx_model.SerializeToString()
    elif isinstance(onnx_model, (str, Path)):
        onnx_model = Path(onnx_model).read_bytes()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        hint = ""
        if any(np.asarray(x).dtype != np.float32 for x in inputs):
            hint = ("; onnxruntime's CPU kernels lack float64 versions of some ops (Conv among them): "
                    "export a float32 copy (model.float()) or pass verify=False")
        raise OnnxExportError(f"onnxruntime cannot load the exported model: {exc}{hint}") from None
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return _compare(model, session, inputs, atol, rtol)
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)


def _compare(model, session, inputs, atol, rtol) -> float:
    worst = 0.0
    for x in inputs:
        expected = _forward(model, x)
        try:
            got = session.run(None, {"input": x})
        except Exception as exc:
            raise OnnxExportError(
                f"onnxruntime fails to run the exported model on an input of shape {x.shape}: {exc}") from None
        for k, (e, o) in enumerate(zip(expected, got)):
            if e.shape != o.shape:
                raise OnnxExportError(
                    f"onnxruntime output {k} has shape {o.shape}, striate's {e.shape} (input {x.shape})")
            diff = float(np.max(np.abs(e.astype(np.float64) - o))) if e.size else 0.0
            worst = max(worst, diff)
            if not np.allclose(o, e, atol=atol, rtol=rtol):
                raise OnnxExportError(
                    f"onnxruntime output {k} differs from striate's by up to {diff:.3g} "
                    f"(atol {atol}, rtol {rtol}, input {x.shape}); the export is not faithful")
    return worst


def export_onnx(model, path, input_shape, opset: int = 17, dynamic_batch: bool = True, *,
                verify: bool = True, atol: float = 1e-4, rtol: float = 1e-4, seed: int = 0, dtype=None,
                metadata: dict | None = None):
    """Write ``model`` as an ONNX file at ``path`` and check it by running it in onnxruntime.

    Args:
        model: a :class:`striate.nn.Module` built from striate layers and functional ops.
        path: the ``.onnx`` file to write (parent directories are created).
        input_shape: the shape of ONE input without the batch axis, e.g. ``(1, 28, 28)``.
        opset: the ONNX opset (at least 13; 17 by default).  Opset 20 and later use the native
            Gelu; 18 and later Mish and the ``axes`` attributes of Resize/Reduce ops.
        dynamic_batch: the batch axis of the input and outputs is symbolic (``N``); otherwise the
            file is fixed to the traced batch size of 2.
        verify: run the checker, then onnxruntime on the traced input and on a fresh input (with
            batch 3 when ``dynamic_batch``), comparing with striate's outputs within
            ``atol + rtol * |expected|``.  Needs ``onnxruntime``.
        seed: for the random inputs of the trace and the check.
        dtype: input dtype (default: the dtype of the model's first floating parameter, else float32).
            A float64 model gives a valid float64 file, but onnxruntime's CPU provider cannot
            run float64 convolutions: export ``model.float()``, or pass ``verify=False``.
        metadata: extra ``{key: value}`` strings for the file's ``metadata_props`` (e.g. class
            names, input normalisation); the exporter adds ``striate.input_shape`` and, after
            verification, ``striate.verify_max_abs_diff``.

    Returns the ``onnx.ModelProto`` written.  The model is traced in eval mode; every module's
    ``training`` flag is restored afterwards.  Raises :class:`OnnxExportError` (a ValueError)
    naming the layer for an op that cannot be exported, or when verification fails; ImportError
    naming the ``onnx`` extra when the packages are missing.
    """
    onnx = _require_onnx()
    from ..nn import Module

    if not isinstance(model, Module):
        raise TypeError(f"export_onnx expects a striate nn.Module, got {type(model).__name__}")
    if not isinstance(opset, (int, np.integer)) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is newer than the installed onnx package supports "
                         f"({onnx.defs.onnx_opset_version()})")
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be the positive shape of one input without the batch axis, "
                         f"got {tuple(input_shape)!r}")
    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if np.issubdtype(p.dtype, np.floating)), np.float32)
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2,) + shape).astype(dtype)

    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        g, outputs = _trace(model, x, int(opset), bool(dynamic_batch))
        doc = f"exported by striate from {type(model).__name__}; input (N, {', '.join(map(str, shape))})"
        proto = _build_model(g, outputs, x, int(opset), bool(dynamic_batch), doc)
        onnx.checker.check_model(proto, full_check=True)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        props = {"striate.input_shape": ",".join(map(str, shape)), **(metadata or {})}
        if verify:
            check = rng.standard_normal(((3 if dynamic_batch else 2),) + shape).astype(dtype)
            worst = verify_onnx(model, proto, [x, check], atol=atol, rtol=rtol)
            props["striate.verify_max_abs_diff"] = f"{worst:.3g}"
        onnx.helper.set_model_props(proto, {str(k): str(v) for k, v in props.items()})
        path.write_bytes(proto.SerializeToString())
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return proto
