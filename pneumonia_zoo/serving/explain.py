"""Grad-CAM overlays with the grad-cam package, on the PyTorch network of the package's explained
member (an ensemble explains its strongest member on validation, and says so).

Grad-CAM hooks the network and needs gradients, so it must never run while the same network serves a
PyTorch batch: callers run it on the single inference thread.
"""

import io

import numpy as np
from PIL import Image

from pneumonia_zoo.data.images import DecodedImage
from pneumonia_zoo.package.classifier import Classifier
from pneumonia_zoo.zoo.architectures import get_architecture

DISPLAY_SIZE = 512  # long side of the overlay; the CAM itself is at the network's input size


def display_copy(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    copy = image.convert("RGB")
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    return copy


def warm_up_explainer(classifier: Classifier) -> None:
    """Build the explained member's torch network and import grad-cam now, not on the first /explain."""
    import pytorch_grad_cam  # noqa: F401  (grad-cam and OpenCV take seconds to import)

    _ = classifier.explain_member.network


def explained_by(classifier: Classifier) -> str:
    member = classifier.explain_member
    if classifier.config.is_ensemble:
        return f"member {classifier.config.explain_member} ({member.config.architecture}) of the ensemble"
    return member.config.architecture


def gradcam_overlay(classifier: Classifier, decoded: DecodedImage, class_index: int) -> Image.Image:
    """The heatmap for `class_index`, laid over the image at display size."""
    import cv2
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from pneumonia_zoo.package.network import LogitsOnly

    member = classifier.explain_member
    network = LogitsOnly(member.network)
    layer = network.get_submodule(f"network.body.{get_architecture(member.config.architecture).cam_layer}")
    inputs = torch.from_numpy(member.preprocessing.batch([decoded]))  # the member's own preprocessing
    with GradCAM(model=network, target_layers=[layer]) as cam:
        heat = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(class_index)])[0]
    display = display_copy(decoded.image)
    # The network saw the image squashed to a square; stretch the map back to the image's shape.
    heat = cv2.resize(heat.astype(np.float32), display.size, interpolation=cv2.INTER_LINEAR)
    rgb = np.asarray(display, dtype=np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(rgb, np.clip(heat, 0, 1), use_rgb=True))


def legend_png(width: int = 256, height: int = 14) -> bytes:
    """The colour scale of the overlay (OpenCV's JET, as grad-cam draws it): low on the left."""
    import cv2

    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    colours = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return to_bytes(Image.fromarray(colours))


def to_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buffer.getvalue()
