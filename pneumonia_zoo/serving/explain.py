"""Heatmaps of what drove a prediction, on the package's explained member (an ensemble explains its
strongest member on validation, and says so).

For architectures whose CAM layer feeds only global average pooling and the linear head (EfficientNet-
Lite, ResNet50, the small CNN), Grad-CAM equals the class activation map, computed from the ONNX
export's activations without torch; the others run grad-cam on the PyTorch network. Grad-CAM hooks the
network and needs gradients, so it must never overlap a PyTorch batch on the same network: callers run
every explanation on the single inference thread. Where PyTorch is not installed (the default Docker
image) those others have no heatmap: `heatmap_unavailable` says why (the pages show it), and `heatmap`
raises Unsupported.
"""

import io

import numpy as np
from PIL import Image

from pneumonia_zoo.data.images import DecodedImage
from pneumonia_zoo.errors import Unsupported
from pneumonia_zoo.package.classifier import Classifier, Member
from pneumonia_zoo.package.runtime import torch_available
from pneumonia_zoo.zoo.architectures import get_architecture

DISPLAY_SIZE = 512  # long side of the overlay; the map itself is at the CAM layer's resolution
HEATMAP_WEIGHT = 0.5  # as grad-cam's show_cam_on_image


def display_copy(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    copy = image.convert("RGB")
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    return copy


def jet(values: np.ndarray) -> np.ndarray:
    """OpenCV's JET colour map (what grad-cam draws with) for values in 0..1: H x W -> H x W x 3 in 0..1."""
    values = np.clip(values, 0.0, 1.0)[..., None]
    offsets = np.array([3.0, 2.0, 1.0])  # red, green, blue
    return np.clip(1.5 - np.abs(4.0 * values - offsets), 0.0, 1.0)


def heatmap_unavailable(classifier: Classifier) -> str | None:
    """Why no heatmap can be drawn for this version here (None: it can): its Grad-CAM needs PyTorch."""
    member = classifier.explain_member
    if member.linear_cam or torch_available():
        return None
    return (
        f"Grad-CAM of {member.config.architecture} needs PyTorch, which this installation does not have "
        "(the full image, `docker build --target full`, draws it)"
    )


def warm_up_explainer(classifier: Classifier) -> None:
    """Whatever the first explanation would load, loaded now: the map's weights, or torch and grad-cam."""
    member = classifier.explain_member
    if member.linear_cam:
        _ = member.head_weights
        return
    if heatmap_unavailable(classifier):
        return  # served without heatmaps
    import pytorch_grad_cam  # noqa: F401  (grad-cam and OpenCV take seconds to import)

    _ = member.network


def explained_by(classifier: Classifier) -> str:
    member = classifier.explain_member
    if classifier.config.is_ensemble:
        return f"member {classifier.config.explain_member} ({member.config.architecture}) of the ensemble"
    return member.config.architecture


def _grad_cam(member: Member, decoded: DecodedImage, class_index: int) -> np.ndarray:
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from pneumonia_zoo.zoo.features import LogitsOnly

    network = LogitsOnly(member.network)
    layer = network.get_submodule(f"network.body.{get_architecture(member.config.architecture).cam_layer}")
    inputs = torch.from_numpy(member.preprocessing.batch([decoded]))  # the member's own preprocessing
    with GradCAM(model=network, target_layers=[layer]) as cam:
        return cam(input_tensor=inputs, targets=[ClassifierOutputTarget(class_index)])[0]


def heatmap(classifier: Classifier, decoded: DecodedImage, class_index: int) -> np.ndarray:
    """The map for `class_index`, 0..1, at whatever resolution its method gives."""
    member = classifier.explain_member
    if member.linear_cam:
        return member.class_activation_map(decoded, class_index)
    if reason := heatmap_unavailable(classifier):
        raise Unsupported(f"no heatmap: {reason}")
    return _grad_cam(member, decoded, class_index)


def gradcam_overlay(classifier: Classifier, decoded: DecodedImage, class_index: int) -> Image.Image:
    """The heatmap for `class_index`, laid over the image at display size."""
    display = display_copy(decoded.image)
    # The network saw the image squashed to a square; stretch the map back to the image's shape.
    small = Image.fromarray(np.asarray(heatmap(classifier, decoded, class_index), dtype=np.float32), mode="F")
    heat = np.asarray(small.resize(display.size, Image.Resampling.BILINEAR))
    rgb = np.asarray(display, dtype=np.float32) / 255.0
    blended = HEATMAP_WEIGHT * jet(heat) + (1 - HEATMAP_WEIGHT) * rgb
    blended /= max(float(blended.max()), 1e-6)
    return Image.fromarray(np.uint8(np.round(255 * blended)))


def legend_png(width: int = 256, height: int = 14) -> bytes:
    """The colour scale of the overlay: low on the left, high on the right."""
    ramp = np.tile(np.linspace(0.0, 1.0, width), (height, 1))
    return to_bytes(Image.fromarray(np.uint8(np.round(255 * jet(ramp)))))


def to_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buffer.getvalue()
