"""Versions compared in pairs on data a user gives: every version against one reference (the champion by
default) on the same decoded images, and the promotion guard built on it (`promote --not-worse-on`).

Unlike `compare`, which reads each version's own logged test figures (each measured on its own run's
data), everything here is measured now, on one set of images, so differences are paired and fair.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sklearn.metrics import roc_auc_score

from pneumonia_zoo.data.discovery import dataset_root
from pneumonia_zoo.errors import InvalidInput, UserError
from pneumonia_zoo.evaluation.paired import PairedComparison, compare_predictions
from pneumonia_zoo.evaluation.predict import Predictions
from pneumonia_zoo.stats.calibration import brier_score, expected_calibration_error
from pneumonia_zoo.tracking.records import VersionRecord
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.workflows.evaluate import EvaluationData, ImagePredictor, is_kaggle_root, select_data

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class PairedRow:
    version: VersionRecord
    auc: float
    ece: float
    brier: float
    flag_rate: float
    threshold: float
    comparison: PairedComparison | None  # None for the reference itself

    def to_dict(self) -> dict:
        row = {
            "version": self.version.version,
            "architecture": self.version.architecture,
            "site": self.version.lineage.site,
            "auc": self.auc,
            "ece": self.ece,
            "brier": self.brier,
            "flag_rate": self.flag_rate,
            "threshold": self.threshold,
        }
        if self.comparison is None:
            return row | {"reference": True}
        return row | {"reference": False, "paired": self.comparison.to_dict()}


@dataclass(frozen=True)
class PairedTable:
    data: EvaluationData
    reference: VersionRecord
    rows: list[PairedRow]
    images: int
    patients: int

    def to_dict(self) -> dict:
        return {
            "data": {"source": self.data.description, "images": self.images, "patients": self.patients},
            "against": self.reference.uri,
            "versions": [row.to_dict() for row in self.rows],
        }

    def markdown(self) -> str:
        lines = [
            f"On {self.data.description} ({self.images} images, {self.patients} patients), "
            f"against version {self.reference.version}:",
            "",
            "| version | site | AUC | ECE | Brier | flagged | ΔAUC [95% CI] | p | McNemar p "
            "| ΔBrier [95% CI] | p |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            site = row.version.lineage.site or "–"
            head = (
                f"| {row.version.version} | {site} | {row.auc:.3f} | {row.ece:.3f} | {row.brier:.4f} "
                f"| {row.flag_rate:.1%} |"
            )
            if row.comparison is None:
                lines.append(f"{head} (reference) | | | | |")
                continue
            paired, brier = row.comparison, row.comparison.brier
            low, high = paired.delta_auc_ci
            brier_low, brier_high = brier.ci
            lines.append(
                f"{head} {paired.delta_auc:+.3f} [{low:+.3f}, {high:+.3f}] | {paired.bootstrap.p_value:.3g} "
                f"| {paired.mcnemar.p_value:.3g} | {brier.delta:+.4f} [{brier_low:+.4f}, {brier_high:+.4f}] "
                f"| {brier.p_value:.3g} |"
            )
        return "\n".join(lines)


def _summary(predictions: Predictions) -> tuple[float, float, float, float]:
    """AUC, ECE, Brier score and flag rate (the data hold both classes: checked before predicting)."""
    labels, probs = predictions.labels, predictions.probs
    auc = float(roc_auc_score(labels, probs))
    ece, brier = expected_calibration_error(labels, probs), brier_score(labels, probs)
    return auc, ece, brier, float(predictions.ood_flags.mean())


def paired_table(
    store: Store,
    model_uris: list[str],
    data: Path | None,
    manifest: Path | None = None,
    against: str | None = None,
    bootstrap: int = DEFAULT_RESAMPLES,
    limit: int | None = None,
    quiet: bool = False,
    split: str | None = None,
) -> PairedTable:
    """Every version in `model_uris` against `against` (default the champion) on the same images (`split`
    of a Kaggle-style folder: the reference's own, rebuilt from its seed)."""
    reference_uri = against or store.champion_uri
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-paired-") as tmp:
        reference, reference_classifier = store.load(reference_uri, destination=Path(tmp) / "reference")
        selected = select_data(reference_classifier, data, manifest, split, limit)
        if not selected.samples:
            raise UserError(f"no images in {selected.description}")
        if len({s.label for s in selected.samples}) < 2:
            raise InvalidInput(f"a paired comparison needs both classes; {selected.description} has one")
        predictor = ImagePredictor(selected, quiet)
        reference_predictions = predictor.predict(reference_classifier)
        reference_threshold = reference_classifier.config.threshold
        rows = [PairedRow(reference, *_summary(reference_predictions), reference_threshold, None)]
        for index, uri in enumerate(model_uris):
            resolved, classifier = store.load(uri, destination=Path(tmp) / f"model-{index}")
            if resolved.version == reference.version:
                continue
            predictions = predictor.predict(classifier)
            if predictions.files != reference_predictions.files:
                raise UserError(f"{uri} and {reference_uri} could not read the same images")
            threshold = classifier.config.threshold
            comparison = compare_predictions(
                predictions,
                reference_predictions,
                threshold,
                reference_threshold,
                resolved.uri,
                reference.uri,
                bootstrap,
            )
            rows.append(PairedRow(resolved, *_summary(predictions), threshold, comparison))
        images = len(reference_predictions.labels)
        patients = len(set(reference_predictions.groups.tolist()))
    return PairedTable(selected, reference, rows, images, patients)


def data_or_manifest(path: Path) -> tuple[Path | None, Path | None]:
    """A .csv is a manifest, anything else a folder: (data, manifest), as the paired functions take them."""
    return (None, path) if path.suffix.lower() == ".csv" else (path, None)


@dataclass(frozen=True)
class ChampionPair:
    """A promotion candidate in pairs with the champion, on the data a check was given."""

    candidate: str  # version numbers
    champion: str
    data: str  # what the images were
    comparison: PairedComparison


def _pair_with_champion(
    store: Store, candidate_uri: str, data: Path | None, manifest: Path | None, bootstrap: int, quiet: bool
) -> ChampionPair | None:
    """The candidate against the champion (None without a champion, or when it is the champion).

    Kaggle's chest_xray/ is used through its validation split, never test/ (a promotion is a choice, and
    the benchmark's test split must not make it), rebuilt from the champion's seed; both versions must
    carry the same validation-split key, or the images may hold one version's training patients.
    """
    champion = store.champion_version()
    candidate = store.resolve(candidate_uri)
    if champion is None or champion == candidate.version:
        return None
    split = None
    if data is not None and is_kaggle_root(dataset_root(data)):
        split = "val"
        ours = store.validation_split(candidate)
        theirs = store.validation_split(store.resolve(store.version_uri(champion)))
        if ours is None or ours != theirs:
            raise InvalidInput(
                f"version {candidate.version} was not validated on the champion's split (version {champion}: "
                f"{theirs or 'not recorded'}; version {candidate.version}: {ours or 'not recorded'}): its "
                "validation images are not the champion's; compare them on other held-out data"
            )
    table = paired_table(store, [candidate_uri], data, manifest, None, bootstrap, quiet=quiet, split=split)
    comparison = table.rows[-1].comparison
    assert comparison is not None
    return ChampionPair(candidate.version, champion, table.data.description, comparison)


def check_not_worse(
    store: Store,
    candidate_uri: str,
    data: Path | None,
    manifest: Path | None = None,
    margin: float = 0.0,
    bootstrap: int = DEFAULT_RESAMPLES,
    quiet: bool = True,
) -> PairedComparison | None:
    """Refuse (InvalidInput) when the candidate's ΔAUC interval against the champion lies entirely below
    -margin, i.e. the data show it worse than the champion by more than the margin.

    Returns the comparison, or None when there is no champion yet or the candidate is the champion.
    """
    if not 0 <= margin < 1:
        raise InvalidInput(f"the margin must lie in [0, 1), got {margin:g}")
    pair = _pair_with_champion(store, candidate_uri, data, manifest, bootstrap, quiet)
    if pair is None:
        return None
    comparison = pair.comparison
    low, high = comparison.delta_auc_ci
    if high < -margin:
        raise InvalidInput(
            f"version {pair.candidate} is worse than the champion (version {pair.champion}) on "
            f"{pair.data}: ΔAUC {comparison.delta_auc:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}] "
            f"lies below -{margin:g}; not promoted"
        )
    return comparison


def check_better(
    store: Store,
    candidate_uri: str,
    data: Path | None,
    manifest: Path | None = None,
    bootstrap: int = DEFAULT_RESAMPLES,
    quiet: bool = True,
) -> PairedComparison | None:
    """Refuse (InvalidInput) unless the candidate's paired ΔBrier interval against the champion lies below
    0: the champion rule's score, better beyond what the sample can decide.

    Returns the comparison, or None when there is no champion yet or the candidate is the champion.
    """
    pair = _pair_with_champion(store, candidate_uri, data, manifest, bootstrap, quiet)
    if pair is None:
        return None
    brier = pair.comparison.brier
    low, high = brier.ci
    if not high < 0:
        raise InvalidInput(
            f"version {pair.candidate} is not shown better than the champion (version {pair.champion}) on "
            f"{pair.data}: ΔBrier {brier.delta:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}] does not lie below "
            "0; not promoted"
        )
    return pair.comparison


def write_paired_report(
    store: Store, versions: list[str], on: Path, against: str | None, out: Path, quiet: bool = True
) -> tuple[PairedTable, Path]:
    """`compare --on`: the versions (numbers) in pairs against the reference on a folder or a manifest
    (.csv), written as paired.md and paired.json in `out`; returns the table and the Markdown's path."""
    import json

    uris = [store.version_uri(version) for version in versions]
    table = paired_table(store, uris, *data_or_manifest(on), against, quiet=quiet)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paired.json").write_text(json.dumps(table.to_dict(), indent=2, default=float))
    (out / "paired.md").write_text(table.markdown() + "\n")
    return table, out / "paired.md"
