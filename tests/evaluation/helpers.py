"""Predictions built by hand, for the evaluation layer's tests."""

import numpy as np

from pneumonia_zoo.evaluation.predict import Predictions


def predictions(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: np.ndarray | None = None,
    flags: np.ndarray | None = None,
    **attributes: list[str],
) -> Predictions:
    labels = np.asarray(labels).astype(int)
    count = len(labels)
    return Predictions(
        labels=labels,
        probs=np.asarray(probs, dtype=np.float64),
        groups=np.asarray(groups if groups is not None else [f"p{i}" for i in range(count)]),
        ood_flags=np.asarray(flags if flags is not None else np.zeros(count, bool)),
        ood_scores=np.zeros(count),
        files=[f"image{i}.png" for i in range(count)],
        attributes={k: np.array(v, dtype=object) for k, v in attributes.items()},
    )
