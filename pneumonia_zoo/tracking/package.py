"""The model package: what a trained classifier is, on disk and in the registry.

A directory holding `model.json` (architecture, preprocessing, class names, threshold, metrics,
file hashes), `weights.safetensors` and, when exported, `model.onnx`. Loading it builds the
network from this installed package's own zoo and reads plain tensors: nothing is unpickled and
no code is taken from the registry. Hashes are checked, so a tampered artifact is refused.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.zoo.registry import create_model, get_architecture

FORMAT_VERSION = 1
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"


class PackageError(UserError):
    """The model package is missing, incomplete, or does not match its recorded hashes."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class PackageConfig:
    architecture: str
    preprocessing: Preprocessing
    threshold: float = 0.5
    threshold_sensitivity_95: float | None = None
    class_names: tuple[str, ...] = CLASS_NAMES
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # pretrained, epochs, run id, ...
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "architecture": self.architecture,
                "preprocessing": self.preprocessing.to_dict(),
                "threshold": self.threshold,
                "threshold_sensitivity_95": self.threshold_sensitivity_95,
                "class_names": list(self.class_names),
                "cam_layer": get_architecture(self.architecture).cam_layer,
                "metrics": self.metrics,
                "info": self.info,
                "files": self.files,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> "PackageConfig":
        values = json.loads(text)
        if values.get("format_version") != FORMAT_VERSION:
            raise PackageError(f"unsupported model package format {values.get('format_version')}")
        return cls(
            architecture=values["architecture"],
            preprocessing=Preprocessing.from_dict(values["preprocessing"]),
            threshold=float(values["threshold"]),
            threshold_sensitivity_95=values.get("threshold_sensitivity_95"),
            class_names=tuple(values["class_names"]),
            metrics=values.get("metrics", {}),
            info=values.get("info", {}),
            files=values.get("files", {}),
        )


def export_onnx(network: nn.Module, image_size: int, path: Path, tolerance: float = 1e-4) -> None:
    """Export with a dynamic batch axis and check ONNX Runtime agrees with PyTorch."""
    import onnxruntime

    network = network.eval().to(memory_format=torch.contiguous_format)
    example = torch.randn(2, 3, image_size, image_size)
    torch.onnx.export(
        network,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamo=True,
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        external_data=False,
        verbose=False,
    )
    check = torch.randn(3, 3, image_size, image_size)
    with torch.no_grad():
        expected = network(check).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"x": check.numpy()})[0]
    error = float(np.abs(actual - expected).max())
    if error > tolerance:
        path.unlink()
        raise PackageError(f"ONNX export differs from PyTorch by {error:.2e} (> {tolerance})")


def save_package(
    network: nn.Module, config: PackageConfig, directory: Path, with_onnx: bool = True
) -> PackageConfig:
    """Write the package; returns the config with file hashes filled in."""
    directory.mkdir(parents=True, exist_ok=True)
    network = network.eval().cpu()
    state = {name: tensor.contiguous() for name, tensor in network.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    files = {WEIGHTS_FILE: sha256_file(directory / WEIGHTS_FILE)}
    if with_onnx:
        export_onnx(network, config.preprocessing.image_size, directory / ONNX_FILE)
        files[ONNX_FILE] = sha256_file(directory / ONNX_FILE)
    config.files = files
    (directory / CONFIG_FILE).write_text(config.to_json())
    return config


@dataclass
class ModelPackage:
    """A loaded, verified model package, ready for inference on one device."""

    config: PackageConfig
    network: nn.Module
    directory: Path

    @property
    def onnx_path(self) -> Path | None:
        path = self.directory / ONNX_FILE
        return path if ONNX_FILE in self.config.files and path.exists() else None

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        return self.config.preprocessing.batch(images)

    @torch.no_grad()
    def predict_proba(self, images: list[Image.Image]) -> np.ndarray:
        """N x 2 class probabilities, in CLASS_NAMES order, with PyTorch."""
        logits = self.network(self.batch(images).contiguous(memory_format=torch.channels_last))
        return logits.softmax(1).numpy()


def load_package(directory: Path) -> ModelPackage:
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise PackageError(f"no {CONFIG_FILE} in {directory}: not a pneumonia-zoo model package")
    config = PackageConfig.from_json(config_path.read_text())
    if WEIGHTS_FILE not in config.files:
        raise PackageError(f"{CONFIG_FILE} records no {WEIGHTS_FILE}")
    for name, expected in config.files.items():
        path = directory / name
        if not path.is_file():
            raise PackageError(f"{name} is missing from the model package")
        if sha256_file(path) != expected:
            raise PackageError(f"{name} does not match its recorded sha256: refusing a tampered model")
    network = create_model(config.architecture, pretrained=False)
    network.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    network.eval().to(memory_format=torch.channels_last)
    return ModelPackage(config, network, directory)
