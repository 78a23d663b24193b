"""Synchronised batch normalisation: batch statistics over the shards of all ranks.

Ordinary batch norm on ``N`` ranks normalises each shard by its own mean and variance, so the
result depends on the number of ranks.  :class:`SyncBatchNorm` computes, per channel, the
statistics of the *global* batch, with ``M = sum_r M_r`` values over all ranks::

    mean   = (sum_r sum_{shard r} x) / M                       allreduce 1: C sums and M
    var    = (sum_r sum_{shard r} (x - mean)^2) / M            allreduce 2: C sums (two passes, as
                                                               the single-process kernel does)
    xhat   = (x - mean) / sqrt(var + eps),   y = gamma * xhat + beta

and the backward needs the two global channel sums of the closed form (``dxhat = gamma * dy``)::

    dx = gamma * inv_std * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)   allreduce 3: 2C sums

``dgamma = sum(dy * xhat)`` and ``dbeta = sum(dy)`` are returned as this rank's partial sums: the
gradient reducer sums parameter gradients over the ranks afterwards.  The running statistics are
updated with the global mean and the unbiased global variance ``var * M / (M - 1)``, identically on
every rank.  With the backward seeded by each rank's share of the batch (see
:mod:`striate.distributed.reducer`), forward and backward equal batch norm on the combined batch.
In eval mode the running statistics are used and nothing is communicated.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..autograd import Function, Tensor
from ..kernels import norm as K
from ..kernels.shapes import ShapeError, fmt_shape
from ..nn.module import Module
from ..nn.norm import _BatchNorm

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm", "sync_batch_norm"]


def _ncl(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], -1)


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class _SyncBatchNorm(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, *, running_mean, running_var, momentum, eps, world):
        C = x.shape[1] if x.ndim >= 2 else 0
        dummy = np.zeros(C, dtype=x.dtype) if running_mean is None else None
        # shapes, dtypes, momentum and eps; the per-channel count is checked globally below
        K.check_batch_norm_args(x, running_mean if dummy is None else dummy, running_var if dummy is None else dummy,
                                weight, bias, False, momentum, eps)
        ndim = x.ndim
        stats = np.empty(C + 1, dtype=np.float64)
        stats[:C] = np.einsum("ncl->c", _ncl(x))
        stats[C] = x.size // C if C else 0
        world.allreduce_(stats)
        count = int(round(stats[C]))
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {count} over all ranks "
                             f"(local input {fmt_shape(x.shape)})")
        mean = (stats[:C] / count).astype(x.dtype)
        xhat = x - _per_channel(mean, ndim)
        sq = np.ascontiguousarray(np.einsum("ncl,ncl->c", _ncl(xhat), _ncl(xhat)))
        world.allreduce_(sq)
        var = sq / x.dtype.type(count)
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))
        xhat *= _per_channel(inv_std, ndim)
        if weight is not None:
            y = xhat * _per_channel(weight, ndim)
            if bias is not None:
                y += _per_channel(bias, ndim)
        elif bias is not None:
            y = xhat + _per_channel(bias, ndim)
        else:
            y = xhat.copy()
        cache = K.BatchNormCache(True, xhat, mean, var, inv_std, weight, bias is not None, count)
        if running_mean is not None:
            K.batch_norm_update_running_stats(running_mean, running_var, cache, momentum)
        ctx.cache, ctx.world = cache, world
        return y

    @staticmethod
    def backward(ctx, dy):
        cache, world = ctx.cache, ctx.world
        need = ctx.needs_input_grad
        ndim, C = dy.ndim, dy.shape[1]
        xhat, M = cache.saved, cache.count
        local = np.empty(2 * C, dtype=dy.dtype)
        local[:C] = np.einsum("ncl->c", _ncl(dy))
        local[C:] = np.einsum("ncl,ncl->c", _ncl(dy), _ncl(xhat))
        sums = world.allreduce_(local.copy())
        sum_dy, sum_dy_xhat = sums[:C], sums[C:]
        w = cache.weight
        k = cache.inv_std if w is None else w * cache.inv_std
        dx = None
        if need[0]:
            dx = dy * _per_channel(k, ndim)
            dx -= xhat * _per_channel(k * (sum_dy_xhat / M), ndim)
            dx -= _per_channel(k * (sum_dy / M), ndim)
        dw = local[C:].copy() if (need[1] and w is not None) else None
        db = local[:C].copy() if (need[2] and cache.has_bias) else None
        return dx, dw, db


def sync_batch_norm(input, running_mean, running_var, weight, bias, momentum: float, eps: float, world):
    """Training-mode batch norm with statistics over all ranks of ``world`` (see the module docstring).

    Every rank must call it the same number of times in the same order (it communicates).
    ``running_mean``/``running_var`` (Tensors or arrays of shape (C,), or None) are updated in place.
    """
    rm = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    rv = running_var.data if isinstance(running_var, Tensor) else running_var
    x = input if isinstance(input, Tensor) else Tensor._wrap(np.asarray(input))
    return _SyncBatchNorm.apply(x, weight, bias, running_mean=rm, running_var=rv, momentum=momentum, eps=eps,
                                world=world)


class SyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics cover the whole data-parallel batch (PyTorch's name).

    Same parameters, buffers and ``state_dict`` keys as ``BatchNorm1d``/``BatchNorm2d`` (so
    checkpoints are interchangeable); accepts (N, C), (N, C, L), (N, C, H, W) and (N, C, D, H, W).
    ``world`` is a :class:`~striate.distributed.World`; without one (or with one rank) it is
    plain batch norm.  Build it directly or with :func:`convert_sync_batchnorm`.
    """

    _ranks = (2, 3, 4, 5)
    _layout = "(N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, world=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        object.__setattr__(self, "world", world)

    def forward(self, input):
        if not self.training or self.world is None or self.world.size == 1:
            return super().forward(input)
        x = input.data if isinstance(input, Tensor) else np.asarray(input)
        if x.ndim not in self._ranks:
            raise ShapeError(f"SyncBatchNorm expects {self._layout} input, got shape {fmt_shape(x.shape)}")
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked.data)
        return sync_batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                               momentum, self.eps, self.world)

    @classmethod
    def from_batchnorm(cls, bn: _BatchNorm, world) -> "SyncBatchNorm":
        """A SyncBatchNorm sharing ``bn``'s Parameter and buffer objects (optimizers keep working)."""
        new = cls.__new__(cls)
        Module.__init__(new)
        for name in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
            object.__setattr__(new, name, getattr(bn, name))
        object.__setattr__(new, "_parameters", OrderedDict(bn._parameters))
        object.__setattr__(new, "_buffers", OrderedDict(bn._buffers))
        object.__setattr__(new, "_non_persistent", set(bn._non_persistent))
        object.__setattr__(new, "training", bn.training)
        object.__setattr__(new, "world", world)
        return new


def convert_sync_batchnorm(module: Module, world) -> Module:
    """Replace every batch-norm layer under ``module`` by a :class:`SyncBatchNorm` over ``world``.

    Parameters and buffers are shared, not copied, so an optimizer built before the conversion
    still updates them.  Returns ``module`` (or the replacement when ``module`` itself is one).
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        return SyncBatchNorm.from_batchnorm(module, world)
    if isinstance(module, SyncBatchNorm):
        object.__setattr__(module, "world", world)
        return module
    for name, child in list(module._modules.items()):
        if child is not None:
            module._modules[name] = convert_sync_batchnorm(child, world)
    return module
