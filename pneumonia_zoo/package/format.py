"""`model.json`: what a package is, its calibration, operating points and guard, and its files.

Pydantic models, read and written by pydantic. Format 2 adds temperature scaling, named operating points, the
out-of-population guard and ensembles; format 1 packages (one threshold, nothing else) are read as format 2
with temperature 1. Format 3 is format 2 with a calibration bias (`logit_bias`), written only when the bias is
not 0, so that readers that know only format 2 refuse it. Packages written before `info` was typed stored its
values as strings ("True", "None", "0.15"): they are read into the typed fields.
"""

import json
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.discovery import ValSplit
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import InvalidInput, PackageRejected
from pneumonia_zoo.stats.operating_points import DEFAULT_OPERATING_POINT, OperatingPoint

FORMAT_VERSION = 2
FORMAT_VERSION_WITH_BIAS = 3  # format 2 plus `logit_bias`, written only when it is not 0
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"
GUARD_FILE = "guard.safetensors"
# Optional (a version adapted to a site): a linear head on the ONNX `features` output that replaces the
# network's logits in postprocessing (weight 2 x D, bias 2); present when `files` records it.
SITE_HEAD_FILE = "site_head.safetensors"
ENSEMBLE = "ensemble"
PREDICTION_KEYS = ("logits", "features")  # what a prediction needs of the network's outputs
OUTPUT_NAMES = (*PREDICTION_KEYS, "cam")  # every output of the ONNX graph (cam: for explanations)
_MISSING = ("None", "", "n/a", "unknown")  # how untyped packages wrote "no value"


class PackageError(PackageRejected):
    """The model package is missing, incomplete, or does not match its recorded hashes."""


class GuardConfig(BaseModel):
    """How the out-of-population guard decides; its Gaussians are in GUARD_FILE (single models).

    Single models: one Gaussian model per feature part (`part_names`, `part_dims`: the penultimate
    features, the guard layer's channel statistics), each score taken over its part's threshold, and
    `threshold` on the largest such ratio. Ensembles: `threshold` on the largest member score. Both are
    chosen so that `val_flag_rate` of validation images are flagged.
    """

    threshold: float
    val_flag_rate: float
    colourfulness_max: float = 12.0  # X-rays are grey; JPEG chroma noise of grey images stays near 1
    aspect_ratio_max: float = 2.5  # chest films are near square; a panorama is not one
    quantile: float = 0.98
    part_names: list[str] = Field(default_factory=list)
    part_dims: list[int] = Field(default_factory=list)
    part_thresholds: list[float] = Field(default_factory=list)


class ScoreDistribution(BaseModel):
    """A score's distribution on validation as quantile bins (stats/drift.py): what live drift is
    measured against."""

    edges: list[float]  # interior bin edges
    proportions: list[float]  # share of validation images in each of the len(edges) + 1 bins
    n: int  # validation images counted


class ReferenceDistributions(BaseModel):
    """Calibrated P(PNEUMONIA) and the guard score of the package on its validation images, as served.
    Absent from packages made before it was recorded: their drift has "no reference"."""

    split: str = "validation"
    p_pneumonia: ScoreDistribution
    guard_score: ScoreDistribution | None = None  # None: no guard, so no score

    @classmethod
    def from_scores(cls, probabilities: Any, guard_scores: Any) -> "ReferenceDistributions":
        import numpy as np

        from pneumonia_zoo.stats.drift import reference_bins

        def distribution(values: Any) -> ScoreDistribution | None:
            finite = np.asarray(values, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            if not len(finite):
                return None
            edges, proportions = reference_bins(finite)
            return ScoreDistribution(edges=edges, proportions=proportions, n=len(finite))

        p_pneumonia = distribution(probabilities)
        if p_pneumonia is None:
            raise ValueError("no validation probabilities to make a reference of")
        return cls(p_pneumonia=p_pneumonia, guard_score=distribution(guard_scores))


def inside_package(name: str) -> str:
    """`name` as a path relative to the package folder; PackageError for one that could leave it
    (absolute, a drive, `..`): model.json comes from the registry, which anyone who can write to it
    controls."""
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (
        not name
        or "\0" in name
        or posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or windows.root
        or ".." in posix.parts
        or ".." in windows.parts
    ):
        raise PackageError(f"{CONFIG_FILE} names a path outside the package ('{name[:80]}'): refusing it")
    return name


class MemberRef(BaseModel):
    path: str  # folder of the member's own (single) package, relative to the ensemble's
    architecture: str
    weight: float = 1.0

    @field_validator("path")
    @classmethod
    def _inside(cls, value: str) -> str:
        return inside_package(value)


class PackageInfo(BaseModel):
    """Where a package came from: what the card, evaluation and ensembles need to know about its run."""

    model_config = ConfigDict(extra="allow")  # newer writers may record more; nothing is lost on a rewrite

    run_id: str | None = None
    pretrained: bool | None = None  # None: unknown, or an ensemble (see members_pretrained)
    members_pretrained: list[bool] = Field(default_factory=list)
    epochs: int | None = None
    freeze: str | None = None
    schedule: str | None = None
    seed: int = 42  # the validation split is rebuilt from seed, val_fraction and limit
    val_fraction: float = 0.15
    val_split: ValSplit = "random"  # packages from before the choice existed: random
    limit: int | None = None
    prior: float | None = None  # training prevalence of PNEUMONIA (the balanced point's reference)
    weights_dtype: str = "float32"
    guard: str | None = None  # how the guard was made, when not at training ("backfilled")
    format_1: bool = False
    source_model: str | None = None  # the registry version a starter was exported from
    members: list[str] = Field(default_factory=list)  # ensembles: the members' registry URIs
    command: str | None = None  # ensembles: the command that built it
    # Site adaptation (pneumonia-zoo adapt): the parent version, the site and what it learnt from.
    adapted: bool = False
    site: str | None = None
    parent_version: str | None = None
    parent_model: str | None = None
    fit_sha256: str | None = None
    fit_images: int | None = None
    fit_patients: int | None = None
    head_features: str | None = None  # penultimate, or both (penultimate + guard-layer statistics)
    site_seed: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_untyped(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = {k: None if isinstance(v, str) and v in _MISSING else v for k, v in values.items()}
        pretrained = values.get("pretrained")
        if isinstance(pretrained, str) and "," in pretrained:  # an ensemble's members, comma-joined
            values["members_pretrained"] = pretrained.split(",")
            values["pretrained"] = None
        if isinstance(values.get("members"), str):
            values["members"] = [uri for uri in values["members"].split(",") if uri]
        return {k: v for k, v in values.items() if v is not None}


class PackageConfig(BaseModel):
    model_config = ConfigDict(validate_assignment=True)

    architecture: str  # an architecture from the zoo, or "ensemble"
    preprocessing: Preprocessing | None  # None for ensembles: every member has its own
    temperature: float = 1.0
    # Platt scaling's bias on the scaled PNEUMONIA logit (train --calibration platt); 0: temperature alone.
    logit_bias: float = 0.0
    operating_points: dict[str, OperatingPoint] = Field(default_factory=dict)
    default_operating_point: str = DEFAULT_OPERATING_POINT
    guard: GuardConfig | None = None
    members: list[MemberRef] = Field(default_factory=list)
    explain_member: int = 0  # ensembles: the member whose Grad-CAM is shown (the strongest on validation)
    tta: list[str] = Field(default_factory=list)  # test-time views averaged (empty: the image as it is)
    class_names: tuple[str, ...] = CLASS_NAMES
    metrics: dict[str, float] = Field(default_factory=dict)
    info: PackageInfo = Field(default_factory=PackageInfo)
    # Validation distributions of P and the guard score (live drift is measured against them).
    reference: ReferenceDistributions | None = None
    files: dict[str, str] = Field(default_factory=dict)  # relative path -> sha256

    @field_validator("files")
    @classmethod
    def _files_inside(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            inside_package(name)
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _finite_metrics(cls, values: Any) -> Any:
        # JSON has no NaN: an undefined metric is simply not recorded.
        if isinstance(values, dict):
            return {k: float(v) for k, v in values.items() if v is not None and float(v) == float(v)}
        return values

    @computed_field  # type: ignore[prop-decorator]
    @property
    def format_version(self) -> int:
        # A bias that a format 2 reader would ignore (serving miscalibrated answers) makes it refuse instead.
        return FORMAT_VERSION_WITH_BIAS if self.logit_bias else FORMAT_VERSION

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cam_layer(self) -> str | None:
        """Written for readers of model.json; the zoo's registry is what loading uses."""
        from pneumonia_zoo.zoo.architectures import ARCHITECTURES

        arch = ARCHITECTURES.get(self.architecture)
        return arch.cam_layer if arch is not None else None

    @property
    def is_ensemble(self) -> bool:
        return self.architecture == ENSEMBLE

    @property
    def threshold(self) -> float:
        """The default operating point's threshold on calibrated P(PNEUMONIA)."""
        return self.operating_point(None).threshold

    def operating_point(self, name: str | None) -> OperatingPoint:
        name = name or self.default_operating_point
        if not self.operating_points:
            return OperatingPoint(DEFAULT_OPERATING_POINT, 0.5, "fixed 0.5 (no validation data)", 0, 0)
        try:
            return self.operating_points[name]
        except KeyError:
            raise InvalidInput(
                f"unknown operating point '{name[:40]}': choose one of {', '.join(self.operating_points)}"
            ) from None

    def to_json(self) -> str:
        # Without a bias, model.json stays format 2 byte for byte (older readers, reproducible packages).
        return self.model_dump_json(indent=2, exclude=None if self.logit_bias else {"logit_bias"})

    @classmethod
    def from_json(cls, text: str) -> "PackageConfig":
        try:
            values = json.loads(text)
            if not isinstance(values, dict):
                raise ValueError("model.json is not a JSON object")
            version = values.pop("format_version", None)
            values.pop("cam_layer", None)
            if version == 1:
                return cls._from_format_1(values)
            if version not in (FORMAT_VERSION, FORMAT_VERSION_WITH_BIAS):
                raise PackageError(f"unsupported model package format {version!r}")
            return cls.model_validate(values)
        except PackageError:
            raise
        except (ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PackageError(f"{CONFIG_FILE} is malformed ({type(exc).__name__})") from None

    @classmethod
    def _from_format_1(cls, values: dict) -> "PackageConfig":
        threshold = float(values["threshold"])
        points = {
            DEFAULT_OPERATING_POINT: OperatingPoint(
                DEFAULT_OPERATING_POINT, threshold, "Youden's J on validation (format 1 package)", 0.0, 0.0
            )
        }
        if values.get("threshold_sensitivity_95") is not None:
            t95 = float(values["threshold_sensitivity_95"])
            points["sensitivity_95"] = OperatingPoint(
                "sensitivity_95", t95, "highest threshold with validation sensitivity >= 0.95", 0.0, 0.0
            )
        return cls(
            architecture=values["architecture"],
            preprocessing=values["preprocessing"],
            operating_points=points,
            class_names=tuple(values["class_names"]),
            metrics=values.get("metrics", {}),
            info=values.get("info", {}) | {"format_1": True},
            files=values.get("files", {}),
        )
