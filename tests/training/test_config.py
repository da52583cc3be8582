"""A run's config turns back into the exact command that reproduces it, parsed by the real CLI."""

import shlex
from pathlib import Path

import click
import typer

from pneumonia_zoo.cli import app
from pneumonia_zoo.training.config import TrainConfig


def train_command_params(words: list[str]) -> dict:
    group = typer.main.get_command(app)
    train = group.get_command(click.Context(group), "train")
    return train.make_context("train", words).params


def parse_train_command(command: str) -> TrainConfig:
    """Parse a command line with the real CLI's option parser, without running it."""
    words = shlex.split(command)
    assert words[:2] == ["pneumonia-zoo", "train"]
    params = train_command_params(words[2:])
    params.pop("quiet")
    params = {k: v.value if hasattr(v, "value") else v for k, v in params.items()}
    params["data"] = Path(params["data"]).resolve()
    return TrainConfig.from_flat(params)


def test_every_knob_round_trips_through_the_command_line(fixture_data: Path) -> None:
    config = TrainConfig.build(
        arch="resnet50",
        data=fixture_data,
        epochs=3,
        batch_size=8,
        image_size=96,
        lr=3e-4,
        optimizer="sgd",
        weight_decay=0.0,
        momentum=0.8,
        schedule="polynomial",
        warmup_epochs=0.5,
        decay_rate=0.3,
        decay_epochs=1.5,
        power=1.5,
        min_lr_ratio=0.0,
        pretrained=False,
        freeze="backbone",
        val_fraction=0.2,
        limit=100,
        seed=3,
        class_weights=True,
        label_smoothing=0.1,
        augment=False,
        augmentation={"horizontal_flip": True, "jpeg_p": 0.4, "jpeg_quality_min": 20, "rescale_min": 0.5},
        patience=2,
        max_minutes=7.5,
        threads=1,
        channels_last=False,
        device="cpu",
        guard_flag_rate=0.05,
        robustness_originals=fixture_data.parent / "originals",
        bootstrap=10,
        onnx=False,
        float16=True,
        register_model=False,
        run_name="ignored",
    )
    command = config.train_command()
    assert "ignored" not in command
    assert parse_train_command(command) == config.model_copy(update={"run_name": None})


def test_defaults_give_a_short_command(fixture_data: Path) -> None:
    words = shlex.split(TrainConfig.build(arch="small_cnn", data=fixture_data).train_command())
    assert words[:5] == ["pneumonia-zoo", "train", "--arch", "small_cnn", "--data"] and len(words) == 6
    assert Path(words[5]).resolve() == fixture_data.resolve()
