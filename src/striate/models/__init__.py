"""Model zoo: constructors and a name registry (``get_model``, ``list_models``)."""

from .lenet import LeNet5, lenet5
from .registry import get_model, list_models, model_config, register_model

__all__ = ["LeNet5", "lenet5", "get_model", "list_models", "model_config", "register_model"]
