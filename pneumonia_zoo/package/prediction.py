"""One prediction as every caller reports it: the API's JSON, `pneumonia-zoo predict --json`, the
pyfunc's columns and the result page all read these keys."""

from dataclasses import dataclass

import numpy as np

from pneumonia_zoo.package.classifier import Scores
from pneumonia_zoo.package.format import PackageConfig

UNCERTAIN_MARGIN = 0.1  # a calibrated probability this close to the threshold is a coin toss, said so
OOD_WARNING = (
    "this image looks unlike the paediatric chest X-rays the model was trained on: "
    "treat the output as unreliable"
)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    architecture: str
    runtime: str

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "runtime": self.runtime,
        }


def prediction_record(
    config: PackageConfig,
    scores: Scores,
    row: int,
    model: ModelInfo,
    operating_point: str | None = None,
    filename: str | None = None,
    latency_ms: float | None = None,
) -> dict:
    point = config.operating_point(operating_point)
    names = config.class_names
    pneumonia = float(scores.probabilities[row, 1])
    score = float(scores.ood_scores[row])
    flagged = bool(scores.ood_flags[row])
    return {
        "label": names[1] if pneumonia >= point.threshold else names[0],
        "probabilities": {
            name: round(float(p), 6) for name, p in zip(names, scores.probabilities[row], strict=True)
        },
        "threshold": point.threshold,
        "operating_point": {"name": point.name, "threshold": point.threshold, "rule": point.rule},
        "uncertain": abs(pneumonia - point.threshold) < UNCERTAIN_MARGIN,
        "out_of_population": {
            "flagged": flagged,
            "score": round(score, 4) if np.isfinite(score) else None,
            "reasons": list(scores.ood_reasons[row]),
            "warning": OOD_WARNING if flagged else None,
        },
        "model": model.to_dict(),
        "latency_ms": None if latency_ms is None else round(latency_ms, 1),
        "filename": filename,
    }
