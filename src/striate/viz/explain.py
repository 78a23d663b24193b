"""What a trained network looks at: feature maps, saliency, Grad-CAM, filters, in PNGs.

All of it comes from one forward and one backward pass of striate itself on a single image:

* **feature maps** -- the output of every layer (by default every ``Conv2d``), recorded while the
  model runs;
* **saliency** (Simonyan et al. 2014) -- the gradient of one class score (the logit, before the
  softmax) with respect to the input pixels, ``d score / d x``, computed by striate's backward; the
  map shows ``max_c |d score / d x[c]|``, the pixels whose change would move the score most;
* **Grad-CAM** (Selvaraju et al. 2017) -- for a convolutional layer with maps ``A[k]`` (default:
  the last ``Conv2d`` the forward pass calls), weights ``alpha[k] = mean over positions of
  d score / d A[k]``; the map is ``relu(sum_k alpha[k] A[k])``, upsampled bilinearly to the input;
* **filters** -- the first convolution's weights (`striate.viz.filter_grid`);
* a **confusion matrix** when one is given (`striate.viz.confusion_matrix_plot`).

`explain` writes them all into a directory; ``striate explain CHECKPOINT IMAGE --out DIR``
is that function on a trained run.  Layers are recorded by temporarily wrapping each chosen
module's ``forward`` on the instance (removed again afterwards, also on error), so any model
built from ``striate.nn`` modules works without changes.  Parameters are switched to
``requires_grad=False`` during the pass (and restored), so only the input and the recorded
layers receive gradients and the model's ``.grad`` fields are left untouched.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._figure import new_figure, save_png, to_numpy

__all__ = ["layer_activations", "saliency", "grad_cam", "Explanation", "plot_saliency", "plot_grad_cam",
           "explain", "SALIENCY_FIGSIZE", "GRADCAM_FIGSIZE"]

#: Figure sizes in inches of the saliency and Grad-CAM PNGs (at ``dpi`` 100: 900 x 340 pixels).
SALIENCY_FIGSIZE = (9.0, 3.4)
GRADCAM_FIGSIZE = (9.0, 3.4)


@dataclass
class Explanation:
    """One image's pass through a model, forward and backward (from `saliency` / `grad_cam`).

    ``target``: the class whose score was differentiated; ``probs``: softmax of the logits (K,);
    ``score``: the target's logit; ``grad``: d score / d input, (C, H, W); ``saliency``:
    ``max_c |grad|``, (H, W); ``layer``: the Grad-CAM layer's name (or None); ``activations``
    and ``layer_grad``: its output A (K, h, w) and d score / d A; ``weights``: alpha (K,);
    ``cam_small``: relu(sum_k alpha_k A_k), (h, w); ``cam``: that map upsampled to (H, W) and
    divided by its maximum (all zeros when nothing speaks for the class).
    """

    target: int
    probs: np.ndarray
    score: float
    grad: np.ndarray
    saliency: np.ndarray
    layer: str | None = None
    activations: np.ndarray | None = None
    layer_grad: np.ndarray | None = None
    weights: np.ndarray | None = None
    cam_small: np.ndarray | None = None
    cam: np.ndarray | None = None


# ----------------------------------------------------------------------------- recording layers
def _image_array(image) -> np.ndarray:
    """A (C, H, W) floating array from an array or Tensor ((1, C, H, W) accepted)."""
    data = getattr(image, "data", image)
    a = np.asarray(data)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected one image (C, H, W) or (1, C, H, W), got shape {tuple(a.shape)}")
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    return a


def _named_modules(model) -> dict:
    return {name: m for name, m in model.named_modules() if name}


def _conv_names(model) -> list[str]:
    from ..nn import Conv2d

    return [name for name, m in _named_modules(model).items() if isinstance(m, Conv2d)]


def _resolve_layers(model, layers) -> list[str]:
    modules = _named_modules(model)
    if layers is None:
        return _conv_names(model)
    if isinstance(layers, str):
        layers = [layers]
    unknown = [n for n in layers if n not in modules]
    if unknown:
        shown = ", ".join(list(modules)[:40]) + (", ..." if len(modules) > 40 else "")
        raise ValueError(f"{type(model).__name__} has no layer named {', '.join(map(repr, unknown))}; "
                         f"its layers are: {shown}")
    return list(layers)


@contextlib.contextmanager
def _recording(model, names, retain: bool):
    """Wrap the ``forward`` of the named submodules so their outputs land in a list, in call order.

    Yields the list of ``(name, output Tensor)``; with ``retain`` the outputs keep their ``.grad``.
    The wrappers are removed when the block ends.
    """
    from ..autograd import Tensor

    modules = _named_modules(model)
    calls: list[tuple[str, object]] = []
    patched = []
    try:
        for name in names:
            m = modules[name]
            had_own = "forward" in m.__dict__
            original = m.forward

            def wrapper(*args, _name=name, _original=original, **kwargs):
                out = _original(*args, **kwargs)
                if isinstance(out, Tensor):
                    if retain and out.requires_grad:
                        out.retain_grad()
                    calls.append((_name, out))
                return out

            object.__setattr__(m, "forward", wrapper)
            patched.append((m, had_own, original))
        yield calls
    finally:
        for m, had_own, original in reversed(patched):
            if had_own:
                object.__setattr__(m, "forward", original)
            else:
                object.__delattr__(m, "forward")


@contextlib.contextmanager
def _frozen(model):
    """Parameters stop requiring grad for the block (restored after); eval mode likewise."""
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    for p in params:
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)


def _class_logits(out):
    """The class scores from a model's output: (1, K) as is, (1, K, H, W) summed over positions,
    a tuple/list -> its first element (e.g. a localizer's (class logits, box))."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim == 4:
        out = out.sum(dim=(2, 3))
    if out.ndim != 2 or out.shape[0] != 1:
        raise ValueError(f"expected class scores of shape (1, K) from the model, got {tuple(out.shape)}")
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def layer_activations(model, image, layers=None) -> dict[str, np.ndarray]:
    """The output of each layer for one image: ``{name: (C, h, w) array}`` in the order called.

    ``image``: (C, H, W) (or (1, C, H, W)), already normalised as the model expects.  ``layers``:
    module names as in ``model.named_modules()`` (default: every ``Conv2d``).  A layer called
    more than once keeps its last output; layers whose output is not 4-D are left out.
    """
    from .. import no_grad, tensor

    x = _image_array(image)
    names = _resolve_layers(model, layers)
    with _frozen(model), no_grad(), _recording(model, names, retain=False) as calls:
        model(tensor(x[None]))
    out = {}
    for name, t in calls:
        if t.ndim == 4:
            out.pop(name, None)
            out[name] = np.array(t.data[0])
    return out


def _last_conv_called(model, image) -> str:
    names = _conv_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM; pass layer=NAME")
    acts = layer_activations(model, image, names)
    spatial = [n for n, a in acts.items() if a.shape[1] * a.shape[2] > 1]
    if not spatial:
        raise ValueError("no Conv2d layer of this model has an output larger than 1x1 for this image")
    return spatial[-1]


def _explain(model, image, target=None, layer=None) -> Explanation:
    """One forward + backward: input gradient and (if ``layer``) the layer's output and gradient."""
    from .. import functional as F
    from .. import no_grad, tensor

    x_arr = _image_array(image)
    names = _resolve_layers(model, [layer]) if layer is not None else []
    with _frozen(model):
        x = tensor(x_arr[None], requires_grad=True)
        with _recording(model, names, retain=True) as calls:
            logits = _class_logits(model(x))
        k = logits.shape[1]
        probs = _softmax(np.asarray(logits.data[0], dtype=np.float64))
        if target is None:
            target = int(np.argmax(probs))
        if not isinstance(target, (int, np.integer)) or not 0 <= int(target) < k:
            raise ValueError(f"target class must be an integer in [0, {k}), got {target!r}")
        target = int(target)
        score = logits[0, target]
        score.backward()
    grad = np.zeros_like(x_arr) if x.grad is None else np.array(x.grad.data[0])
    result = Explanation(target=target, probs=probs, score=float(score.data), grad=grad,
                         saliency=np.abs(grad).max(axis=0))
    if layer is not None:
        outs = [t for name, t in calls if t.ndim == 4]
        if not outs:
            raise ValueError(f"layer {layer!r} produced no 4-D (N, C, H, W) output for Grad-CAM")
        a = outs[-1]
        if a.grad is None:  # the score does not depend on this layer
            g = np.zeros(a.shape[1:], dtype=a.dtype)
        else:
            g = np.array(a.grad.data[0])
        acts = np.array(a.data[0])
        weights = g.mean(axis=(1, 2))
        small = np.maximum(np.tensordot(weights, acts, axes=1), 0.0)
        h, w = x_arr.shape[1:]
        with no_grad():
            big = F.interpolate(tensor(small[None, None].astype(np.float64)), size=(h, w), mode="bilinear",
                                align_corners=False).data[0, 0]
        big = np.maximum(big, 0.0)
        peak = big.max()
        result.layer, result.activations, result.layer_grad = layer, acts, g
        result.weights, result.cam_small = weights, small
        result.cam = big / peak if peak > 0 else np.zeros_like(big)
    return result


def saliency(model, image, target=None) -> Explanation:
    """d score / d input for one image, by striate's backward (see `Explanation`).

    ``image``: (C, H, W), normalised as the model expects.  ``target``: the class whose logit is
    differentiated (default: the predicted class).
    """
    return _explain(model, image, target)


def grad_cam(model, image, target=None, layer=None) -> Explanation:
    """Grad-CAM of ``target`` (default: the predicted class) at ``layer`` (a module name; default:
    the last ``Conv2d`` called with an output larger than 1x1).  Also fills the saliency fields."""
    if layer is None:
        layer = _last_conv_called(model, image)
    return _explain(model, image, target, layer)


# ----------------------------------------------------------------------------- drawing
def _display(image, display) -> np.ndarray:
    """(H, W) gray or (H, W, 3) RGB in [0, 1] for showing: ``display`` if given, else ``image``
    rescaled min..max; other channel counts are averaged to gray."""
    a = _image_array(display if display is not None else image).astype(np.float64)
    if display is None or a.min() < 0 or a.max() > 1:
        lo, hi = a.min(), a.max()
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.shape[0] == 3:
        return a.transpose(1, 2, 0)
    return a.mean(axis=0)


def _three_panels(figsize, path, shown, heat, titles, cmap, heat_label, suptitle, dpi):
    """Input | heat map | overlay, ``shown`` being (H, W) gray or (H, W, 3) RGB in [0, 1]."""
    with new_figure(figsize=figsize, dpi=dpi) as fig:
        axes = fig.subplots(1, 3)
        gray = shown.ndim == 2
        axes[0].imshow(shown, cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
        im = axes[1].imshow(heat, cmap=cmap, vmin=0, vmax=max(float(heat.max()), 1e-12), interpolation="nearest")
        fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
        axes[2].imshow(shown, cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
        axes[2].imshow(heat, cmap=cmap, alpha=0.5, vmin=0, vmax=max(float(heat.max()), 1e-12),
                       interpolation="bilinear")
        titles = (titles[0], f"{titles[1]}\n({heat_label})", titles[2])
        for ax, t in zip(axes, titles):
            ax.set_title(t, fontsize=9)
            ax.set_axis_off()
        if suptitle:
            fig.suptitle(suptitle, fontsize=10)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.04, top=0.78 if suptitle else 0.86, wspace=0.3)
        return save_png(fig, path, dpi=dpi)


def plot_saliency(image, saliency_map, path, *, display=None, title=None, dpi: int = 100) -> Path:
    """PNG: the input, the saliency map (H, W) and the two overlaid; ``SALIENCY_FIGSIZE`` inches.

    ``image``: (C, H, W) model input; ``display``: the same image in [0, 1] to show (default:
    ``image`` rescaled to its min..max).  Returns ``path`` as a Path.
    """
    heat = to_numpy(saliency_map, "saliency_map")
    if heat.ndim != 2:
        raise ValueError(f"saliency_map must be (H, W), got shape {tuple(heat.shape)}")
    shown = _display(image, display)
    return _three_panels(SALIENCY_FIGSIZE, path, shown, heat, ("input", "saliency |d score / d x|", "overlay"),
                         "inferno", "max over channels", title, dpi)


def plot_grad_cam(image, cam, path, *, display=None, title=None, dpi: int = 100) -> Path:
    """PNG: the input, the Grad-CAM map (H, W, in [0, 1]) and the two overlaid; ``GRADCAM_FIGSIZE``."""
    heat = to_numpy(cam, "cam")
    if heat.ndim != 2:
        raise ValueError(f"cam must be (H, W), got shape {tuple(heat.shape)}")
    shown = _display(image, display)
    return _three_panels(GRADCAM_FIGSIZE, path, shown, heat, ("input", "Grad-CAM", "overlay"), "jet",
                         "relative importance", title, dpi)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "layer"


def explain(model, image, out_dir, *, display=None, class_names=None, target=None, layers=None,
            cam_layer=None, confusion=None, max_maps: int = 16, dpi: int = 100) -> dict[str, Path]:
    """Write every explanation of one image into ``out_dir``; returns ``{name: path}`` in write order.

    * ``saliency.png`` -- `plot_saliency` of d score / d input;
    * ``gradcam.png`` -- `plot_grad_cam` at ``cam_layer`` (default: the last Conv2d called);
    * ``filters.png`` -- the first Conv2d's weights (`striate.viz.filter_grid`), if any;
    * ``features_NN_LAYER.png`` -- `striate.viz.feature_maps` of each recorded layer
      (``layers``: module names; default every Conv2d), at most ``max_maps`` channels each;
    * ``confusion.png`` -- when a (K, K) ``confusion`` matrix is given.

    ``image`` is the normalised (C, H, W) model input, ``display`` the same picture in [0, 1] for
    showing; ``target`` the class to explain (default: the prediction); ``class_names`` label it.
    Keys of the result: ``saliency``, ``gradcam``, ``filters``, ``features:LAYER``, ``confusion``.
    """
    from ..nn import Conv2d
    from .confusion import confusion_matrix_plot
    from .filters import feature_maps, filter_grid

    layers = _resolve_layers(model, layers)  # unknown names fail before anything is written
    if cam_layer is not None:
        _resolve_layers(model, [cam_layer])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layer = cam_layer if cam_layer is not None else (_last_conv_called(model, image) if _conv_names(model) else None)
    result = _explain(model, image, target, layer)
    k = len(result.probs)
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a model with {k} outputs")
    label = names[result.target]
    pred = int(np.argmax(result.probs))
    verdict = (f"class {label}: p = {result.probs[result.target]:.1%}" +
               ("" if pred == result.target else f" (predicted {names[pred]}, p = {result.probs[pred]:.1%})"))
    written: dict[str, Path] = {}
    written["saliency"] = plot_saliency(image, result.saliency, out / "saliency.png", display=display,
                                        title=f"saliency of {verdict}", dpi=dpi)
    if result.cam is not None:
        written["gradcam"] = plot_grad_cam(image, result.cam, out / "gradcam.png", display=display,
                                           title=f"Grad-CAM at {result.layer} of {verdict}", dpi=dpi)
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    if convs:
        written["filters"] = filter_grid(convs[0].weight, out / "filters.png", dpi=dpi)
    acts = layer_activations(model, image, layers)
    for i, (name, a) in enumerate(acts.items(), start=1):
        written[f"features:{name}"] = feature_maps(a, out / f"features_{i:02d}_{_slug(name)}.png", max_maps=max_maps,
                                                   title=f"{name}: {a.shape[0]} maps, {a.shape[1]}x{a.shape[2]}",
                                                   dpi=dpi)
    if confusion is not None:
        written["confusion"] = confusion_matrix_plot(confusion, out / "confusion.png", class_names=names, dpi=dpi)
    return written
