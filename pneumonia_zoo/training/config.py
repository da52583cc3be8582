"""Every knob of a training run, validated once; logged to MLflow as the run's params."""

import os
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.schedules import SCHEDULE_NAMES, ScheduleParams
from pneumonia_zoo.zoo.registry import ARCHITECTURES, FREEZE_MODES

# Config fields whose CLI flag has another name; run_name only labels a run.
_FLAG_NAMES = {"register_model": "register", "horizontal_flip": "hflip"}
_NOT_REPRODUCING = {"arch", "data", "run_name"}


class TrainConfig(BaseModel):
    model_config = {"extra": "forbid"}

    arch: str
    data: Path
    epochs: int = Field(10, ge=1, le=1000)
    batch_size: int = Field(16, ge=1, le=4096)
    image_size: int = Field(224, ge=32, le=1024)
    lr: float = Field(1e-3, gt=0, le=10)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = Field(1e-4, ge=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: str = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    decay_rate: float = Field(0.5, gt=0)
    decay_epochs: float = Field(2.0, gt=0)
    power: float = Field(2.0, gt=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    pretrained: bool | None = None
    freeze: str = "none"
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    limit: int | None = Field(None, ge=8)
    seed: int = 42
    class_weights: bool = False
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: bool = True
    horizontal_flip: bool = False
    patience: int = Field(5, ge=1)
    max_minutes: float | None = Field(None, gt=0)
    threads: int | None = Field(None, ge=1)
    channels_last: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bootstrap: int = Field(1000, ge=0)
    onnx: bool = True
    register_model: bool = True
    run_name: str | None = None

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

    def schedule_params(self) -> ScheduleParams:
        return ScheduleParams(
            epochs=self.epochs,
            decay_rate=self.decay_rate,
            decay_epochs=self.decay_epochs,
            power=self.power,
            min_lr_ratio=self.min_lr_ratio,
            warmup_epochs=self.warmup_epochs,
        )

    def train_command(self) -> str:
        """The `pneumonia-zoo train` command that reproduces this run: every non-default knob."""
        data = os.path.relpath(self.data) if self.data.is_absolute() else str(self.data)
        parts = ["pneumonia-zoo", "train", "--arch", self.arch, "--data", data]
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name in _NOT_REPRODUCING or value == field.default:
                continue
            flag = _FLAG_NAMES.get(name, name).replace("_", "-")
            if isinstance(value, bool):
                parts.append(f"--{flag}" if value else f"--no-{flag}")
            else:
                parts += [f"--{flag}", f"{value:g}" if isinstance(value, float) else str(value)]
        return shlex.join(parts)

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "TrainConfig | None":
        """Rebuild a run's config from its logged MLflow params (None: not a training run)."""
        try:
            return cls.build(**{key: value for key, value in params.items() if key in cls.model_fields})
        except UserError:
            return None

    @classmethod
    def build(cls, **values) -> "TrainConfig":
        """Validate, turning pydantic's report into one line a user can act on."""
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"]) or "config"
            message = error["msg"].removeprefix("Value error, ")
            raise UserError(f"invalid --{field.replace('_', '-')}: {message}") from None
