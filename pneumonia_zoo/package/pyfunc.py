"""MLflow's pyfunc flavour of a model package (MLflow's `loader_module` protocol).

MLflow calls `_load_pyfunc(data_path)` from this installed module: the registry holds only data
(JSON, safetensors, ONNX), never pickled objects or code. This module imports no MLflow.
"""

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from pneumonia_zoo.data.images import decode_image
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.prediction import ModelInfo, prediction_record

IMAGE_COLUMN = "image"
OUTPUT_COLUMNS = ("label", "operating_point", "threshold", "uncertain", "ood_score", "out_of_population")


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):  # MLflow's REST scoring sends binary columns base64-encoded
        return base64.b64decode(value)
    raise TypeError(f"expected image bytes, got {type(value).__name__}")


class PyfuncModel:
    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def predict(self, model_input: pd.DataFrame | list | bytes, params: dict | None = None) -> pd.DataFrame:
        """Image bytes (a DataFrame column `image`, a list, or one value) -> one row per image:
        calibrated probabilities, label at the operating point (`params={"operating_point": ...}`),
        and the out-of-population guard's score and flag."""
        if isinstance(model_input, pd.DataFrame):
            values = list(model_input[IMAGE_COLUMN])
        elif isinstance(model_input, list | tuple | np.ndarray | pd.Series):
            values = list(model_input)
        else:
            values = [model_input]
        size = self.classifier.input_size
        images = [decode_image(_as_bytes(value), min_side=size) for value in values]
        scores = self.classifier.predict(images)
        config = self.classifier.config
        model = ModelInfo("pyfunc", "", config.architecture, self.classifier.runtime)
        point = (params or {}).get("operating_point")
        rows = []
        for row in range(len(images)):
            record = prediction_record(config, scores, row, model, point)
            rows.append(
                record["probabilities"]
                | {
                    "label": record["label"],
                    "operating_point": record["operating_point"]["name"],
                    "threshold": record["threshold"],
                    "uncertain": record["uncertain"],
                    "ood_score": record["out_of_population"]["score"],
                    "out_of_population": record["out_of_population"]["flagged"],
                }
            )
        # Unrounded probabilities: the service and the CLI round to 6 places, the pyfunc need not.
        frame = pd.DataFrame(rows, columns=[*config.class_names, *OUTPUT_COLUMNS])
        frame[list(config.class_names)] = scores.probabilities.astype(np.float64)
        return frame


def _load_pyfunc(data_path: str) -> PyfuncModel:
    return PyfuncModel(load_classifier(Path(data_path)))
