"""Grad-CAM overlays with the grad-cam package, on the package's PyTorch network.

Grad-CAM hooks the network and needs gradients, so it must never run while the same network
serves a PyTorch batch: callers run it on the single inference thread.
"""

import io

import numpy as np
from PIL import Image

from pneumonia_zoo.tracking.package import ModelPackage
from pneumonia_zoo.zoo.registry import get_architecture

DISPLAY_SIZE = 512  # long side of the overlay; the CAM itself is at the network's input size


def display_copy(image: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    copy = image.convert("RGB")
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    return copy


def gradcam_overlay(package: ModelPackage, image: Image.Image, class_index: int) -> Image.Image:
    """The heatmap for `class_index`, laid over the image at display size."""
    # Imported on first use: grad-cam and OpenCV add about 2.5 s to the service's cold start.
    import cv2
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = package.network.get_submodule(get_architecture(package.config.architecture).cam_layer)
    inputs = package.batch([image])  # the training preprocessing, from the package
    with GradCAM(model=package.network, target_layers=[layer]) as cam:
        heat = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(class_index)])[0]
    display = display_copy(image)
    # The network saw the image squashed to a square; stretch the map back to the image's shape.
    heat = cv2.resize(heat.astype(np.float32), display.size, interpolation=cv2.INTER_LINEAR)
    rgb = np.asarray(display, dtype=np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(rgb, np.clip(heat, 0, 1), use_rgb=True))


def to_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buffer.getvalue()
