"""MLflow pyfunc flavor of the model package (MLflow's `loader_module` protocol).

MLflow calls `_load_pyfunc(data_path)` from this installed module: the registry holds only
data (JSON, safetensors, ONNX), never pickled objects or code.
"""

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from pneumonia_zoo.data.images import decode_image
from pneumonia_zoo.tracking.package import ModelPackage, load_package

IMAGE_COLUMN = "image"


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):  # MLflow's REST scoring sends binary columns base64-encoded
        return base64.b64decode(value)
    raise TypeError(f"expected image bytes, got {type(value).__name__}")


class PyfuncModel:
    def __init__(self, package: ModelPackage) -> None:
        self.package = package

    def predict(self, model_input: pd.DataFrame | list | bytes, params: dict | None = None) -> pd.DataFrame:
        """Image bytes (a DataFrame column `image`, a list, or one value) -> probabilities and label."""
        if isinstance(model_input, pd.DataFrame):
            values = list(model_input[IMAGE_COLUMN])
        elif isinstance(model_input, list | tuple | np.ndarray | pd.Series):
            values = list(model_input)
        else:
            values = [model_input]
        images = [decode_image(_as_bytes(value)) for value in values]
        probs = self.package.predict_proba(images)
        names = list(self.package.config.class_names)
        threshold = self.package.config.threshold
        frame = pd.DataFrame(probs.astype(np.float64), columns=names)
        frame["label"] = np.where(probs[:, 1] >= threshold, names[1], names[0])
        return frame


def _load_pyfunc(data_path: str) -> PyfuncModel:
    return PyfuncModel(load_package(Path(data_path)))
