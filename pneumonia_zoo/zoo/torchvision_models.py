"""torchvision's VGG16, DenseNet201, AlexNet and ResNet50 through its weights API."""

from urllib.error import URLError

import torch
import torchvision
from torch import nn

from pneumonia_zoo.errors import MissingWeightsError


def _build(name: str, pretrained: bool) -> nn.Module:
    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return torchvision.models.get_model(name, weights=weights)
    except (URLError, OSError, RuntimeError) as exc:
        cache = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
        raise MissingWeightsError(
            f"ImageNet weights for {name} are not cached at {cache} and could not be "
            f"downloaded ({type(exc).__name__}): go online once, copy the file there, "
            "or pass --no-pretrained"
        ) from None


def vgg16(pretrained: bool) -> nn.Module:
    return _build("vgg16", pretrained)


def densenet201(pretrained: bool) -> nn.Module:
    return _build("densenet201", pretrained)


def alexnet(pretrained: bool) -> nn.Module:
    return _build("alexnet", pretrained)


def resnet50(pretrained: bool) -> nn.Module:
    return _build("resnet50", pretrained)
