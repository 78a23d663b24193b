"""Optimizers and learning-rate schedules with PyTorch's names, defaults and update rules.

>>> opt = striate.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> sched = striate.optim.lr_scheduler.StepLR(opt, step_size=30)
>>> for epoch in range(90):
...     for x, y in loader:
...         opt.zero_grad()
...         loss_fn(model(x), y).backward()
...         opt.step()
...     sched.step()

Each optimizer is a class that keeps per-parameter state plus a pure update function on NumPy
arrays (:func:`striate.optim.sgd.sgd`, :func:`striate.optim.adam.adam`,
:func:`striate.optim.rmsprop.rmsprop`).  ``state_dict()`` has PyTorch's structure with NumPy
arrays; :func:`split_state_dict` / :func:`merge_state_dict` separate the arrays (for safetensors)
from the JSON-able rest.
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from ..nn.utils import clip_grad_norm_, clip_grad_value_, get_total_norm
from .optimizer import Optimizer, merge_state_dict, required, split_state_dict
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler", "clip_grad_norm_",
    "clip_grad_value_", "get_total_norm", "split_state_dict", "merge_state_dict", "required",
]
