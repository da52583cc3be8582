"""`pneumonia-zoo evaluate`: a registered version on a Kaggle split, a labelled folder or a manifest,
with patient-level intervals, calibration, the out-of-population flag rate, clinical utility, (on a
manifest) subgroups by any of its columns, (with `against`) a paired comparison with another version on
the same images, and (on a Kaggle folder) robustness; `--log` records it against the version in MLflow."""

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.pandas_dataset import from_pandas

from pneumonia_zoo.data.cache import DecodedImages, decode_all
from pneumonia_zoo.data.discovery import Sample, dataset_root, discover, list_labelled, read_manifest
from pneumonia_zoo.data.pipeline import split_samples
from pneumonia_zoo.data.split import stratified_subsample
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import InvalidInput, UserError
from pneumonia_zoo.evaluation import plots
from pneumonia_zoo.evaluation.paired import PairedComparison, compare_predictions
from pneumonia_zoo.evaluation.predict import Predictions, predict_images
from pneumonia_zoo.evaluation.report import Evaluation, evaluate
from pneumonia_zoo.evaluation.robustness import robustness_metrics
from pneumonia_zoo.evaluation.subgroups import SubgroupReport, subgroup_report
from pneumonia_zoo.evaluation.utility import ClinicalUtility, clinical_utility
from pneumonia_zoo.package.classifier import Classifier
from pneumonia_zoo.tracking.cards import log_model_card
from pneumonia_zoo.tracking.records import (
    EVALUATED_MODEL_TAG,
    EVALUATED_VERSION_TAG,
    EVALUATION_CONTEXT_TAG,
    EVALUATION_DATASET_TAG,
    VersionRecord,
    evaluation_summary_tags,
)
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.workflows.choices import EVALUATION_SPLIT

EVALUATION_EXPERIMENT = "pneumonia-zoo-evaluations"
PAIRED_RESAMPLES = 1000  # the paired comparison resamples even when `bootstrap` is 0 (no metric intervals)


@dataclass
class EvaluationData:
    description: str  # what was evaluated, for reports and the MLflow dataset
    context: str  # test, validation, train or external
    samples: list[Sample]
    kaggle_root: Path | None  # set for a Kaggle split (robustness is measured there)


def _kaggle_split(classifier: Classifier, root: Path, split: str, limit: int | None) -> list[Sample]:
    info = classifier.config.info
    seed, val_fraction = info.seed, info.val_fraction
    if split == "test":  # with the training seed, `--limit N` picks the subsample training used
        _, test = discover(root)
        return stratified_subsample(test, limit, seed)
    train, val, _ = split_samples(root, val_fraction, seed, info.limit, info.val_split)
    return stratified_subsample(train if split == "train" else val, limit, seed)


def is_kaggle_root(root: Path) -> bool:
    """A Kaggle-style chest_xray/ (train/ and test/ inside, the validation split rebuilt from train/)."""
    return (root / "train").is_dir() or (root / "test").is_dir()


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
    if is_kaggle_root(root):
        split = EVALUATION_SPLIT.check(split or "test")
        samples = _kaggle_split(classifier, root, split, limit)
        context = {"test": "test", "val": "validation", "train": "train"}[split]
        return EvaluationData(f"{root.name}/{split}", context, samples, root)
    if split is not None:
        raise UserError(f"--split needs a Kaggle-style folder with train/ and test/; {data} has neither")
    samples = list_labelled(root, require_both=False)
    return EvaluationData(f"{root.name}/", "external", stratified_subsample(samples, limit, 0), None)


def check_columns(data: EvaluationData, columns: list[str]) -> None:
    """Every `--by` column must be a column of the manifest (path, label and patient are not groups)."""
    if not columns:
        return
    available: list[str] = []
    for sample in data.samples:
        available += [key for key in sample.attributes if key not in available]
    if not available:
        raise InvalidInput(
            f"--by needs a manifest with the columns to group by ({', '.join(columns)}); "
            f"{data.description} has none"
        )
    unknown = [column for column in columns if column not in available]
    if unknown:
        raise InvalidInput(
            f"no column '{unknown[0][:40]}' in {data.description}: group by one of {', '.join(available)}"
        )


def check_prevalence(prevalence: float | None) -> None:
    if prevalence is not None and not 0 < prevalence < 1:
        raise InvalidInput(f"--prevalence must lie strictly between 0 and 1, got {prevalence:g}")


class ImagePredictor:
    """Decodes the selected images once per input size and predicts them with any number of packages,
    so every model sees exactly the same decoded images."""

    def __init__(self, data: EvaluationData, quiet: bool) -> None:
        self.data, self.quiet = data, quiet
        self._decoded: dict[int, DecodedImages] = {}

    def images(self, input_size: int) -> DecodedImages:
        if input_size not in self._decoded:
            images = decode_all(self.data.samples, Preprocessing(input_size), "decode", self.quiet)
            if len(images.labels) == 0:
                raise UserError(f"every image in {self.data.description} is unreadable")
            self._decoded[input_size] = images
        return self._decoded[input_size]

    def predict(self, classifier: Classifier) -> Predictions:
        return predict_images(classifier, self.images(classifier.input_size))


def paired_with(
    predictor: ImagePredictor,
    store: Store,
    predictions: Predictions,
    threshold: float,
    model: VersionRecord,
    against_uri: str,
    destination: Path,
    bootstrap: int,
) -> tuple[PairedComparison, VersionRecord, Predictions]:
    """The judged model's predictions paired with `against_uri`'s on the same images."""
    reference, classifier = store.load(against_uri, destination=destination)
    reference_predictions = predictor.predict(classifier)
    if reference_predictions.files != predictions.files:
        raise UserError(f"{against_uri} and {model.uri} could not read the same images")
    comparison = compare_predictions(
        predictions,
        reference_predictions,
        threshold,
        classifier.config.threshold,
        model.uri,
        against_uri,
        bootstrap=bootstrap or PAIRED_RESAMPLES,
    )
    return comparison, reference, reference_predictions


@dataclass
class EvaluationResult:
    resolved: VersionRecord
    data: EvaluationData
    evaluation: Evaluation
    images: DecodedImages
    robustness: dict[str, float]
    subgroups: SubgroupReport | None = None
    utility: ClinicalUtility | None = None
    paired: PairedComparison | None = None
    against: VersionRecord | None = None
    utility_against: ClinicalUtility | None = None  # the reference's, for the decision curve

    def to_dict(self) -> dict:
        resolved = self.resolved
        output = {
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
            "utility": self.utility.to_dict() if self.utility else None,
        }
        if self.subgroups is not None:
            output["subgroups"] = self.subgroups.to_dict()
            output["subgroup_gaps"] = self.subgroups.gaps_dict()
            output["subgroup_rule"] = (
                f"intervals (and gaps) only for groups with at least {self.subgroups.min_patients} "
                "patients of each class; patient-level cluster bootstrap"
            )
        if self.paired is not None and self.against is not None:
            output["paired"] = self.paired.to_dict() | {"against_version": self.against.version}
        return output

    def site_lines(self) -> list[str]:
        """The report's lines for utility, subgroups and the paired comparison (what the CLI prints)."""
        return [line for part in (self.utility, self.subgroups, self.paired) if part for line in part.lines()]

    def flat_metrics(self) -> dict[str, float]:
        """Everything logged with `--log`, flat."""
        context = self.data.context
        metrics = self.evaluation.flat_metrics() | self.robustness
        for part in (self.subgroups, self.utility, self.paired):
            if part is not None:
                metrics |= part.flat_metrics(context)
        return metrics


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
    *,
    by: list[str] | None = None,
    against: str | None = None,
    prevalence: float | None = None,
) -> EvaluationResult:
    """Metrics of a registry version at its own operating point (or a named one), on one data source.

    `by`: manifest columns to report subgroups of; `against`: another version to compare with on the same
    images (ΔAUC = this one's AUC minus its, each at its own operating point for McNemar); `prevalence`:
    where PPV, NPV and net benefit are taken (default the data's own).
    """
    check_prevalence(prevalence)
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-evaluate-") as tmp:
        resolved, classifier = store.load(model_uri, destination=Path(tmp) / "model")
        selected = select_data(classifier, data, manifest, split, limit)
        if not selected.samples:
            raise UserError(f"no images in {selected.description}")
        check_columns(selected, by or [])
        predictor = ImagePredictor(selected, quiet)
        images = predictor.images(classifier.input_size)
        predictions = predictor.predict(classifier)
        evaluation = evaluate(selected.context, predictions, classifier.config, bootstrap, operating_point)
        extra: dict[str, float] = {}
        if robustness and selected.kaggle_root is not None and selected.context == "test":
            originals = selected.kaggle_root.parent / "fullres_train"
            extra = robustness_metrics(
                classifier, images, originals if originals.is_dir() else None, selected.kaggle_root / "train"
            )
        threshold, point = evaluation.threshold, evaluation.operating_point
        result = EvaluationResult(
            resolved,
            selected,
            evaluation,
            images,
            extra,
            subgroups=subgroup_report(predictions, by, threshold, bootstrap) if by else None,
            utility=clinical_utility(predictions, threshold, point, prevalence),
        )
        if against:
            result.paired, result.against, reference = paired_with(
                predictor, store, predictions, threshold, resolved, against, Path(tmp) / "against", bootstrap
            )
            result.utility_against = clinical_utility(
                reference, result.paired.threshold_against, "default", prevalence
            )
    return result


def log_evaluation(store: Store, result: EvaluationResult) -> str:
    """Record the evaluation against its version: a run in the evaluations experiment, its metrics
    linked to the version's logged model and the dataset (MLflow 3 shows them with the model), the
    report as artifacts, a summary on the version's tags, and the version's model card re-rendered."""
    resolved, evaluation, context = result.resolved, result.evaluation, result.data.context
    store.activate(EVALUATION_EXPERIMENT)
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
    metrics = result.flat_metrics()
    with mlflow.start_run(run_name=f"evaluate-v{resolved.version}-{context}") as run:
        mlflow.set_tags(
            {
                EVALUATED_VERSION_TAG: resolved.version,
                EVALUATED_MODEL_TAG: resolved.name,
                EVALUATION_CONTEXT_TAG: context,
                EVALUATION_DATASET_TAG: result.data.description,
            }
            | ({"evaluated_against": result.against.uri} if result.against is not None else {})
        )
        mlflow.log_input(dataset, context=context)
        mlflow.log_metrics(metrics, model_id=resolved.logged_model_id, dataset=dataset)
        mlflow.log_dict(result.to_dict(), f"evaluation/{context}.json")
        mlflow.log_text(evaluation.report(), f"evaluation/{context}_classification_report.txt")
        mlflow.log_figure(plots.reliability_figure(evaluation), f"evaluation/{context}_reliability.png")
        mlflow.log_figure(plots.roc_pr_figure(evaluation), f"evaluation/{context}_roc_pr.png")
        if result.utility is not None:
            curves = {f"v{resolved.version}": result.utility.curve}
            if result.utility_against is not None and result.against is not None:
                curves[f"v{result.against.version} (against)"] = result.utility_against.curve
            figure = plots.decision_curve_figure(curves, f"decision curve, {result.data.description}")
            mlflow.log_figure(figure, f"evaluation/{context}_decision_curve.png")
        plots.plt.close("all")
    store.set_version_tags(resolved.version, evaluation_summary_tags(context, metrics))
    log_model_card(store, resolved.version)
    return run.info.run_id
