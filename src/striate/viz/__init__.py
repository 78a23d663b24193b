"""Pictures of training and of what a network learned: curves, filter grids, feature maps, confusion.

Every function draws on a private :class:`matplotlib.figure.Figure` rendered by the Agg canvas --
never through ``pyplot`` -- so it changes no global backend, leaves no open figure behind, and
works on machines without a display.  Each writes a PNG atomically (a temporary file in the same
directory, then ``os.replace``) and returns the path as a :class:`pathlib.Path`.

matplotlib is imported inside the functions, not when ``striate`` is imported; without it they
raise :class:`ImportError` saying ``pip install 'striate[train]'``.

    plot_curves(history, path)                    loss and accuracy against epoch (two panels)
    filter_grid(weight, path)                     first-layer filters, OIHW, one tile per filter
    feature_maps(activations, path, max_maps=16)  a (C, H, W) activation, one tile per channel
    confusion_matrix_plot(cm, path, class_names)  counts (rows true, columns predicted)
    saliency(model, image, target)                d score / d input, by striate's own backward
    grad_cam(model, image, target, layer)         Grad-CAM at a convolution layer

The submodules ``striate.viz.explain`` (``explain(...)`` writes all of an image's pictures) and
``striate.viz.backward_demo`` (the backward of a convolution and pooling, drawn and checked)
hold the rest.
"""

from .confusion import confusion_matrix_plot
from .curves import plot_curves
from .filters import feature_maps, filter_grid
from .explain import grad_cam, layer_activations, saliency

__all__ = ["plot_curves", "filter_grid", "feature_maps", "confusion_matrix_plot", "saliency", "grad_cam",
           "layer_activations"]
