"""Adam and AdamW, as ``torch.optim.Adam`` and ``torch.optim.AdamW``."""

from __future__ import annotations

import numbers

import numpy as np

from .optimizer import Optimizer, _check_number, _lerp_

__all__ = ["Adam", "AdamW", "adam"]


def _check_adam(lr, betas, eps, weight_decay) -> None:
    for name, value in (("learning rate", lr), ("epsilon value", eps), ("weight_decay value", weight_decay)):
        _check_number(name, value)
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    for i, beta in enumerate(betas):
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"beta parameter at index {i} must be a real number, got {beta!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    r"""Adam (Kingma & Ba), PyTorch's formulation.

    At step :math:`t` (counted per parameter, from 1), with gradient :math:`g`::

        g <- -g                                   if maximize
        θ <- θ (1 - lr * weight_decay)            if decoupled_weight_decay (AdamW), else
        g <- g + weight_decay * θ                 (L2 penalty, coupled)
        m <- β1 m + (1 - β1) g                    (computed as lerp(m, g, 1 - β1))
        v <- β2 v + (1 - β2) g²
        v̂ <- max(v̂, v)                            if amsgrad (v̂ is used below instead of v)
        θ <- θ - lr / (1 - β1^t) * m / (sqrt(v) / sqrt(1 - β2^t) + eps)

    Args:
        params: iterable of Tensors or of dicts defining parameter groups.
        lr (float): learning rate (default: 1e-3).
        betas (tuple[float, float]): decay rates of the first and second moments, each in
            [0, 1) (default: (0.9, 0.999)).
        eps (float): added to the denominator (default: 1e-8).
        weight_decay (float): weight decay (default: 0).
        amsgrad (bool): use the running maximum of the second moment (default: False).
        maximize (bool): maximize the objective (default: False).
        decoupled_weight_decay (bool): AdamW-style decay of the weights instead of an L2 term in
            the gradient (default: False).

    State per parameter: ``step`` (float), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
    ``max_exp_avg_sq`` (arrays shaped like the parameter).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False):
        _check_adam(lr, betas, eps, weight_decay)
        if differentiable or fused or capturable:
            raise ValueError(
                "striate optimizers support none of differentiable=True, fused=True, capturable=True"
            )
        defaults = dict(lr=lr, betas=tuple(float(b) for b in betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _validate_group(self, group) -> None:
        _check_adam(group["lr"], group["betas"], group["eps"], group["weight_decay"])
        group["betas"] = tuple(group["betas"])

    def _step_group(self, group) -> None:
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], [], []
        with_params = [p for p in group["params"] if p.grad is not None]
        for p in with_params:
            params.append(p.data)
            grads.append(self._grad_array(p))
            state = self.state[p]
            if len(state) == 0:  # lazy initialization
                state["step"] = 0.0
                state["exp_avg"] = np.zeros_like(p.data)
                state["exp_avg_sq"] = np.zeros_like(p.data)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state.setdefault("max_exp_avg_sq", np.zeros_like(p.data)))
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, amsgrad=group["amsgrad"],
             beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
             eps=group["eps"], maximize=group["maximize"],
             decoupled_weight_decay=group["decoupled_weight_decay"])
        for p, step in zip(with_params, steps):
            self.state[p]["step"] = step


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``θ <- θ (1 - lr * weight_decay)``
    before the Adam update, as ``torch.optim.AdamW``.  Same arguments as :class:`Adam` except
    ``weight_decay`` defaults to 1e-2; ``decoupled_weight_decay`` is always True.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def adam(params: list[np.ndarray], grads: list[np.ndarray], exp_avgs: list[np.ndarray],
         exp_avg_sqs: list[np.ndarray], max_exp_avg_sqs: list[np.ndarray], state_steps: list[float],
         *, amsgrad: bool, beta1: float, beta2: float, lr: float, weight_decay: float, eps: float,
         maximize: bool, decoupled_weight_decay: bool = False) -> None:
    """The Adam/AdamW update on arrays.

    Changes ``params[i]``, ``exp_avgs[i]``, ``exp_avg_sqs[i]`` (and ``max_exp_avg_sqs[i]`` with
    amsgrad) in place and increments ``state_steps[i]`` (a float, replaced in the list).
    Array arithmetic happens in the parameter's dtype; the bias corrections are computed in
    Python floats and cast, as PyTorch does.
    """
    for i, param in enumerate(params):
        dt = param.dtype.type
        grad = -grads[i] if maximize else grads[i]
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        state_steps[i] += 1
        step = state_steps[i]

        if weight_decay != 0:
            if decoupled_weight_decay:
                param *= dt(1 - lr * weight_decay)
            else:
                grad = grad + dt(weight_decay) * param

        _lerp_(exp_avg, grad, 1 - beta1)
        exp_avg_sq *= dt(beta2)
        exp_avg_sq += dt(1 - beta2) * grad * grad

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5

        if amsgrad:
            np.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
            denom = np.sqrt(max_exp_avg_sqs[i]) / dt(bias_correction2_sqrt)
        else:
            denom = np.sqrt(exp_avg_sq) / dt(bias_correction2_sqrt)
        denom += dt(eps)
        with np.errstate(divide="ignore", invalid="ignore"):  # eps=0 and v=0 give nan, as in torch
            param += dt(-step_size) * exp_avg / denom
