"""`pneumonia-zoo evaluate`: a registered version on a Kaggle split, a labelled folder or a manifest,
with patient-level intervals, calibration, the out-of-population flag rate and (on a Kaggle folder)
robustness; `--log` records it against the version in MLflow."""

import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities.model_registry import ModelVersion

from pneumonia_zoo.data.cache import DecodedImages, decode_all
from pneumonia_zoo.data.discovery import Sample, dataset_root, discover, list_labelled, read_manifest
from pneumonia_zoo.data.pipeline import split_samples
from pneumonia_zoo.data.split import stratified_subsample
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.evaluation import plots
from pneumonia_zoo.evaluation.predict import predict_images
from pneumonia_zoo.evaluation.report import Evaluation, evaluate
from pneumonia_zoo.evaluation.robustness import robustness_metrics
from pneumonia_zoo.package.classifier import Classifier
from pneumonia_zoo.tracking.cards import EVALUATED_VERSION_TAG, log_model_card
from pneumonia_zoo.tracking.store import ResolvedVersion, Store
from pneumonia_zoo.workflows.choices import EVALUATION_SPLIT

EVALUATION_EXPERIMENT = "pneumonia-zoo-evaluations"


@dataclass
class EvaluationData:
    description: str  # what was evaluated, for reports and the MLflow dataset
    context: str  # test, validation, train or external
    samples: list[Sample]
    kaggle_root: Path | None  # set for a Kaggle split (robustness is measured there)


def _kaggle_split(classifier: Classifier, root: Path, split: str, limit: int | None) -> list[Sample]:
    info = classifier.config.info
    seed, val_fraction = int(info.get("seed", 42)), float(info.get("val_fraction", 0.15))
    if split == "test":  # with the training seed, `--limit N` picks the subsample training used
        _, test = discover(root)
        return stratified_subsample(test, limit, seed)
    trained_limit = int(info["limit"]) if info.get("limit") not in (None, "", "None") else None
    train, val, _ = split_samples(root, val_fraction, seed, trained_limit)
    return stratified_subsample(train if split == "train" else val, limit, seed)


def select_data(
    classifier: Classifier, data: Path | None, manifest: Path | None, split: str | None, limit: int | None
) -> EvaluationData:
    if (data is None) == (manifest is None):
        raise UserError("give either --data (a folder) or --manifest (a CSV of path,label[,patient])")
    if manifest is not None:
        samples = read_manifest(manifest)
        return EvaluationData(
            f"manifest {manifest.name}", "external", stratified_subsample(samples, limit, 0), None
        )
    assert data is not None
    root = dataset_root(data)
    if (root / "train").is_dir() or (root / "test").is_dir():
        split = EVALUATION_SPLIT.check(split or "test")
        samples = _kaggle_split(classifier, root, split, limit)
        context = {"test": "test", "val": "validation", "train": "train"}[split]
        return EvaluationData(f"{root.name}/{split}", context, samples, root)
    if split is not None:
        raise UserError(f"--split needs a Kaggle-style folder with train/ and test/; {data} has neither")
    samples = list_labelled(root, require_both=False)
    return EvaluationData(f"{root.name}/", "external", stratified_subsample(samples, limit, 0), None)


@dataclass
class EvaluationResult:
    resolved: ResolvedVersion
    data: EvaluationData
    evaluation: Evaluation
    images: DecodedImages
    robustness: dict[str, float]

    def to_dict(self) -> dict:
        resolved = self.resolved
        return {
            "model": {
                "name": resolved.name,
                "version": resolved.version,
                "architecture": resolved.architecture,
            },
            "data": {
                "source": self.data.description,
                "context": self.data.context,
                "images": self.evaluation.images,
                "patients": self.evaluation.patients,
                "unreadable": len(self.images.unreadable),
            },
            **self.evaluation.to_dict(),
            "robustness": self.robustness,
        }


def run_evaluation(
    store: Store,
    model_uri: str,
    data: Path | None,
    manifest: Path | None = None,
    split: str | None = None,
    bootstrap: int = 1000,
    limit: int | None = None,
    operating_point: str | None = None,
    robustness: bool = True,
    quiet: bool = False,
) -> EvaluationResult:
    """Metrics of a registry version at its own operating point (or a named one), on one data source."""
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-evaluate-") as tmp:
        resolved, classifier = store.load(model_uri, destination=Path(tmp))
        selected = select_data(classifier, data, manifest, split, limit)
        if not selected.samples:
            raise UserError(f"no images in {selected.description}")
        images = decode_all(selected.samples, Preprocessing(classifier.input_size), "decode", quiet)
        if len(images.labels) == 0:
            raise UserError(f"every image in {selected.description} is unreadable")
        predictions = predict_images(classifier, images)
        evaluation = evaluate(selected.context, predictions, classifier.config, bootstrap, operating_point)
        extra: dict[str, float] = {}
        if robustness and selected.kaggle_root is not None and selected.context == "test":
            originals = selected.kaggle_root.parent / "fullres_train"
            extra = robustness_metrics(
                classifier, images, originals if originals.is_dir() else None, selected.kaggle_root / "train"
            )
    return EvaluationResult(resolved, selected, evaluation, images, extra)


def _logged_model_id(version: ModelVersion) -> str | None:
    """The logged model a version was registered from. A sqlite registry returns `model_id` empty
    (it has no column for it), but the version's source is that model's `models:/m-<id>` URI."""
    if getattr(version, "model_id", None):
        return version.model_id
    match = re.fullmatch(r"models:/(m-[0-9a-f]+)", version.source or "")
    return match.group(1) if match else None


def log_evaluation(store: Store, result: EvaluationResult) -> str:
    """Record the evaluation against its version: a run in the evaluations experiment, its metrics
    linked to the version's logged model and the dataset (MLflow 3 shows them with the model), the
    report as artifacts, a summary on the version's tags, and the version's model card re-rendered."""
    resolved, evaluation, context = result.resolved, result.evaluation, result.data.context
    store.activate(EVALUATION_EXPERIMENT)
    version = store.client.get_model_version(resolved.name, resolved.version)
    table = pd.DataFrame(
        {
            "path": evaluation.predictions.files,
            "label": evaluation.predictions.labels,
            "patient": evaluation.predictions.groups,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(table, name=result.data.description, targets="label")
    metrics = evaluation.flat_metrics() | result.robustness
    with mlflow.start_run(run_name=f"evaluate-v{resolved.version}-{context}") as run:
        mlflow.set_tags(
            {
                EVALUATED_VERSION_TAG: resolved.version,
                "evaluated_model": resolved.name,
                "evaluation_context": context,
                "evaluation_dataset": result.data.description,
            }
        )
        mlflow.log_input(dataset, context=context)
        mlflow.log_metrics(metrics, model_id=_logged_model_id(version), dataset=dataset)
        mlflow.log_dict(result.to_dict(), f"evaluation/{context}.json")
        mlflow.log_text(evaluation.report(), f"evaluation/{context}_classification_report.txt")
        mlflow.log_figure(plots.reliability_figure(evaluation), f"evaluation/{context}_reliability.png")
        mlflow.log_figure(plots.roc_pr_figure(evaluation), f"evaluation/{context}_roc_pr.png")
        plots.plt.close("all")
    summary = {
        f"eval_{context}_{k}": metrics[f"{context}_{k}"]
        for k in ("auc", "sensitivity", "specificity", "flag_rate", "images")
        if f"{context}_{k}" in metrics
    }
    store.set_version_tags(resolved.version, {k: f"{v:.6f}" for k, v in summary.items()})
    log_model_card(store, resolved.version)
    return run.info.run_id
