"""Every option of a training run, declared once: type, default, range, help and choices.

`pneumonia-zoo train` and `sweep` build their command-line options from these fields (the CLI adds
nothing of its own), the run logs them as params, and `train_command()` turns a logged run back into
the command that reproduces it. Importing this module costs no torch and no MLflow, so a typo is
refused at once.
"""

import os
import shlex
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from pneumonia_zoo.data.augment import AugmentParams
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.schedules import SCHEDULE_NAMES, ScheduleParams
from pneumonia_zoo.zoo.architectures import ARCHITECTURES, FREEZE_MODES

AUGMENT_PREFIX = "aug_"  # AugmentParams fields appear as --aug-<name> options and aug_<name> params
_NOT_REPRODUCING = {"arch", "data", "run_name"}


def cli(
    flag: str | None = None, short: str | None = None, panel: str = "Training", choices: tuple = ()
) -> dict:
    """How a field appears on the command line (read by pneumonia_zoo.cli_options)."""
    return {"cli": {"flag": flag, "short": short, "panel": panel, "choices": list(choices)}}


class TrainConfig(BaseModel):
    model_config = {"extra": "forbid"}

    arch: str = Field(
        description="Architecture.", json_schema_extra=cli(short="-a", choices=tuple(ARCHITECTURES))
    )
    data: Path = Field(
        description="Kaggle's chest_xray/ folder (train/, test/, optional val/).",
        json_schema_extra=cli(short="-d"),
    )
    epochs: int = Field(10, ge=1, le=1000, description="Maximum epochs (early stopping may end sooner).")
    batch_size: int = Field(16, ge=1, le=4096, description="Images per optimizer step.")
    image_size: int = Field(224, ge=32, le=1024, description="Square input size; images are squashed to it.")
    input_jpeg_quality: int = Field(
        75,
        ge=0,
        le=100,
        description="After resizing, store every image as JPEG at this quality, in training "
        "and serving alike, as the dataset's copies were stored (0: never).",
    )
    lr: float = Field(
        1e-3, gt=0, le=10, description="Base learning rate.", json_schema_extra=cli(panel="Optimizer")
    )
    optimizer: Literal["adamw", "sgd"] = Field(
        "adamw", description="Optimizer.", json_schema_extra=cli(panel="Optimizer")
    )
    weight_decay: float = Field(
        1e-4,
        ge=0,
        le=1,
        description="Decoupled weight decay (AdamW) or L2 (SGD).",
        json_schema_extra=cli(panel="Optimizer"),
    )
    momentum: float = Field(
        0.9, ge=0, lt=1, description="SGD momentum.", json_schema_extra=cli(panel="Optimizer")
    )
    schedule: str = Field(
        "cosine",
        description="Learning-rate schedule (formulas in training/schedules.py).",
        json_schema_extra=cli(panel="Schedule", choices=SCHEDULE_NAMES),
    )
    warmup_epochs: float = Field(
        0.0, ge=0, description="Linear warm-up length, in epochs.", json_schema_extra=cli(panel="Schedule")
    )
    decay_rate: float = Field(
        0.5,
        gt=0,
        description="Exponential family: decay per --decay-epochs.",
        json_schema_extra=cli(panel="Schedule"),
    )
    decay_epochs: float = Field(
        2.0,
        gt=0,
        description="Exponential family: epochs per decay step.",
        json_schema_extra=cli(panel="Schedule"),
    )
    power: float = Field(
        2.0, gt=0, description="Polynomial decay power.", json_schema_extra=cli(panel="Schedule")
    )
    min_lr_ratio: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Floor of polynomial and cosine, as a share of --lr.",
        json_schema_extra=cli(panel="Schedule"),
    )
    pretrained: bool | None = Field(
        None, description="ImageNet weights (default: when the architecture has them)."
    )
    freeze: str = Field(
        "none", description="Train everything, or only the head.", json_schema_extra=cli(choices=FREEZE_MODES)
    )
    val_fraction: float = Field(
        0.15,
        gt=0,
        lt=0.5,
        description="Share of train patients held out for validation.",
        json_schema_extra=cli(panel="Data"),
    )
    limit: int | None = Field(
        None,
        ge=8,
        description="Stratified subsample of N train images (and N test).",
        json_schema_extra=cli(panel="Data"),
    )
    seed: int = Field(
        42,
        description="Seeds the split, the initialisation and the batches.",
        json_schema_extra=cli(panel="Data"),
    )
    class_weights: bool = Field(False, description="Weight the loss by inverse class frequency.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy.")
    augment: bool = Field(
        True,
        description="Augment training images (the --aug-* options).",
        json_schema_extra=cli(panel="Augmentation"),
    )
    augmentation: AugmentParams = Field(default_factory=AugmentParams)
    patience: int = Field(5, ge=1, description="Epochs without a better validation AUC before stopping.")
    max_minutes: float | None = Field(
        None, gt=0, description="Training-time budget: the epoch that crosses it is the last."
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for PyTorch (default: the CPUs this process may use).",
        json_schema_extra=cli(panel="Machine"),
    )
    channels_last: bool = Field(
        True,
        description="channels_last memory format (faster on CPU).",
        json_schema_extra=cli(panel="Machine"),
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train.", json_schema_extra=cli(panel="Machine")
    )
    autocast: Literal["auto", "bf16", "fp16", "off"] = Field(
        "auto",
        description="Mixed precision of forward passes. auto: bf16 on a CUDA GPU that has it (else fp16 "
        "with loss scaling), off on CPU; bf16 also runs on CPU, fp16 needs CUDA.",
    )
    guard_flag_rate: float = Field(
        0.02,
        gt=0,
        lt=0.5,
        description="Share of validation images the out-of-population guard flags (sets its threshold).",
        json_schema_extra=cli(panel="Model package"),
    )
    robustness_originals: Path | None = Field(
        None,
        description="Folder of full-resolution originals of train "
        "images (NORMAL/, PNEUMONIA/) for the robustness check (default: "
        "fullres_train/ beside --data, when present).",
        json_schema_extra=cli(panel="Model package"),
    )
    bootstrap: int = Field(
        1000,
        ge=0,
        description="Bootstrap resamples (patients) for confidence intervals.",
        json_schema_extra=cli(panel="Model package"),
    )
    onnx: bool = Field(
        True, description="Export ONNX beside the weights.", json_schema_extra=cli(panel="Model package")
    )
    float16: bool = Field(
        False,
        description="Store weights (and ONNX initializers) as float16: half the size.",
        json_schema_extra=cli(panel="Model package"),
    )
    register_model: bool = Field(
        True,
        description="Register the model as a new version.",
        json_schema_extra=cli(flag="register", panel="Model package"),
    )
    run_name: str | None = Field(None, description="MLflow run name (default: arch-schedule-size).")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in ARCHITECTURES:
            raise ValueError(f"unknown architecture '{value}': choose one of {', '.join(ARCHITECTURES)}")
        return value

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        if value not in SCHEDULE_NAMES:
            raise ValueError(f"unknown schedule '{value}': choose one of {', '.join(SCHEDULE_NAMES)}")
        return value

    @field_validator("freeze")
    @classmethod
    def _known_freeze(cls, value: str) -> str:
        if value not in FREEZE_MODES:
            raise ValueError(f"unknown freeze mode '{value}': choose one of {', '.join(FREEZE_MODES)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        aug = self.augmentation
        if aug.jpeg_quality_min > aug.jpeg_quality_max:
            raise ValueError("--aug-jpeg-quality-min must not exceed --aug-jpeg-quality-max")
        return self

    # -- derived -----------------------------------------------------------------------------------

    def schedule_params(self) -> ScheduleParams:
        return ScheduleParams(
            epochs=self.epochs,
            decay_rate=self.decay_rate,
            decay_epochs=self.decay_epochs,
            power=self.power,
            min_lr_ratio=self.min_lr_ratio,
            warmup_epochs=self.warmup_epochs,
        )

    def originals_folder(self) -> Path | None:
        """Full-resolution originals to check robustness on: the option, else fullres_train/ beside data."""
        if self.robustness_originals is not None:
            return self.robustness_originals
        beside = Path(self.data).parent / "fullres_train"
        return beside if beside.is_dir() else None

    # -- params and commands -----------------------------------------------------------------------

    def flat(self) -> dict[str, Any]:
        """Field name -> value with the augmentation flattened to aug_<name> (params, CLI)."""
        values = self.model_dump(exclude={"augmentation"})
        values |= {f"{AUGMENT_PREFIX}{k}": v for k, v in self.augmentation.model_dump().items()}
        return values

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> "TrainConfig":
        """The inverse of `flat()` (CLI options, logged params), validated into one clear line on error."""
        augmentation = {
            key.removeprefix(AUGMENT_PREFIX): value
            for key, value in values.items()
            if key.startswith(AUGMENT_PREFIX)
            and key.removeprefix(AUGMENT_PREFIX) in AugmentParams.model_fields
        }
        plain = {k: v for k, v in values.items() if k in cls.model_fields and k != "augmentation"}
        return cls.build(**plain, augmentation=augmentation)

    def train_command(self) -> str:
        """The `pneumonia-zoo train` command that reproduces this run: every non-default knob."""
        data = os.path.relpath(self.data) if Path(self.data).is_absolute() else str(self.data)
        parts = ["pneumonia-zoo", "train", "--arch", self.arch, "--data", data]
        defaults = type(self).model_construct(arch=self.arch, data=self.data).flat()
        defaults |= {f"{AUGMENT_PREFIX}{k}": v for k, v in AugmentParams().model_dump().items()}
        fields = option_fields()
        for name, value in self.flat().items():
            if name in _NOT_REPRODUCING or value == defaults.get(name):
                continue
            flag = fields[name].flag
            if isinstance(value, bool):
                parts.append(f"--{flag}" if value else f"--no-{flag}")
            elif value is not None:
                parts += [f"--{flag}", f"{value:g}" if isinstance(value, float) else str(value)]
        return shlex.join(parts)

    @classmethod
    def build(cls, **values: Any) -> "TrainConfig":
        """Validate, turning pydantic's report into one line a user can act on."""
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            location = [str(part) for part in error["loc"]]
            if location[:1] == ["augmentation"]:
                location = [AUGMENT_PREFIX + "_".join(location[1:])]
            field = "_".join(location) or "config"
            message = error["msg"].removeprefix("Value error, ")
            raise UserError(f"invalid --{field.replace('_', '-')}: {message}") from None


class OptionField(BaseModel):
    """One command-line option, derived from a TrainConfig (or AugmentParams) field."""

    name: str  # the flat name: a TrainConfig field, or aug_<AugmentParams field>
    flag: str  # without the leading dashes
    short: str | None
    panel: str
    help: str
    choices: list[str]
    annotation: Any
    default: Any
    required: bool


def option_fields() -> dict[str, OptionField]:
    """Every option of `train`, in declaration order (augmentation fields in place of `augmentation`)."""
    options: dict[str, OptionField] = {}

    def add(name: str, info: FieldInfo, panel_default: str) -> None:
        schema_extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        extra = cast(dict[str, Any], schema_extra.get("cli") or {})
        options[name] = OptionField(
            name=name,
            flag=(extra.get("flag") or name).replace("_", "-"),
            short=extra.get("short"),
            panel=extra.get("panel") or panel_default,
            help=info.description or "",
            choices=[str(c) for c in extra.get("choices", [])],
            annotation=info.annotation,
            default=None if info.is_required() else info.get_default(call_default_factory=True),
            required=info.is_required(),
        )

    for name, info in TrainConfig.model_fields.items():
        if name == "augmentation":
            for aug_name, aug_info in AugmentParams.model_fields.items():
                add(f"{AUGMENT_PREFIX}{aug_name}", aug_info, "Augmentation")
        else:
            add(name, info, "Training")
    return options
