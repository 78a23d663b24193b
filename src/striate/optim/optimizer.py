"""``Optimizer``: parameter groups, per-parameter state, and the checkpointable ``state_dict``.

The structure follows ``torch.optim.Optimizer`` so code and checkpoints carry over:

* ``param_groups`` is a list of dicts; each holds ``'params'`` (a list of Tensors) and every
  hyperparameter of the algorithm (missing ones are filled from ``defaults``).
* ``state`` maps a parameter (the Tensor object itself) to a dict of its buffers, created lazily
  on the first ``step`` in which the parameter has a gradient.
* Each algorithm is a class that gathers ``(param, grad, buffers)`` per group and a pure update
  function on NumPy arrays (``sgd``, ``adam``, ``rmsprop``) that changes ``param.data`` in place.

State dict layout (PyTorch's)::

    {
        "state": {0: {"step": 3.0, "exp_avg": ndarray, "exp_avg_sq": ndarray}, 1: {...}},
        "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), ..., "params": [0, 1]}],
    }

Parameters are numbered in the order they appear across the groups; ``state`` is keyed by that
integer and only holds parameters that have been stepped.  Every buffer is a NumPy array and every
other value is a Python scalar, bool, string, tuple or list, so :func:`split_state_dict` can put the
arrays in a safetensors file and the rest in JSON, and :func:`merge_state_dict` puts them back.
Unlike PyTorch, ``state_dict()`` returns copies of the buffers and ``load_state_dict()`` copies
them in, so a saved dict never changes as training goes on and two optimizers never share buffers.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections import defaultdict
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np

from .. import backend
from ..autograd import Tensor, enable_grad, no_grad

__all__ = ["Optimizer", "required", "split_state_dict", "merge_state_dict"]


class _RequiredParameter:
    """Singleton marking a hyperparameter that every param group must give (no default)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _check_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if math.isnan(value):
        raise ValueError(f"Invalid {name}: {value}")


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or backend.device_of(v) != "cpu"


def _host_copy(v) -> np.ndarray:
    h = backend.to_numpy(v)
    return h.copy() if h is v else h


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """``start <- start + weight * (end - start)`` in place, in ``start``'s dtype.

    Evaluated as PyTorch's ``lerp_`` does: from ``end`` when ``|weight| >= 0.5``, which keeps
    ``weight = 1`` exact.
    """
    dt = start.dtype.type
    w = dt(weight)
    if abs(w) < 0.5:
        start += w * (end - start)
    else:
        start[...] = end - (end - start) * (dt(1) - w)


def _describe(p) -> str:
    return f"{type(p).__name__} of shape {tuple(p.shape)}" if hasattr(p, "shape") else type(p).__name__


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, of ``(name, Tensor)`` pairs, or of dicts defining
            parameter groups (each with a ``'params'`` entry and optional per-group hyperparameters).
        defaults: the default value of every hyperparameter, used for groups that do not set it.

    Subclasses implement :meth:`_step_group`, which updates the parameters of one group that have
    a gradient; :meth:`step` handles the closure and calls it for every group.
    """

    def __init__(self, params, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got {_describe(params)}"
            )
        if isinstance(params, dict):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                "but got a dict; wrap a single parameter group in a list: [group]"
            )
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []

        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Append a parameter group, filling hyperparameters it does not set from ``defaults``.

        Raises TypeError for a non-dict group, a set of params (unordered) or a non-Tensor param;
        ValueError for a non-leaf Tensor, a missing required hyperparameter, or a parameter that
        is already in another group.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        param_group = dict(param_group)  # never mutate the caller's dict
        params = param_group.get("params")
        if params is None:
            raise ValueError("a parameter group needs a 'params' entry")
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the ordering "
                "of tensors in sets will change between runs. Please use a list instead."
            )
        else:
            params = list(params)

        tensors, names = [], []
        for p in params:
            if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
                names.append(p[0])
                tensors.append(p[1])
            else:
                tensors.append(p)
        if names:
            if len(names) != len(tensors):
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are missing"
                )
            param_group["param_names"] = names
        param_group["params"] = tensors

        for i, p in enumerate(tensors):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"optimizer can only optimize Tensors, but one of the params (index {i}) is "
                    f"{_describe(p)}"
                )
            if not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"optimizer can only optimize floating-point Tensors, got dtype {p.dtype}")
            if not (p.is_leaf or getattr(p, "_retain_grad", False)):
                raise ValueError(f"can't optimize a non-leaf Tensor (index {i}, shape {tuple(p.shape)})")

        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(
                    f"parameter group didn't specify a value of required optimization parameter {name}"
                )
            param_group.setdefault(name, default)
        self._validate_group(param_group)

        ids = [id(p) for p in tensors]
        if len(ids) != len(set(ids)):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; "
                "in future, this will cause an error",
                stacklevel=3,
            )
        for group in self.param_groups:
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {which} to the optimizer"
                )
        seen = {id(p): gi for gi, group in enumerate(self.param_groups) for p in group["params"]}
        for i, p in enumerate(tensors):
            if id(p) in seen:
                raise ValueError(
                    "some parameters appear in more than one parameter group: parameter "
                    f"{i} of the new group (shape {tuple(p.shape)}) is already in group {seen[id(p)]}"
                )
        self.param_groups.append(param_group)

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check a group's hyperparameters (subclasses; the constructor checks the defaults)."""

    # ------------------------------------------------------------------ stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized Tensors: to None (default) or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.data[...] = 0

    def step(self, closure: Callable[[], Any] | None = None):
        """Perform one optimization step; return ``closure()`` (evaluated with grad enabled) or None."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _grad_array(p: Tensor) -> np.ndarray:
        """``p.grad`` as an array of ``p``'s dtype and shape (a mismatched shape is an error)."""
        g = p.grad.data if isinstance(p.grad, Tensor) else np.asarray(p.grad)
        if g.shape != p.shape:
            raise RuntimeError(f"gradient has shape {g.shape} but the parameter has shape {p.shape}")
        return g if g.dtype == p.dtype else g.astype(p.dtype)

    # ------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, Any]:
        """The optimizer state: ``{'state': {index: {...}}, 'param_groups': [{..., 'params': [index]}]}``.

        Buffers are copied NumPy arrays (host copies for a model on a device); ``step`` counts are
        Python floats (as PyTorch's value).
        """
        param_mappings: dict[int, int] = {}
        start_index = 0

        def pack_group(group):
            nonlocal start_index
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start_index):
                param_mappings.setdefault(id(p), i)
            packed["params"] = [param_mappings[id(p)] for p in group["params"]]
            start_index += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {}
        for p, s in self.state.items():
            key = param_mappings.get(id(p), p) if isinstance(p, Tensor) else p
            packed_state[key] = {k: (_host_copy(v) if _is_array(v) else copy.deepcopy(v)) for k, v in s.items()}
        return {"state": packed_state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state produced by :meth:`state_dict` (or by :func:`merge_state_dict`).

        Groups are matched in order and parameters by position, as in PyTorch; the saved
        hyperparameters replace the current ones.  Buffers are copied and cast to the dtype of
        the parameter they belong to; ``step`` stays a float.  Integer keys given as strings (as
        after a JSON round trip) are accepted, and lists are turned back into tuples where the
        optimizer's default is a tuple (``betas``).
        """
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(
                "loaded state dict has a different number of parameter groups "
                f"({len(saved_groups)}) than the optimizer ({len(groups)})"
            )
        for gi, (g, s) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size of "
                    f"optimizer's group: group {gi} has {len(s['params'])} saved parameters, "
                    f"the optimizer has {len(g['params'])}"
                )
        id_map = dict(
            zip(
                (int(i) for i in chain.from_iterable(g["params"] for g in saved_groups)),
                chain.from_iterable(g["params"] for g in groups),
            )
        )

        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            key = int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k
            if key not in id_map:
                state[key] = copy.deepcopy(v)
                continue
            param = id_map[key]
            entry = {}
            for name, value in v.items():
                entry[name] = self._cast_state_value(param, name, value)
            state[param] = entry

        new_groups = []
        for g, saved in zip(groups, saved_groups):
            saved["params"] = g["params"]
            if "param_names" in g and "param_names" not in saved:
                saved["param_names"] = g["param_names"]
            for name, default in self.defaults.items():
                if isinstance(default, tuple) and isinstance(saved.get(name), list):
                    saved[name] = tuple(saved[name])
            new_groups.append(saved)
        self.state = state
        self.param_groups = new_groups

    @staticmethod
    def _cast_state_value(param: Tensor, name: str, value):
        if name == "step":
            return float(np.asarray(value).item()) if not isinstance(value, (int, float)) else float(value)
        if _is_array(value) or (hasattr(value, "__array__") and not np.isscalar(value)):
            arr = np.array(backend.to_numpy(value), copy=True)
            if arr.shape != param.shape:
                raise ValueError(
                    f"state '{name}' has shape {arr.shape} but its parameter has shape {param.shape}"
                )
            arr = arr.astype(param.dtype, copy=False) if np.issubdtype(arr.dtype, np.floating) else arr
            return backend.to_device(arr, param.device)  # the state lives where its parameter does
        return copy.deepcopy(value)

    def __getstate__(self) -> dict[str, Any]:
        # what pickle/deepcopy keep: not the step wrapper a scheduler may have installed
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group.keys()):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


# ---------------------------------------------------------------------- checkpoint helpers
def _to_json(value):
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def split_state_dict(state_dict: dict[str, Any], prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into ``(arrays, meta)``.

    ``arrays`` maps ``f"{prefix}state.{index}.{name}"`` to each NumPy buffer (ready for a
    safetensors file); ``meta`` is the rest as plain JSON types (``{'state': {'0': {'step': 3.0}},
    'param_groups': [...]}`` with tuples as lists).  :func:`merge_state_dict` inverts it.
    """
    arrays: dict[str, np.ndarray] = {}
    meta_state: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        scalars = {}
        for name, value in entry.items():
            if isinstance(value, np.ndarray):
                arrays[f"{prefix}state.{index}.{name}"] = value
            else:
                scalars[name] = _to_json(value)
        meta_state[str(index)] = scalars
    meta = {"state": meta_state, "param_groups": _to_json(state_dict["param_groups"])}
    return arrays, meta


def merge_state_dict(arrays: dict[str, np.ndarray], meta: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Rebuild the ``state_dict`` that :func:`split_state_dict` split (integer state keys)."""
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in meta["state"].items()}
    head = f"{prefix}state."
    for key, value in arrays.items():
        if not key.startswith(head):
            continue
        index, _, name = key[len(head):].partition(".")
        state.setdefault(int(index), {})[name] = np.asarray(value)
    return {"state": state, "param_groups": copy.deepcopy(meta["param_groups"])}
