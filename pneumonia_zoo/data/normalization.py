"""Input normalisation constants (plain tuples: importing them costs nothing)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF-Lite style checkpoints (EfficientNet-Lite) expect inputs scaled to [-1, 1].
SIGNED_UNIT_MEAN = (0.5, 0.5, 0.5)
SIGNED_UNIT_STD = (0.5, 0.5, 0.5)
