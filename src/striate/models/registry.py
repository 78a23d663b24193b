"""A name -> constructor registry, used by ``striate train --model NAME`` and ``striate summary NAME``."""

from __future__ import annotations

from typing import Callable

__all__ = ["register_model", "get_model", "list_models", "model_config"]

_MODELS: dict[str, Callable] = {}


def register_model(name: str):
    """Decorator: make a constructor available by ``name``."""
    def wrap(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn
    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_model(name: str, **config):
    """Build the registered model ``name`` with keyword ``config`` (e.g. num_classes, in_channels)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _MODELS[name](**config)
    model.model_name = name
    model.model_config = dict(config)
    return model


def model_config(model) -> dict:
    """The name and config a model was built with (what checkpoints record)."""
    return {"name": getattr(model, "model_name", type(model).__name__), "config": getattr(model, "model_config", {})}
