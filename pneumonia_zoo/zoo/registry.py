"""The zoo: a name -> Architecture registry. Adding an architecture is one entry in ARCHITECTURES.

Every model comes out with a 2-class head (NORMAL, PNEUMONIA) and names its Grad-CAM layer.
"""

from collections.abc import Callable
from dataclasses import dataclass
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from pneumonia_zoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pneumonia_zoo.errors import MissingWeightsError, UserError
from pneumonia_zoo.zoo.efficientnet_lite import efficientnet_lite0
from pneumonia_zoo.zoo.small_cnn import SmallCNN

NUM_CLASSES = 2
FREEZE_MODES = ("none", "backbone")


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[bool], nn.Module]  # pretrained -> network with its original head
    head: str  # dotted path of the final Linear, replaced by a 2-class one
    cam_layer: str  # dotted path of the Grad-CAM target layer
    has_pretrained: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _torchvision(name: str) -> Callable[[bool], nn.Module]:
    def build(pretrained: bool) -> nn.Module:
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

    return build


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("vgg16", _torchvision("vgg16"), "classifier.6", "features.29"),
        Architecture("densenet201", _torchvision("densenet201"), "classifier", "features.norm5"),
        Architecture("alexnet", _torchvision("alexnet"), "classifier.6", "features.11"),
        Architecture("resnet50", _torchvision("resnet50"), "fc", "layer4.2"),
        # The TF-Lite checkpoint expects inputs scaled to [-1, 1], not ImageNet statistics.
        Architecture(
            "efficientnet_lite0",
            efficientnet_lite0,
            "_fc",
            "_head_act",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        ),
        Architecture(
            "small_cnn",
            lambda _pretrained: SmallCNN(NUM_CLASSES),
            "classifier.2",
            "features.3",
            has_pretrained=False,
        ),
    )
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UserError(f"unknown architecture '{name}': choose one of {', '.join(ARCHITECTURES)}") from None


def _replace_head(model: nn.Module, dotted: str) -> None:
    parent_path, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = getattr(parent, child) if not child.isdigit() else parent[int(child)]
    if not isinstance(old, nn.Linear):
        raise TypeError(f"head {dotted} is {type(old).__name__}, expected Linear")
    new = nn.Linear(old.in_features, NUM_CLASSES)
    if child.isdigit():
        parent[int(child)] = new
    else:
        setattr(parent, child, new)


def create_model(name: str, pretrained: bool | None = None, freeze: str = "none") -> nn.Module:
    """Build `name` with a 2-class head. pretrained=None means 'if the architecture has weights'."""
    arch = get_architecture(name)
    if freeze not in FREEZE_MODES:
        raise UserError(f"unknown freeze mode '{freeze}': choose one of {', '.join(FREEZE_MODES)}")
    if pretrained and not arch.has_pretrained:
        raise UserError(f"{name} has no pretrained weights: pass --no-pretrained")
    use_pretrained = arch.has_pretrained if pretrained is None else pretrained
    if freeze == "backbone" and not use_pretrained:
        raise UserError("--freeze backbone needs pretrained weights: a random backbone learns nothing")
    model = arch.build(use_pretrained)
    _replace_head(model, arch.head)
    if freeze == "backbone":
        head = model.get_submodule(arch.head)
        for parameter in model.parameters():
            parameter.requires_grad = False
        for parameter in head.parameters():
            parameter.requires_grad = True
    return model
