"""`model.json`: what a package is, its calibration, operating points and guard, and its files.

Format 2 adds temperature scaling, named operating points, the out-of-population guard and
ensembles; format 1 packages (one threshold, nothing else) are read as format 2 with temperature 1.
"""

import json
from dataclasses import asdict, dataclass, field

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import PackageRejected, UserError
from pneumonia_zoo.stats.operating_points import DEFAULT_OPERATING_POINT, OperatingPoint

FORMAT_VERSION = 2
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


class PackageError(PackageRejected):
    """The model package is missing, incomplete, or does not match its recorded hashes."""


@dataclass
class GuardConfig:
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
    part_names: list[str] = field(default_factory=list)
    part_dims: list[int] = field(default_factory=list)
    part_thresholds: list[float] = field(default_factory=list)


@dataclass
class MemberRef:
    path: str  # folder of the member's own (single) package, relative to the ensemble's
    architecture: str
    weight: float = 1.0


@dataclass
class PackageConfig:
    architecture: str  # an architecture from the zoo, or "ensemble"
    preprocessing: Preprocessing | None  # None for ensembles: every member has its own
    temperature: float = 1.0
    operating_points: dict[str, OperatingPoint] = field(default_factory=dict)
    default_operating_point: str = DEFAULT_OPERATING_POINT
    guard: GuardConfig | None = None
    members: list[MemberRef] = field(default_factory=list)
    explain_member: int = 0  # ensembles: the member whose Grad-CAM is shown (the strongest on validation)
    tta: list[str] = field(default_factory=list)  # test-time views averaged (empty: the image as it is)
    class_names: tuple[str, ...] = CLASS_NAMES
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # pretrained, epochs, run id, split seed, ...
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

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
            raise UserError(
                f"unknown operating point '{name[:40]}': choose one of {', '.join(self.operating_points)}"
            ) from None

    def to_json(self) -> str:
        from pneumonia_zoo.zoo.architectures import get_architecture

        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "architecture": self.architecture,
                "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
                "temperature": self.temperature,
                "operating_points": {name: asdict(point) for name, point in self.operating_points.items()},
                "default_operating_point": self.default_operating_point,
                "guard": asdict(self.guard) if self.guard else None,
                "members": [asdict(member) for member in self.members],
                "explain_member": self.explain_member,
                "tta": self.tta,
                "class_names": list(self.class_names),
                "cam_layer": None if self.is_ensemble else get_architecture(self.architecture).cam_layer,
                "metrics": self.metrics,
                "info": self.info,
                "files": self.files,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> "PackageConfig":
        try:
            values = json.loads(text)
            version = values.get("format_version")
            if version == 1:
                return cls._from_format_1(values)
            if version != FORMAT_VERSION:
                raise PackageError(f"unsupported model package format {version!r}")
            return cls(
                architecture=values["architecture"],
                preprocessing=Preprocessing.from_dict(values["preprocessing"])
                if values["preprocessing"]
                else None,
                temperature=float(values["temperature"]),
                operating_points={
                    name: OperatingPoint(**point) for name, point in values["operating_points"].items()
                },
                default_operating_point=values["default_operating_point"],
                guard=GuardConfig(**values["guard"]) if values.get("guard") else None,
                members=[MemberRef(**member) for member in values.get("members", [])],
                explain_member=int(values.get("explain_member", 0)),
                tta=list(values.get("tta", [])),
                class_names=tuple(values["class_names"]),
                metrics=values.get("metrics", {}),
                info=values.get("info", {}),
                files=values.get("files", {}),
            )
        except PackageError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
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
            preprocessing=Preprocessing.from_dict(values["preprocessing"]),
            operating_points=points,
            class_names=tuple(values["class_names"]),
            metrics=values.get("metrics", {}),
            info=values.get("info", {}) | {"format_1": "true"},
            files=values.get("files", {}),
        )
