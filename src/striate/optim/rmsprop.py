"""RMSprop, as ``torch.optim.RMSprop``."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, _check_number, _lerp_

__all__ = ["RMSprop", "rmsprop"]


def _check_rmsprop(lr, alpha, eps, weight_decay, momentum) -> None:
    for name, value in (("learning rate", lr), ("alpha value", alpha), ("epsilon value", eps),
                        ("weight_decay value", weight_decay), ("momentum value", momentum)):
        _check_number(name, value)
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= momentum:
        raise ValueError(f"Invalid momentum value: {momentum}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if not 0.0 <= alpha:
        raise ValueError(f"Invalid alpha value: {alpha}")


class RMSprop(Optimizer):
    r"""RMSprop (Hinton), PyTorch's formulation: eps is added after the square root.

    With gradient :math:`g`::

        g <- -g                                  if maximize
        g <- g + weight_decay * θ
        v <- α v + (1 - α) g²
        ḡ <- lerp(ḡ, g, 1 - α);  d <- sqrt(v - ḡ²) + eps      if centered
        d <- sqrt(v) + eps                                      otherwise
        b <- momentum * b + g / d;  θ <- θ - lr * b             if momentum > 0
        θ <- θ - lr * g / d                                     otherwise

    Args:
        params: iterable of Tensors or of dicts defining parameter groups.
        lr (float): learning rate (default: 1e-2).
        alpha (float): smoothing constant (default: 0.99).
        eps (float): added to the denominator (default: 1e-8).
        weight_decay (float): L2 penalty (default: 0).
        momentum (float): momentum factor (default: 0).
        centered (bool): normalize by an estimate of the gradient's variance (default: False).
        maximize (bool): maximize the objective (default: False).

    State per parameter: ``step`` (float), ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False):
        _check_rmsprop(lr, alpha, eps, weight_decay, momentum)
        if differentiable or capturable:
            raise ValueError("striate optimizers support neither differentiable=True nor capturable=True")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _validate_group(self, group) -> None:
        _check_rmsprop(group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"])

    def _step_group(self, group) -> None:
        params, grads, square_avgs, grad_avgs, bufs, steps = [], [], [], [], [], []
        with_params = [p for p in group["params"] if p.grad is not None]
        for p in with_params:
            params.append(p.data)
            grads.append(self._grad_array(p))
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0.0
                state["square_avg"] = np.zeros_like(p.data)
                if group["momentum"] > 0:
                    state["momentum_buffer"] = np.zeros_like(p.data)
                if group["centered"]:
                    state["grad_avg"] = np.zeros_like(p.data)
            square_avgs.append(state["square_avg"])
            steps.append(state["step"])
            if group["momentum"] > 0:
                bufs.append(state.setdefault("momentum_buffer", np.zeros_like(p.data)))
            if group["centered"]:
                grad_avgs.append(state.setdefault("grad_avg", np.zeros_like(p.data)))
        rmsprop(params, grads, square_avgs, grad_avgs, bufs, steps, lr=group["lr"],
                alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                momentum=group["momentum"], centered=group["centered"], maximize=group["maximize"])
        for p, step in zip(with_params, steps):
            self.state[p]["step"] = step


def rmsprop(params: list[np.ndarray], grads: list[np.ndarray], square_avgs: list[np.ndarray],
            grad_avgs: list[np.ndarray], momentum_buffer_list: list[np.ndarray], state_steps: list[float],
            *, lr: float, alpha: float, eps: float, weight_decay: float, momentum: float,
            centered: bool, maximize: bool) -> None:
    """The RMSprop update on arrays: ``params[i]`` and the buffers change in place,
    ``state_steps[i]`` is incremented.  Arithmetic happens in the parameter's dtype.
    """
    for i, param in enumerate(params):
        dt = param.dtype.type
        grad = -grads[i] if maximize else grads[i]
        square_avg = square_avgs[i]
        state_steps[i] += 1

        if weight_decay != 0:
            grad = grad + dt(weight_decay) * param

        square_avg *= dt(alpha)
        square_avg += dt(1 - alpha) * grad * grad

        with np.errstate(invalid="ignore", divide="ignore"):  # rounding can make v - ḡ² < 0: nan, as torch
            if centered:
                grad_avg = grad_avgs[i]
                _lerp_(grad_avg, grad, 1 - alpha)
                avg = np.sqrt(square_avg - grad_avg * grad_avg)
            else:
                avg = np.sqrt(square_avg)
            avg += dt(eps)

            if momentum > 0:
                buf = momentum_buffer_list[i]
                buf *= dt(momentum)
                buf += grad / avg
                param -= dt(lr) * buf
            else:
                param += dt(-lr) * grad / avg
