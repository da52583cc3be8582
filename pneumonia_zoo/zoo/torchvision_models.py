"""torchvision's VGG16, DenseNet201, AlexNet and ResNet50 through its weights API.

Pretrained weights are torchvision's default ImageNet checkpoints, read from `$TORCH_HOME/hub/checkpoints/`
under torchvision's own file names (downloaded there once when online) and loaded strictly: every key and
shape must match.
"""

import pickle
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from pneumonia_zoo.errors import MissingWeightsError


def checkpoint_path(name: str) -> Path:
    """Where torchvision caches `name`'s default ImageNet checkpoint (the file name comes from its URL)."""
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def weights_available(name: str) -> bool:
    """Whether `name`'s ImageNet checkpoint is cached (so loading it needs no network)."""
    return checkpoint_path(name).is_file()


def _build(name: str, pretrained: bool) -> nn.Module:
    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    cache = checkpoint_path(name)
    was_cached = cache.is_file()
    try:
        return torchvision.models.get_model(name, weights=torchvision.models.get_model_weights(name).DEFAULT)
    except (URLError, OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        if was_cached:  # a wrong, truncated or foreign file under torchvision's name: say so, not "download"
            reason = " ".join(str(exc).split()) or type(exc).__name__  # load_state_dict's lines, as one
            raise MissingWeightsError(
                f"the cached ImageNet checkpoint {cache} does not load into torchvision's {name} "
                f"({reason[:300]}): delete it and download it again, or pass --no-pretrained"
            ) from None
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
