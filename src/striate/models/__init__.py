"""Model zoo: constructors and a name registry (``get_model``, ``list_models``)."""

from .lenet import LeNet5, lenet5
from .alexnet import AlexNet, alexnet
from .vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn
from .resnet import (BasicBlock, Bottleneck, CifarResNet, ResNet, resnet18, resnet20, resnet32, resnet34, resnet44,
                     resnet50, resnet56, resnet101, resnet110, resnet152)
from .densenet import DenseNet, densenet40, densenet121, densenet_bc40, densenet_bc100
from .registry import get_model, list_models, model_config, register_model
from .unet import UNet, unet
from .fcn import FCN, fcn
from .localizer import Localizer, localizer, split_outputs
from .scanning import (DistributedScanningMLP, FullyConvolutional, ScanningMLP, scan, scan_windows,
                       scanning_mlp_to_cnn, to_fully_convolutional)

__all__ = [
    "LeNet5", "lenet5", "get_model", "list_models", "model_config", "register_model",
    "AlexNet", "alexnet", "VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "CifarResNet", "ResNet", "BasicBlock", "Bottleneck", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "DenseNet", "densenet40", "densenet_bc100", "densenet_bc40", "densenet121",
    "UNet", "unet", "FCN", "fcn", "Localizer", "localizer", "split_outputs",
    "ScanningMLP", "DistributedScanningMLP", "FullyConvolutional", "scanning_mlp_to_cnn", "to_fully_convolutional",
    "scan", "scan_windows",
]
