"""Every option of a training run, declared once: type, default, range, help and allowed values.

`pneumonia-zoo train` and `sweep` build their command-line options from these fields (the CLI adds
only how they are grouped in --help), the run logs them as params, and `train_command()` turns a logged
run back into the command that reproduces it. Allowed values come from the registries they name
(`OneOf`). Importing this module costs no torch and no MLflow, so a typo is refused at once.
"""

import os
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from pneumonia_zoo.choices import OneOf
from pneumonia_zoo.data.augment import AugmentParams
from pneumonia_zoo.data.discovery import ValSplit
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.stats.calibration import CALIBRATIONS
from pneumonia_zoo.training.schedules import SCHEDULE, ScheduleParams
from pneumonia_zoo.zoo.architectures import ARCHITECTURE, FREEZE_MODE, resolve_pretrained

AUGMENT_PREFIX = "aug_"  # AugmentParams fields appear as --aug-<name> options and aug_<name> params
_NOT_REPRODUCING = {"arch", "data", "run_name"}
_OPTION_NAMES = {"register_model": "register"}  # the fields whose option is not named after them
CALIBRATION = OneOf(CALIBRATIONS, "calibration")


def option_flag(name: str) -> str:
    """The command-line option of a flat field name, without its dashes: `register` for register_model,
    `aug-jpeg-p` for aug_jpeg_p."""
    return _OPTION_NAMES.get(name, name).replace("_", "-")


class TrainConfig(BaseModel):
    model_config = {"extra": "forbid"}

    arch: Annotated[str, ARCHITECTURE] = Field(description="Architecture.")
    data: Path = Field(description="Kaggle's chest_xray/ folder (train/, test/, optional val/).")
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
    lr: float = Field(1e-3, gt=0, le=10, description="Base learning rate.")
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="Optimizer.")
    weight_decay: float = Field(
        1e-4,
        ge=0,
        le=1,
        description="Decoupled weight decay (AdamW) or L2 (SGD).",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    schedule: Annotated[str, SCHEDULE] = Field(
        "cosine",
        description="Learning-rate schedule (formulas in training/schedules.py).",
    )
    warmup_epochs: float = Field(0.0, ge=0, description="Linear warm-up length, in epochs.")
    decay_rate: float = Field(
        0.5,
        gt=0,
        description="Exponential family: decay per --decay-epochs.",
    )
    decay_epochs: float = Field(
        2.0,
        gt=0,
        description="Exponential family: epochs per decay step.",
    )
    power: float = Field(2.0, gt=0, description="Polynomial decay power.")
    min_lr_ratio: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Floor of polynomial and cosine, as a share of --lr.",
    )
    pretrained: bool | None = Field(
        None, description="ImageNet weights (default: when the architecture has them)."
    )
    freeze: Annotated[str, FREEZE_MODE] = Field("none", description="Train everything, or only the head.")
    probe_epochs: int = Field(
        0,
        ge=0,
        le=100,
        description="Linear probing first (LP-FT): the first N epochs train only the new head on the "
        "pretrained features, the rest every layer (0: off; needs pretrained weights, one process).",
    )
    val_fraction: float = Field(
        0.15,
        gt=0,
        lt=0.5,
        description="Share of train patients held out for validation.",
    )
    val_split: ValSplit = Field(
        "random",
        description="Validation patients: random (grouped, seeded) or earliest (each class's lowest "
        "patient numbers, acquisition order).",
    )
    limit: int | None = Field(
        None,
        ge=8,
        description="Stratified subsample of N train images (and N test).",
    )
    seed: int = Field(
        42,
        description="Seeds the split, the initialisation and the batches.",
    )
    train_seed: int | None = Field(
        None,
        description="Seeds the initialisation, the batches and the augmentation instead of --seed, which "
        "then seeds the split alone: a rerun on the same validation patients (its scores comparable).",
    )
    class_weights: bool = Field(False, description="Weight the loss by inverse class frequency.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy.")
    mixup_alpha: float = Field(
        0.0,
        ge=0,
        le=10,
        description="Mixup: blend each batch with a shuffled copy of itself, images and loss, by a share "
        "drawn from Beta(alpha, alpha) (0: off; 0.2 to 0.4 is usual).",
    )
    ema_decay: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Keep a moving average of the weights with this decay per step (warmed up as "
        "(1+t)/(10+t)); the average is validated, kept and shipped (0: off; 0.998 is usual).",
    )
    progressive_start_size: int | None = Field(
        None,
        ge=32,
        le=1024,
        description="Progressive resizing: the first epoch trains on images of this size, growing "
        "linearly to --image-size by the last epoch of the schedule (validation always at --image-size).",
    )
    swa_epochs: int = Field(
        0,
        ge=0,
        le=100,
        description="Stochastic weight averaging: after the schedule, train this many epochs more from "
        "the best one at a constant rate and ship the average of their ends, BatchNorm statistics "
        "recomputed (0: off).",
    )
    swa_lr_ratio: float = Field(
        0.1,
        gt=0,
        le=1,
        description="The averaging epochs' constant learning rate, as a share of --lr.",
    )
    augment: bool = Field(
        True,
        description="Augment training images (the --aug-* options).",
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
    )
    workers: int = Field(
        0,
        ge=0,
        description="Worker processes that augment training batches (0: the training process itself; "
        "a GPU waits on one process, so give it a few).",
    )
    channels_last: bool = Field(
        True,
        description="channels_last memory format (faster on CPU).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train.")
    autocast: Literal["auto", "bf16", "fp16", "off"] = Field(
        "auto",
        description="Mixed precision of forward passes. auto: bf16 on a CUDA GPU that has it (else fp16 "
        "with loss scaling), off on CPU; bf16 also runs on CPU, fp16 needs CUDA.",
    )
    calibration: Annotated[str, CALIBRATION] = Field(
        "temperature",
        description="Fitted on validation: temperature scaling, or platt (a temperature and a bias: for "
        "logits off-centre, as after a short training, which a temperature alone squeezes to one class).",
    )
    guard_flag_rate: float = Field(
        0.02,
        gt=0,
        lt=0.5,
        description="Share of validation images the out-of-population guard flags (sets its threshold).",
    )
    robustness_originals: Path | None = Field(
        None,
        description="Folder of full-resolution originals of train "
        "images (NORMAL/, PNEUMONIA/) for the robustness check (default: "
        "fullres_train/ beside --data, when present).",
    )
    bootstrap: int = Field(
        1000,
        ge=0,
        description="Bootstrap resamples (patients) for confidence intervals.",
    )
    onnx: bool = Field(True, description="Export ONNX beside the weights.")
    float16: bool = Field(
        False,
        description="Store weights (and ONNX initializers) as float16: half the size.",
    )
    register_model: bool = Field(
        True,
        description="Register the model as a new version.",
    )
    run_name: str | None = Field(None, description="MLflow run name (default: arch-schedule-size).")

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        aug = self.augmentation
        if aug.jpeg_quality_min > aug.jpeg_quality_max:
            raise ValueError("--aug-jpeg-quality-min must not exceed --aug-jpeg-quality-max")
        if self.progressive_start_size is not None and self.progressive_start_size > self.image_size:
            raise ValueError("--progressive-start-size must not exceed --image-size")
        if self.probe_epochs and (self.probe_epochs >= self.epochs or self.freeze != "none"):
            raise ValueError("--probe-epochs must be fewer than --epochs, with --freeze none")
        if self.probe_epochs and not resolve_pretrained(self.arch, self.pretrained):
            raise ValueError(f"--probe-epochs needs pretrained weights, and this {self.arch} has none")
        if self.swa_epochs and self.ema_decay:
            raise ValueError("--swa-epochs and --ema-decay each ship an average of the weights: choose one")
        return self

    # -- derived -----------------------------------------------------------------------------------

    @property
    def training_seed(self) -> int:
        """What seeds the initialisation, the batches and the augmentation (the split is always `seed`'s)."""
        return self.seed if self.train_seed is None else self.train_seed

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
        for name, value in self.flat().items():
            if name in _NOT_REPRODUCING or value == defaults.get(name):
                continue
            flag = option_flag(name)
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
            raise UserError(f"invalid --{option_flag(field)}: {message}") from None


def flat_fields() -> dict[str, FieldInfo]:
    """Every field of a run by its flat name (see `flat()`), in declaration order: the augmentation's
    fields, as aug_<name>, where `augmentation` stands."""
    fields: dict[str, FieldInfo] = {}
    for name, info in TrainConfig.model_fields.items():
        if name == "augmentation":
            fields |= {f"{AUGMENT_PREFIX}{n}": aug for n, aug in AugmentParams.model_fields.items()}
        else:
            fields[name] = info
    return fields
