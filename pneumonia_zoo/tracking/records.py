"""Typed records of what the registry holds: one registered version, one run, one logged evaluation.

A version's description lives in its MLflow tags (strings). They are written and read here only:
`version_tags` makes them from a model package when it is published, `VersionRecord.from_mlflow` reads
them back into typed fields. Every reader (CLI, compare, cards, the service's catalog, pages and API)
uses the record, never the raw tags. Tag names are MLflow's contract with stores already written
(results/store/): they never change.
"""

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from pydantic import BaseModel, Field

from pneumonia_zoo.package.format import ONNX_FILE, PackageConfig
from pneumonia_zoo.tracking import uris

# Package metrics every version carries as tags, so the registry alone can rank and describe versions.
VERSION_METRIC_TAGS = (
    "val_auc",
    "val_loss",
    "val_sensitivity",
    "val_specificity",
    "val_ece",
    "val_brier",
    "test_auc",
    "test_accuracy",
    "test_sensitivity",
    "test_specificity",
    "test_ece",
    "test_flag_rate",
    "test_images",
    "robust_originals_agreement",
)
# `evaluate --log` writes eval_<context>_<metric> tags (the context may hold underscores).
EVALUATION_PREFIX = "eval_"
EVALUATION_METRICS = ("auc", "sensitivity", "specificity", "ece", "flag_rate", "images")
OPERATING_POINT_PREFIX = "threshold_"  # threshold_<name> tags: every named operating point
# Lineage tags.
STARTER_TAG = "starter"
PACKAGE_SHA_TAG = "package_sha256"
SOURCE_RUN_TAG = "source_run_id"
BACKFILLED_FROM_TAG = "backfilled_from"
ADAPTED_FROM_TAG = "parent_version"
SITE_TAG = "site"
FIT_DIGEST_TAG = "fit_sha256"
ADAPTED_TAG = "adapted"
PARENT_MODEL_TAG = "parent_model"
FIT_IMAGES_TAG = "fit_images"
FIT_PATIENTS_TAG = "fit_patients"
HEAD_FEATURES_TAG = "head_features"
# Which validation split a version's val_* metrics come from: versions are ranked only against versions
# validated on the same images (a Brier score on other images is another quantity).
VALIDATION_SPLIT_TAG = "validation_split"
# Tags of an `evaluate --log` run, which link it to the version it measured.
EVALUATED_VERSION_TAG = "evaluated_model_version"
EVALUATED_MODEL_TAG = "evaluated_model"
EVALUATION_CONTEXT_TAG = "evaluation_context"
EVALUATION_DATASET_TAG = "evaluation_dataset"
EVALUATED_AGAINST_TAG = "evaluated_against"


def validation_split_key(val_split: str, val_fraction: float, seed: int, limit: int | None) -> str:
    """One text per validation split: `random 0.15 seed 42`, `earliest 0.15` (seeded only by a --limit
    subsample), with ` limit N` when the pool was subsampled."""
    seeded = val_split == "random" or limit is not None
    return (
        f"{val_split} {val_fraction:g}"
        + (f" seed {seed}" if seeded else "")
        + (f" limit {limit}" if limit else "")
    )


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _bool(value: str | None) -> bool | None:
    return {"true": True, "false": False}.get((value or "").lower())


def format_float(value: float) -> str:
    """How every float tag is written (six decimals)."""
    return f"{value:.6f}"


class Lineage(BaseModel):
    """Where a version came from, beyond its own training run."""

    starter: bool = False  # the package shipped with pneumonia_zoo (register-starter)
    package_sha256: str | None = None  # the starter's model.json digest
    source_run_id: str | None = None  # the run a starter or copy was first trained in
    backfilled_from: str | None = None  # the version this one is a guarded copy of
    adapted: bool = False  # made by pneumonia-zoo adapt
    adapted_from: str | None = None  # the version this one was adapted from
    parent_model: str | None = None  # ... as a registry URI
    site: str | None = None  # the site it was adapted to
    fit_digest: str | None = None  # sha256 of the images it was adapted on
    fit_images: int | None = None
    fit_patients: int | None = None
    head_features: str | None = None  # what its head reads: penultimate, or both guard parts
    members: list[str] = Field(default_factory=list)  # an ensemble's member architectures

    @property
    def parent(self) -> str | None:
        return self.adapted_from or self.backfilled_from


class VersionRecord(BaseModel):
    """One registered version, typed."""

    name: str
    version: str
    aliases: list[str] = Field(default_factory=list)
    run_id: str | None = None
    source: str | None = None
    architecture: str = "unknown"
    kind: str = "single"  # single or ensemble
    image_size: int | None = None
    pretrained: bool | None = None
    onnx: bool = False
    guard: bool = False
    threshold: float | None = None  # the default operating point's
    operating_point: str | None = None  # its name
    operating_points: dict[str, float] = Field(default_factory=dict)  # every named point's threshold
    temperature: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)  # VERSION_METRIC_TAGS it has
    evaluations: dict[str, dict[str, float]] = Field(default_factory=dict)  # context -> metric -> value
    lineage: Lineage = Field(default_factory=Lineage)
    pretrained_text: str = "unknown"  # the tag as written ("True", "False", "True,True" for ensembles)
    validation_split: str | None = None  # validation_split_key; None on versions registered before the tag

    def validation_split_given(self, run: "RunRecord | None") -> str | None:
        """Its validation split: the tag, or for versions registered before the tag its run's parameters."""
        return self.validation_split or (run.validation_split if run else None)

    @property
    def uri(self) -> str:
        return uris.version_uri(self.name, self.version)

    @property
    def logged_model_id(self) -> str | None:
        return uris.logged_model_id(self.source)

    def metric(self, key: str) -> float | None:
        return self.metrics.get(key)

    def is_champion(self, alias: str) -> bool:
        return alias in self.aliases

    def flat_evaluations(self) -> dict[str, float]:
        """The eval_<context>_<metric> form (the API's `evaluations`)."""
        return {
            f"{EVALUATION_PREFIX}{context}_{metric}": value
            for context, values in self.evaluations.items()
            for metric, value in values.items()
        }

    @classmethod
    def from_mlflow(cls, version: ModelVersion, aliases: list[str] | None = None) -> "VersionRecord":
        tags: dict[str, str] = dict(version.tags)
        image_size = _float(tags.get("image_size"))
        metrics = {key: value for key in VERSION_METRIC_TAGS if (value := _float(tags.get(key))) is not None}
        points = {
            key.removeprefix(OPERATING_POINT_PREFIX): value
            for key, raw in tags.items()
            if key.startswith(OPERATING_POINT_PREFIX) and (value := _float(raw)) is not None
        }
        return cls(
            name=version.name,
            version=str(version.version),
            aliases=sorted(aliases if aliases is not None else (version.aliases or [])),
            run_id=version.run_id or None,
            source=version.source,
            architecture=tags.get("architecture", "unknown"),
            kind=tags.get("kind", "single"),
            image_size=int(image_size) if image_size is not None else None,
            pretrained=_bool(tags.get("pretrained")),
            pretrained_text=tags.get("pretrained", "unknown"),
            onnx=bool(_bool(tags.get("onnx"))),
            guard=bool(_bool(tags.get("guard"))),
            validation_split=tags.get(VALIDATION_SPLIT_TAG),
            threshold=_float(tags.get("threshold")),
            operating_point=tags.get("operating_point"),
            operating_points=points,
            temperature=_float(tags.get("temperature")),
            metrics=metrics,
            evaluations=evaluations_by_context(tags),
            lineage=Lineage(
                starter=tags.get(STARTER_TAG) == "true",
                package_sha256=tags.get(PACKAGE_SHA_TAG),
                source_run_id=tags.get(SOURCE_RUN_TAG),
                backfilled_from=tags.get(BACKFILLED_FROM_TAG),
                adapted=tags.get(ADAPTED_TAG) == "true",
                adapted_from=tags.get(ADAPTED_FROM_TAG),
                parent_model=tags.get(PARENT_MODEL_TAG),
                site=tags.get(SITE_TAG),
                fit_digest=tags.get(FIT_DIGEST_TAG),
                fit_images=_int(tags.get(FIT_IMAGES_TAG)),
                fit_patients=_int(tags.get(FIT_PATIENTS_TAG)),
                head_features=tags.get(HEAD_FEATURES_TAG),
                members=[m for m in tags.get("members", "").split(",") if m],
            ),
        )


def evaluations_by_context(tags: dict[str, str] | dict[str, float]) -> dict[str, dict[str, float]]:
    """eval_<context>_<metric> tags (or their float values) grouped: context -> metric -> value."""
    found: dict[str, dict[str, float]] = {}
    for key, raw in sorted(tags.items()):
        if not key.startswith(EVALUATION_PREFIX) or (value := _float(str(raw))) is None:
            continue
        name = key.removeprefix(EVALUATION_PREFIX)
        metric = next((m for m in EVALUATION_METRICS if name.endswith(f"_{m}")), name.rpartition("_")[2])
        context = name.removesuffix(f"_{metric}") or name
        found.setdefault(context, {})[metric] = value
    return found


def version_tags(package: PackageConfig, member_image_sizes: Sequence[int] = ()) -> dict[str, str]:
    """The tags every registered version carries, read from its package's model.json (an ensemble's
    `member_image_sizes` from its members' own)."""
    tags = {
        key: format_float(package.metrics[key])
        for key in VERSION_METRIC_TAGS
        if key in package.metrics and math.isfinite(package.metrics[key])
    }
    members = package.members
    info = package.info
    pretrained = (
        ",".join(str(flag) for flag in info.members_pretrained)
        if info.members_pretrained
        else str(info.pretrained)
        if info.pretrained is not None
        else "unknown"
    )
    tags |= {
        "architecture": package.architecture,
        "image_size": str(package.preprocessing.image_size)
        if package.preprocessing
        else ",".join(str(size) for size in sorted(set(member_image_sizes))),
        "threshold": format_float(package.threshold),
        "operating_point": package.default_operating_point,
        "temperature": f"{package.temperature:.4f}",
        "guard": str(package.guard is not None),
        "pretrained": pretrained,
        "onnx": str(any(name.endswith(ONNX_FILE) for name in package.files)),
        "kind": "ensemble" if package.is_ensemble else "single",
    }
    if not info.adapted:  # a site version was chosen on its site's cross-validation, not on a split
        tags[VALIDATION_SPLIT_TAG] = validation_split_key(
            info.val_split, info.val_fraction, info.seed, info.limit
        )
    tags |= {
        f"{OPERATING_POINT_PREFIX}{name}": format_float(point.threshold)
        for name, point in package.operating_points.items()
    }
    return tags | ({"members": ",".join(m.architecture for m in members)} if members else {})


def evaluation_summary_tags(context: str, metrics: dict[str, float]) -> dict[str, str]:
    """eval_<context>_<metric> tags from an evaluation's flat `<context>_<metric>` metrics."""
    return {
        f"{EVALUATION_PREFIX}{context}_{key}": format_float(metrics[f"{context}_{key}"])
        for key in EVALUATION_METRICS
        if f"{context}_{key}" in metrics
    }


def lineage_tags(lineage: Lineage) -> dict[str, str]:
    """The tags a version's lineage is written as (only what is set)."""
    values: dict[str, Any] = {
        STARTER_TAG: "true" if lineage.starter else None,
        PACKAGE_SHA_TAG: lineage.package_sha256,
        SOURCE_RUN_TAG: lineage.source_run_id,
        BACKFILLED_FROM_TAG: lineage.backfilled_from,
        ADAPTED_TAG: "true" if lineage.adapted else None,
        SITE_TAG: lineage.site,
        ADAPTED_FROM_TAG: lineage.adapted_from,
        PARENT_MODEL_TAG: lineage.parent_model,
        FIT_DIGEST_TAG: lineage.fit_digest,
        FIT_IMAGES_TAG: lineage.fit_images,
        FIT_PATIENTS_TAG: lineage.fit_patients,
        HEAD_FEATURES_TAG: lineage.head_features,
    }
    return {key: str(value) for key, value in values.items() if value is not None}


class RunRecord(BaseModel):
    """One MLflow run: what cards and compare read of it."""

    run_id: str
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    start_time: int = 0  # ms since the epoch

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.start_time / 1000, UTC).strftime("%Y-%m-%d")

    @property
    def validation_split(self) -> str | None:
        """The split its run's parameters describe (train and ensemble runs log them); None otherwise."""
        fraction, seed = _float(self.params.get("val_fraction")), _int(self.params.get("seed"))
        if fraction is None or seed is None:
            return None
        limit = _int(self.params.get("limit"))
        return validation_split_key(self.params.get("val_split", "random"), fraction, seed, limit)

    @classmethod
    def from_mlflow(cls, run: Run) -> "RunRecord":
        return cls(
            run_id=run.info.run_id,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            start_time=run.info.start_time or 0,
        )


class EvaluationRecord(BaseModel):
    """One `evaluate --log` run recorded against a version."""

    context: str
    dataset: str
    date: str
    run_id: str
    metrics: dict[str, float | None]
    subgroup_auc: dict[str, float] = Field(default_factory=dict)  # "<column>_<value>" -> AUC
    paired: dict[str, float | str | None] = Field(default_factory=dict)  # ΔAUC against another version

    @classmethod
    def from_run(cls, run: RunRecord) -> "EvaluationRecord":
        context = run.tags.get(EVALUATION_CONTEXT_TAG, "external")
        keys = ("images", "patients", "auc", "sensitivity", "specificity", "ece", "flag_rate")
        subgroup = f"{context}_subgroup_"
        paired_keys = ("delta_auc", "delta_auc_ci_low", "delta_auc_ci_high", "p_value")
        return cls(
            context=context,
            dataset=run.tags.get(EVALUATION_DATASET_TAG, "n/a"),
            date=run.date,
            run_id=run.run_id,
            metrics={key: run.metrics.get(f"{context}_{key}") for key in keys},
            subgroup_auc={
                key.removeprefix(subgroup).removesuffix("_auc"): value
                for key, value in sorted(run.metrics.items())
                if key.startswith(subgroup) and key.endswith("_auc") and "_gap_" not in key
            },
            paired={key: run.metrics.get(f"{context}_paired_{key}") for key in paired_keys}
            | {"against": run.tags.get(EVALUATED_AGAINST_TAG)},
        )
