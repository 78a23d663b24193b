"""Dense and multi-task problems on top of the classification machinery.

* :mod:`striate.tasks.segment` -- per-pixel classes (``striate train --task segment``,
  ``striate segment RUN IMAGE``).
* :mod:`striate.tasks.localize` -- class + bounding box (``striate train --task localize``,
  ``striate localize RUN IMAGE``).
* :mod:`striate.tasks.scan` -- a trained classifier scanned over a larger image as a fully
  convolutional network (``striate scan RUN IMAGE``).
* :mod:`striate.tasks.losses` and :mod:`striate.tasks.metrics` -- Dice and multi-task losses;
  pixel accuracy, IoU, mIoU, box IoU.

``striate.cli`` imports ``striate.tasks.<task>`` and calls its ``cli_train(args)``.
"""

from .losses import LocalizationLoss, SegmentationLoss, dice_loss, localization_loss, one_hot
from .metrics import box_iou, iou_per_class, mean_iou, pixel_accuracy, pixel_confusion, segmentation_scores

__all__ = ["dice_loss", "one_hot", "SegmentationLoss", "LocalizationLoss", "localization_loss",
           "pixel_confusion", "pixel_accuracy", "iou_per_class", "mean_iou", "segmentation_scores", "box_iou"]
