"""`pneumonia-zoo ensemble`: several registered versions as one new version.

The ensemble averages its members' calibrated probabilities (each member keeps its own preprocessing
and temperature), gets its own operating points and guard threshold chosen on the members' common
validation split, and is evaluated, logged and registered like a trained version. Members must share
the validation split (seed, fraction, subsample): otherwise one member's validation images would be
another's training images, and every validation number would be optimistic.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from pneumonia_zoo.data.cache import decode_all
from pneumonia_zoo.data.pipeline import PreparedData, split_samples
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.evaluation.predict import predict_images
from pneumonia_zoo.evaluation.report import evaluate
from pneumonia_zoo.evaluation.robustness import robustness_metrics
from pneumonia_zoo.package.build import write_ensemble
from pneumonia_zoo.package.choices import TTA_VIEWS
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.format import GuardConfig, PackageInfo
from pneumonia_zoo.package.io import record_files
from pneumonia_zoo.stats.operating_points import choose_operating_points
from pneumonia_zoo.tracking.cards import log_model_card
from pneumonia_zoo.tracking.publish import publish
from pneumonia_zoo.tracking.records import VersionRecord
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.workflows.train import log_evaluations, reference_of

SPLIT_KEYS = ("seed", "val_fraction", "val_split", "limit")


@dataclass
class EnsembleOutcome:
    run_id: str
    version: str | None
    metrics: dict[str, float]


def _common_split(members: list[tuple[VersionRecord, Classifier]]) -> dict[str, Any]:
    splits = {key: {getattr(c.config.info, key) for _, c in members} for key in SPLIT_KEYS}
    differing = [key for key, values in splits.items() if len(values) > 1]
    if differing:
        raise UserError(
            "the members were trained on different validation splits (" + ", ".join(differing) + " differ): "
            "an ensemble's validation numbers would include images some members trained on"
        )
    return {key: next(iter(values)) for key, values in splits.items()}


def build_ensemble(
    store: Store,
    member_uris: list[str],
    data: Path,
    tta: list[str] | None = None,
    bootstrap: int = 1000,
    register: bool = True,
    run_name: str | None = None,
    quiet: bool = False,
    flag_rate: float = 0.02,
) -> EnsembleOutcome:
    if len(member_uris) < 2:
        raise UserError("an ensemble needs at least two --member versions")
    tta = list(tta or [])
    unknown = [view for view in tta if view not in TTA_VIEWS]
    if unknown:
        raise UserError(f"unknown test-time view '{unknown[0]}': choose from {', '.join(TTA_VIEWS)}")
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-ensemble-") as tmp:
        members = [
            store.load(uri, destination=Path(tmp) / f"download{i}") for i, uri in enumerate(member_uris)
        ]
        for resolved, classifier in members:
            if classifier.config.is_ensemble:
                raise UserError(f"{resolved.uri} is itself an ensemble: give its members instead")
        split = _common_split(members)
        train, val, test = split_samples(
            data, split["val_fraction"], split["seed"], split["limit"], split["val_split"]
        )
        size = max(c.input_size for _, c in members)
        prepared = PreparedData(
            train=decode_all(train[:0], Preprocessing(size), quiet=True),
            val=decode_all(val, Preprocessing(size), "decode val", quiet),
            test=decode_all(test, Preprocessing(size), "decode test", quiet) if test else None,
        )
        strongest = int(np.argmax([c.config.metrics.get("val_auc", 0.0) for _, c in members]))
        priors = [c.config.info.prior for _, c in members if c.config.info.prior is not None]
        prior = round(float(np.mean(priors)), 6) if priors else None
        command = (
            "pneumonia-zoo ensemble " + " ".join(f"--member {r.uri}" for r, _ in members) + f" --data {data}"
        )
        command += "".join(f" --tta {view}" for view in tta)
        info = PackageInfo(
            **split,
            members=[r.uri for r, _ in members],
            command=command,
            prior=prior,
            members_pretrained=[bool(c.config.info.pretrained) for _, c in members],
        )
        package_dir = Path(tmp) / "package"
        # First with a placeholder guard threshold of 1: the classifier's score is then the largest member
        # ratio, which is what the ensemble's own threshold is chosen on.
        placeholder = GuardConfig(threshold=1.0, val_flag_rate=flag_rate)
        config = write_ensemble(
            [c.directory for _, c in members], package_dir, {}, placeholder, strongest, tta, {}, info
        )
        ensemble = load_classifier(package_dir)
        val_predictions = predict_images(ensemble, prepared.val)
        config.operating_points = choose_operating_points(
            val_predictions.labels, val_predictions.probs, prior
        )
        ratios = val_predictions.ood_scores[np.isfinite(val_predictions.ood_scores)]
        if len(ratios):
            config.guard = GuardConfig(
                threshold=float(np.quantile(ratios, 1 - flag_rate)), val_flag_rate=flag_rate
            )
        else:
            config.guard = None
        record_files(package_dir, config)
        ensemble = load_classifier(package_dir)
        evaluations = [evaluate("val", predict_images(ensemble, prepared.val), ensemble.config, bootstrap=0)]
        if prepared.test is not None:
            test_predictions = predict_images(ensemble, prepared.test)
            evaluations.append(evaluate("test", test_predictions, ensemble.config, bootstrap=bootstrap))
        metrics = {"threshold": ensemble.config.threshold, "members": float(len(members))}
        metrics |= {f"threshold_{n}": p.threshold for n, p in ensemble.config.operating_points.items()}
        for evaluation in evaluations:
            metrics |= evaluation.flat_metrics()
        originals = Path(data).parent / "fullres_train"
        metrics |= robustness_metrics(
            ensemble, prepared.test, originals if originals.is_dir() else None, Path(data) / "train"
        )
        config.metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        config.reference = reference_of(evaluations[0])
        record_files(package_dir, config)
        store.activate()
        names = "+".join(c.config.architecture.removeprefix("efficientnet_") for _, c in members)
        members_text = ",".join(info.members)
        with mlflow.start_run(run_name=run_name or f"ensemble-{names}") as run:
            mlflow.set_tags({"architecture": "ensemble", "ensemble": "true", "members": members_text})
            mlflow.log_params(
                {
                    "members": members_text,
                    "tta": ",".join(tta) or "none",
                    "data": str(data),
                    "bootstrap": bootstrap,
                    "guard_flag_rate": flag_rate,
                    **split,
                    "n_val": len(prepared.val.labels),
                    "n_test": len(prepared.test.labels) if prepared.test else 0,
                }
            )
            mlflow.log_metrics(config.metrics)
            log_evaluations(evaluations, prepared)
            version = publish(store, package_dir, register=register)
        if version:
            log_model_card(store, version)
    return EnsembleOutcome(run.info.run_id, version or None, config.metrics)
