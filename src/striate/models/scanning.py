"""The scanning view of a CNN: classifiers as fully convolutional scanners, scanning MLPs as CNNs.

**2-D: a classifier scans an image.**  A classifier built from convolutions and pooling followed
by ``Flatten`` and fully connected layers looks at one ``h x w`` window.  Sliding it over a larger
image and classifying every window is the same computation as running a *fully convolutional*
network in which

* every convolution, pooling and activation before ``Flatten`` is kept as it is;
* the first ``Linear`` after ``Flatten`` (weight ``(out, C*H*W)``) becomes a ``Conv2d`` with kernel
  ``H x W`` holding the same numbers reshaped to ``(out, C, H, W)``, where ``(C, H, W)`` is the
  feature map that ``Flatten`` received (``Flatten`` orders features channel-major, exactly the
  order of a convolution's weight);
* every later ``Linear`` ``(out, in)`` becomes a 1x1 ``Conv2d`` ``(out, in, 1, 1)``.

On an image larger than the window this network outputs a map ``(N, K, Ho, Wo)``: entry
``[:, :, i, j]`` is the classifier's output on the window whose top-left corner is at
``(i * S_h, j * S_w)``, where ``S`` is the product of the strides of all layers before Flatten
(the network's total stride; windows at other offsets would cut the pooling grid differently).
So ``Ho = (H_img - h) // S_h + 1``.  The equality is exact when no layer pads its input: padding
makes a cropped window see zeros at its borders, while the scanner sees the neighbouring pixels
(:attr:`FullyConvolutional.exact` says which case applies).  The scanner shares the work of
overlapping windows instead of recomputing it per window.

**1-D: a scanning MLP is a CNN (a time-delay network).**  :class:`ScanningMLP` applies one MLP to
every window of ``K`` consecutive input vectors of a sequence ``(N, C, T)``, moving by ``S`` steps;
its first layer becomes a ``Conv1d`` with kernel ``K`` and stride ``S`` and every later layer a
1x1 ``Conv1d`` (:func:`scanning_mlp_to_cnn`).  :class:`DistributedScanningMLP` is the *distributed*
scanning MLP: its first layer is a small sub-MLP applied to groups of ``k1`` consecutive inputs
(the same weights for every group), its second layer a sub-MLP over groups of ``k2`` consecutive
first-layer outputs, and so on -- as an MLP on the window its weight matrices are block-banded
with one repeated block.  Each layer becomes a ``Conv1d`` with that block as its kernel
(``k_l`` wide, stride ``s_l``); the CNN computes each shared sub-MLP once per position instead of
once per window, and equals the scanned MLP exactly when the windows move by the product of the
strides.  Window vectors are flattened time-major: entry ``t * C + c`` is channel ``c`` at step ``t``.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor, no_grad
from ..kernels.shapes import as_tuple

__all__ = [
    "FullyConvolutional",
    "to_fully_convolutional",
    "scan",
    "scan_windows",
    "ScanningMLP",
    "DistributedScanningMLP",
    "scanning_mlp_to_cnn",
]

# layers that act on each position (and channel) separately: copied unchanged
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softplus,
              nn.Identity, nn.Dropout, nn.Dropout2d)
_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm2d)


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor._wrap(np.asarray(x))


def _sequence(model) -> list:
    """The model's layers in forward order: nested Sequentials flattened, else children in registration order."""
    children = list(model.children())
    if not children:
        return [model]
    if not isinstance(model, nn.Sequential) and any(True for _ in model.parameters(recurse=False)):
        raise ValueError(f"{type(model).__name__} holds parameters of its own; cannot read it as a layer sequence")
    layers = []
    for child in children:
        layers.extend(_sequence(child) if any(True for _ in child.children()) else [child])
    return layers


class FullyConvolutional(nn.Sequential):
    """The fully convolutional equivalent of a classifier (see the module docstring).

    Attributes: ``window`` (h, w) -- the classifier's input size; ``stride`` (S_h, S_w) -- the
    distance between neighbouring windows; ``exact`` -- True when no layer pads, so the scan equals
    window-by-window classification exactly.
    """

    window: tuple[int, int]
    stride: tuple[int, int]
    exact: bool

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Number of window positions (rows, columns) on an image of the given size."""
        (h, w), (sh, sw) = self.window, self.stride
        if height < h or width < w:
            raise ValueError(f"an image of {height}x{width} is smaller than the {h}x{w} window")
        return (height - h) // sh + 1, (width - w) // sw + 1


def _stride_of(layer) -> tuple[int, int]:
    if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        stride = layer.stride if layer.stride is not None else layer.kernel_size
        return as_tuple(stride, 2, "stride", minimum=1)
    return (1, 1)


def _pads(layer) -> bool:
    """Whether a convolution or pooling layer pads its input (or rounds its output size up)."""
    if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return False
    pad = layer.padding
    if isinstance(pad, str):
        return pad != "valid"
    return bool(np.any(np.asarray(pad, dtype=np.int64) != 0)) or bool(getattr(layer, "ceil_mode", False))


def _linear_as_conv(linear: nn.Linear, in_channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """A Conv2d with ``linear``'s weights: (out, C*kh*kw) reshaped to (out, C, kh, kw)."""
    w = linear.weight.data
    conv = nn.Conv2d(in_channels, linear.out_features, kernel, bias=linear.bias is not None, dtype=w.dtype)
    conv.weight.data[...] = w.reshape(linear.out_features, in_channels, *kernel)
    if linear.bias is not None:
        conv.bias.data[...] = linear.bias.data
    return conv


def to_fully_convolutional(model, input_shape) -> FullyConvolutional:
    """The fully convolutional network that scans ``model`` (a classifier of ``input_shape`` (C, h, w) images).

    ``model``'s forward pass must apply its layers in the order they were registered (as
    ``nn.Sequential`` and LeNet-5 do) -- checked by running both networks on one random window.
    Supported layers: Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d and pointwise activations/dropout
    before ``Flatten``; AdaptiveAvgPool2d to 1x1 (becomes an average pool with the feature map's
    size and stride 1); after ``Flatten``: Linear, BatchNorm1d, pointwise activations, Softmax and
    LogSoftmax over dim 1.  The result is in eval mode (dropout off, running batch-norm statistics)
    and holds copies of the weights.
    """
    c, h, w = (int(v) for v in input_shape)
    layers = _sequence(model)
    was_training = model.training
    model.eval()
    out: list = []
    stride = [1, 1]
    exact = True
    flat_shape = None  # (C, H, W) that Flatten received, while the next Linear is pending
    seen_flatten = False
    dtype = next((p.data.dtype for p in model.parameters()), np.dtype(np.float32))
    x = Tensor._wrap(np.zeros((1, c, h, w), dtype=dtype))
    try:
        with no_grad():
            for layer in layers:
                name = type(layer).__name__
                if isinstance(layer, nn.Flatten):
                    if seen_flatten or x.ndim != 4 or layer.start_dim != 1 or layer.end_dim not in (-1, 3):
                        raise ValueError(f"cannot convert {name}(start_dim={layer.start_dim}, end_dim={layer.end_dim})"
                                         f" on a {tuple(x.shape)} map (only one Flatten of (N, C, H, W) from dim 1)")
                    flat_shape, seen_flatten = tuple(x.shape[1:]), True
                    continue
                if not seen_flatten:
                    if isinstance(layer, _SPATIAL) or isinstance(layer, _POINTWISE):
                        new = copy.deepcopy(layer)
                        st = _stride_of(layer)
                        stride = [stride[0] * st[0], stride[1] * st[1]]
                        exact &= not _pads(layer)
                    elif isinstance(layer, nn.AdaptiveAvgPool2d):
                        if as_tuple(layer.output_size, 2, "output_size") != (1, 1):
                            raise ValueError(f"cannot convert AdaptiveAvgPool2d(output_size={layer.output_size}): "
                                             "only global (1x1) pooling has a scanning equivalent")
                        new = nn.AvgPool2d(tuple(x.shape[2:]), stride=1)
                    else:
                        raise ValueError(f"cannot convert a {name} layer before Flatten to a scanning layer")
                else:
                    if isinstance(layer, nn.Linear):
                        if flat_shape is not None:
                            if int(np.prod(flat_shape)) != layer.in_features:
                                raise ValueError(f"Linear({layer.in_features}, {layer.out_features}) follows a "
                                                 f"Flatten of {flat_shape} = {int(np.prod(flat_shape))} features")
                            new = _linear_as_conv(layer, flat_shape[0], flat_shape[1:])
                            flat_shape = None
                        else:
                            new = _linear_as_conv(layer, layer.in_features, (1, 1))
                    elif isinstance(layer, nn.BatchNorm1d):
                        new = nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                                             affine=layer.affine, track_running_stats=layer.track_running_stats)
                        new = new.to(dtype)
                        new.load_state_dict(layer.state_dict())
                    elif isinstance(layer, (nn.Softmax, nn.LogSoftmax)):
                        if layer.dim not in (1, -3):
                            raise ValueError(f"cannot convert {name}(dim={layer.dim}) after Flatten: only dim=1")
                        new = copy.deepcopy(layer)
                        new.dim = 1
                    elif isinstance(layer, _POINTWISE):
                        new = copy.deepcopy(layer)
                    else:
                        raise ValueError(f"cannot convert a {name} layer after Flatten to a scanning layer")
                new.eval()
                x = new(x)
                out.append(new)
        if not seen_flatten:
            raise ValueError(f"{type(model).__name__} has no Flatten layer: it is already fully convolutional")
        fcn = FullyConvolutional(*out)
        fcn.window, fcn.stride, fcn.exact = (h, w), (stride[0], stride[1]), bool(exact)
        fcn.eval()
        # the layer walk assumed forward == the layers in registration order: check on one random window
        probe = np.random.default_rng(0).standard_normal((2, c, h, w)).astype(dtype)
        with no_grad():
            want = np.asarray(model(Tensor._wrap(probe)).data)
            got = np.asarray(fcn(Tensor._wrap(probe)).data)
    finally:
        model.train(was_training)
    if got.shape != (*want.shape, 1, 1) or not np.allclose(got[..., 0, 0], want, rtol=1e-4, atol=1e-4):
        raise ValueError(f"{type(model).__name__}'s forward pass is not the sequence of its layers "
                         f"({' -> '.join(type(m).__name__ for m in layers)}); cannot convert it")
    return fcn


def scan(model, images, input_shape=None, batch_size: int = 16) -> np.ndarray:
    """Class scores ``(N, K, Ho, Wo)`` of every window of ``images`` (N, C, H, W), fully convolutionally.

    ``model`` is a classifier (converted with :func:`to_fully_convolutional` for windows of
    ``input_shape``) or an already converted :class:`FullyConvolutional`.  Runs in eval mode
    without gradients.
    """
    fcn = model if isinstance(model, FullyConvolutional) else to_fully_convolutional(model, input_shape)
    images = np.asarray(images.data if isinstance(images, Tensor) else images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    ho, wo = fcn.output_size(*images.shape[2:])  # raises if an image is smaller than the window
    with no_grad():
        parts = [np.asarray(fcn(Tensor._wrap(images[s:s + batch_size])).data)
                 for s in range(0, len(images), batch_size)]
    # When the classifier ignores its window's last rows/columns (a floor in some layer's size),
    # the network also produces positions whose window would stick out of the image: drop them.
    return np.concatenate(parts)[:, :, :ho, :wo]


def scan_windows(model, images, window, stride, batch_size: int = 256) -> np.ndarray:
    """The reference for :func:`scan`: crop every window and classify it with ``model``.

    Windows of size ``window`` (h, w) with top-left corners at multiples of ``stride`` (S_h, S_w);
    returns ``(N, K, Ho, Wo)`` with ``Ho = (H - h) // S_h + 1``.  Eval mode, no gradients.
    """
    images = np.asarray(images.data if isinstance(images, Tensor) else images)
    (h, w), (sh, sw) = as_tuple(window, 2, "window", minimum=1), as_tuple(stride, 2, "stride", minimum=1)
    n, c, height, width = images.shape
    if height < h or width < w:
        raise ValueError(f"images {images.shape} are smaller than the {h}x{w} window")
    views = np.lib.stride_tricks.sliding_window_view(images, (h, w), axis=(2, 3))[:, :, ::sh, ::sw]
    ho, wo = views.shape[2:4]
    crops = views.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c, h, w)  # (N*Ho*Wo, C, h, w)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            scores = np.concatenate([np.asarray(model(Tensor._wrap(np.ascontiguousarray(crops[s:s + batch_size]))).data)
                                     for s in range(0, len(crops), batch_size)])
    finally:
        model.train(was_training)
    return scores.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------- 1-D


def _activation(name: str):
    table = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
    if name not in table:
        raise ValueError(f"activation must be one of {sorted(table)}, got {name!r}")
    return table[name]()


def _windows(x, window: int, stride: int) -> Tensor:
    """``(N, P, window * C)``: every window of ``x`` (N, C, T), flattened time-major (t * C + c)."""
    x = _as_tensor(x)
    if x.ndim != 3:
        raise ValueError(f"a scanning MLP takes (N, C, T) sequences, got shape {tuple(x.shape)}")
    n, c, t = x.shape
    if t < window:
        raise ValueError(f"a sequence of {t} steps is shorter than the {window}-step window")
    steps = range(0, t - window + 1, stride)
    # the scan itself: the same window-sized view at every stride-th step
    frames = [x[:, :, s:s + window].permute(0, 2, 1).reshape(n, window * c) for s in steps]
    return F.stack(frames, dim=1)


class ScanningMLP(nn.Module):
    """One MLP applied to every ``window``-step window of an (N, C, T) sequence, moving by ``stride``.

    ``sizes`` are the widths of its layers (the last is the output); the first layer takes
    ``window * in_channels`` inputs.  ``forward`` returns ``(N, sizes[-1], P)`` with
    ``P = (T - window) // stride + 1``: column ``p`` is the MLP's output on steps
    ``p*stride .. p*stride + window - 1``.
    """

    def __init__(self, in_channels: int, window: int, stride: int, sizes=(8, 16, 4), activation: str = "relu",
                 dtype=None):
        super().__init__()
        if min(in_channels, window, stride) < 1 or not sizes or min(sizes) < 1:
            raise ValueError(f"in_channels, window, stride and sizes must be positive, got {in_channels}, {window}, "
                             f"{stride}, {sizes}")
        self.in_channels, self.window, self.stride = in_channels, window, stride
        self.activation = activation
        widths = [window * in_channels, *sizes]
        self.layers = nn.ModuleList([nn.Linear(a, b, dtype=dtype) for a, b in zip(widths[:-1], widths[1:])])
        self.act = _activation(activation)

    def forward(self, x):
        h = _windows(x, self.window, self.stride)  # (N, P, window * C)
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = self.act(h)
        return h.permute(0, 2, 1)  # (N, out, P)


class DistributedScanningMLP(nn.Module):
    """A distributed scanning MLP: layer ``l`` is one sub-MLP shared over groups of ``k_l`` lower outputs.

    ``layers`` is a list of ``(width, k, s)``: layer ``l`` has ``width`` neurons per group, each
    group reads ``k`` consecutive positions of the layer below, and neighbouring groups are ``s``
    positions apart.  The whole thing is an MLP on a window of ``window`` input steps (the product
    structure below), scanned with ``stride = prod(s)``; its layers are kept as ordinary
    :class:`~striate.nn.Linear` modules whose weights are block-banded copies of one block per
    layer (``shared_blocks`` holds the blocks it was built from).

    Positions per window: the top layer has 1; layer ``l-1`` has ``(n_l - 1) * s_l + k_l``; the
    input has ``window = n_0`` steps.
    """

    def __init__(self, in_channels: int, layers=((2, 2, 2), (8, 2, 2), (4, 2, 1)), activation: str = "relu",
                 dtype=None, generator=None):
        super().__init__()
        spec = [tuple(int(v) for v in layer) for layer in layers]
        if in_channels < 1 or not spec or any(len(s) != 3 or min(s) < 1 for s in spec):
            raise ValueError(f"layers must be (width, k, s) triples of positive ints, got {layers!r}")
        self.in_channels, self.spec, self.activation = in_channels, spec, activation
        counts = [1]
        for _, k, s in reversed(spec):
            counts.insert(0, (counts[0] - 1) * s + k)
        self.positions = counts  # positions per window at the input and after each layer
        self.window = counts[0]
        self.stride = int(np.prod([s for _, _, s in spec]))
        dt = np.dtype(np.float32 if dtype is None else dtype)
        widths = [in_channels] + [wd for wd, _, _ in spec]
        full, blocks = [], []
        for l, (width, k, s) in enumerate(spec):
            sub = nn.Linear(k * widths[l], width, dtype=dt)  # the shared sub-MLP layer, initialised as usual
            if generator is not None:
                sub.reset_parameters(generator=generator)
            blocks.append((sub.weight.data.copy(), sub.bias.data.copy()))
            big = nn.Linear(counts[l] * widths[l], counts[l + 1] * width, dtype=dt)
            big.weight.data[...] = 0
            for p in range(counts[l + 1]):  # group p reads positions p*s .. p*s + k - 1
                rows = slice(p * width, (p + 1) * width)
                cols = slice(p * s * widths[l], (p * s + k) * widths[l])
                big.weight.data[rows, cols] = sub.weight.data
                big.bias.data[rows] = sub.bias.data
            full.append(big)
        self.layers = nn.ModuleList(full)
        self.shared_blocks = blocks
        self.act = _activation(activation)

    def forward(self, x):
        h = _windows(x, self.window, self.stride)  # (N, P, window * C)
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = self.act(h)
        return h.permute(0, 2, 1)  # (N, out, P)


def _conv1d(weight: np.ndarray, bias: np.ndarray | None, in_channels: int, kernel: int, stride: int) -> nn.Conv1d:
    """A Conv1d from a time-major MLP block ``(out, kernel * in_channels)``: reshape, swap to (out, C, k)."""
    out = weight.shape[0]
    conv = nn.Conv1d(in_channels, out, kernel, stride=stride, bias=bias is not None, dtype=weight.dtype)
    conv.weight.data[...] = weight.reshape(out, kernel, in_channels).transpose(0, 2, 1)
    if bias is not None:
        conv.bias.data[...] = bias
    return conv


def _distributed_block(mlp: DistributedScanningMLP, l: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer ``l``'s shared block, read from its full weight matrix and checked to repeat as it must."""
    width, k, s = mlp.spec[l]
    c_in = mlp.in_channels if l == 0 else mlp.spec[l - 1][0]
    W, b = mlp.layers[l].weight.data, mlp.layers[l].bias.data
    block, bias = W[:width, :k * c_in], b[:width]
    expected = np.zeros_like(W)
    for p in range(mlp.positions[l + 1]):
        expected[p * width:(p + 1) * width, p * s * c_in:(p * s + k) * c_in] = block
    if not (np.array_equal(W, expected) and np.array_equal(b, np.tile(bias, mlp.positions[l + 1]))):
        raise ValueError(f"layer {l} of the distributed scanning MLP no longer repeats one shared block "
                         "(were its full weights trained independently?); it has no exact CNN equivalent")
    return block, bias


def scanning_mlp_to_cnn(mlp) -> nn.Sequential:
    """The CNN (a stack of Conv1d) computing exactly what the scanning MLP computes, from its weights.

    * :class:`ScanningMLP`: ``Conv1d(C, h1, window, stride)``, then ``Conv1d(h_l, h_{l+1}, 1)``.
    * :class:`DistributedScanningMLP`: ``Conv1d(c_{l-1}, c_l, k_l, stride=s_l)`` per layer, each
      holding the layer's shared block.

    Both give ``(N, out, P)`` on ``(N, C, T)`` input, equal to ``mlp(x)``.
    """
    convs = []
    if isinstance(mlp, DistributedScanningMLP):
        widths = [mlp.in_channels] + [wd for wd, _, _ in mlp.spec]
        for l, (_, k, s) in enumerate(mlp.spec):
            block, bias = _distributed_block(mlp, l)
            convs.append(_conv1d(block, bias, widths[l], k, s))
    elif isinstance(mlp, ScanningMLP):
        for l, layer in enumerate(mlp.layers):
            bias = None if layer.bias is None else layer.bias.data
            if l == 0:
                convs.append(_conv1d(layer.weight.data, bias, mlp.in_channels, mlp.window, mlp.stride))
            else:
                convs.append(_conv1d(layer.weight.data, bias, layer.in_features, 1, 1))
    else:
        raise TypeError(f"expected a ScanningMLP or DistributedScanningMLP, got {type(mlp).__name__}")
    act = mlp.activation
    layers = []
    for l, conv in enumerate(convs):
        layers.append(conv)
        if l < len(convs) - 1:
            layers.append(_activation(act))
    return nn.Sequential(*layers)
