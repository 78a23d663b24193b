"""Training: the fit/evaluate loop, metrics, callbacks, crash-safe checkpoints and whole CLI runs."""

from .checkpoint import (
    ArchitectureMismatchError,
    CheckpointError,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .loop import Callback, EarlyStopping, ModelCheckpoint, Trainer, TrainingDiverged, evaluate, predict
from .metrics import accuracy, confusion_matrix, per_class_accuracy, topk_accuracy

__all__ = [
    "save_checkpoint", "load_checkpoint", "has_checkpoint", "CheckpointError", "ArchitectureMismatchError",
    "Trainer", "TrainingDiverged", "Callback", "EarlyStopping", "ModelCheckpoint", "evaluate", "predict",
    "accuracy", "topk_accuracy", "confusion_matrix", "per_class_accuracy",
]
