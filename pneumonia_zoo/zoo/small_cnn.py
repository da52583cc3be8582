"""A small from-scratch CNN, like the baselines in published notebooks on this dataset."""

from torch import nn


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 2, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        channels = (3, *widths)
        self.features = nn.Sequential(*(_block(a, b) for a, b in zip(channels, channels[1:], strict=False)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(widths[-1], num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


def small_cnn(_pretrained: bool) -> SmallCNN:
    return SmallCNN()
