"""Stochastic gradient descent with optional (Nesterov) momentum, as ``torch.optim.SGD``."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, _check_number

__all__ = ["SGD", "sgd"]


def _check_sgd(lr, momentum, dampening, weight_decay, nesterov) -> None:
    for name, value in (("learning rate", lr), ("momentum value", momentum),
                        ("dampening value", dampening), ("weight_decay value", weight_decay)):
        _check_number(name, value)
    if lr < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if momentum < 0.0:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if weight_decay < 0.0:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            "Nesterov momentum requires a momentum and zero dampening, "
            f"got momentum={momentum}, dampening={dampening}"
        )


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), PyTorch's formulation.

    For each parameter :math:`\theta` with gradient :math:`g`, at step :math:`t`::

        g <- -g                      if maximize
        g <- g + weight_decay * θ    (L2 penalty)
        b <- g                       at the first step with momentum, else
        b <- momentum * b + (1 - dampening) * g
        g <- g + momentum * b        if nesterov, else g <- b
        θ <- θ - lr * g

    The momentum buffer starts as the first gradient (not zero), so dampening applies from the
    second step on; the velocity is not scaled by lr (unlike Sutskever et al.).

    Args:
        params: iterable of Tensors or of dicts defining parameter groups.
        lr (float): learning rate (default: 1e-3).
        momentum (float): momentum factor (default: 0).
        dampening (float): dampening for momentum (default: 0).
        weight_decay (float): L2 penalty (default: 0).
        nesterov (bool): Nesterov momentum; needs momentum > 0 and dampening == 0 (default: False).
        maximize (bool): maximize the objective instead of minimizing (default: False).

    State per parameter: ``momentum_buffer`` (an array, or None before the first step) when
    momentum != 0.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None):
        _check_sgd(lr, momentum, dampening, weight_decay, nesterov)
        if differentiable or fused:
            raise ValueError("striate optimizers support neither differentiable=True nor fused=True")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _validate_group(self, group) -> None:
        _check_sgd(group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                   group["nesterov"])

    def _step_group(self, group) -> None:
        params, grads, bufs = [], [], []
        with_params = [p for p in group["params"] if p.grad is not None]
        for p in with_params:
            params.append(p.data)
            grads.append(self._grad_array(p))
            if group["momentum"] != 0:
                bufs.append(self.state[p].get("momentum_buffer"))
        sgd(params, grads, bufs, weight_decay=group["weight_decay"], momentum=group["momentum"],
            lr=group["lr"], dampening=group["dampening"], nesterov=group["nesterov"],
            maximize=group["maximize"])
        if group["momentum"] != 0:
            for p, buf in zip(with_params, bufs):
                self.state[p]["momentum_buffer"] = buf


def sgd(params: list[np.ndarray], grads: list[np.ndarray], momentum_buffer_list: list[np.ndarray | None],
        *, weight_decay: float, momentum: float, lr: float, dampening: float, nesterov: bool,
        maximize: bool) -> None:
    """The SGD update on arrays: changes each ``params[i]`` in place.

    ``momentum_buffer_list[i]`` is None before a parameter's first momentum step; it is replaced
    by a new buffer then and updated in place afterwards.  Hyperparameters are cast to the
    parameter's dtype, so float32 stays float32.  ``grads`` are not modified.
    """
    for i, param in enumerate(params):
        dt = param.dtype.type
        grad = -grads[i] if maximize else grads[i]
        if weight_decay != 0:
            grad = grad + dt(weight_decay) * param
        if momentum != 0:
            buf = momentum_buffer_list[i]
            if buf is None:
                buf = grad.copy()  # on the parameter's device
                momentum_buffer_list[i] = buf
            else:
                buf *= dt(momentum)
                buf += dt(1 - dampening) * grad
            grad = grad + dt(momentum) * buf if nesterov else buf
        param -= dt(lr) * grad
