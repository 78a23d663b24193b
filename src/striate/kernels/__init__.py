"""Pure NumPy forward/backward pairs: arrays in, arrays out, no Tensor and no graph.

Naming: ``<op>_forward(...) -> (y, cache)`` and ``<op>_backward(dy, cache) -> grads``.
"""
