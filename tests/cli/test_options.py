"""`train`'s and `sweep`'s options come from TrainConfig: each declared once, with its allowed values
read from the registry that owns them; the CLI adds only panels and short flags."""

import click
import pytest
import rich.markup
import typer
from typer.testing import CliRunner

from pneumonia_zoo.cli import app
from pneumonia_zoo.cli.options import PANELS, SHORT_FLAGS, option_fields
from pneumonia_zoo.data.augment import AugmentParams
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.schedules import DECAY_SCHEDULES, SCHEDULES
from pneumonia_zoo.zoo.architectures import ARCHITECTURES, FREEZE_MODES
from tests.cli.helpers import flat


def command_options(name: str) -> dict[str, object]:
    """The options of a command as Click builds them: parameter name -> Click option."""
    group = typer.main.get_command(app)
    return {param.name: param for param in group.commands[name].params}


def test_every_field_is_an_option_with_help() -> None:
    fields = option_fields()
    expected = {n for n in TrainConfig.model_fields if n != "augmentation"} | {
        f"aug_{n}" for n in AugmentParams.model_fields
    }
    assert set(fields) == expected
    assert all(field.help for field in fields.values())
    options = command_options("train")
    for field in fields.values():
        assert f"--{field.flag}" in options[field.name].opts


def test_allowed_values_come_from_their_registries() -> None:
    fields = option_fields()
    assert fields["arch"].choices == list(ARCHITECTURES)  # adding an architecture is one registry entry
    assert fields["schedule"].choices == [*SCHEDULES, "plateau"]
    assert fields["freeze"].choices == list(FREEZE_MODES)
    assert fields["optimizer"].choices == ["adamw", "sgd"]  # a Literal is its own declaration


def test_the_panel_and_short_flag_tables_name_real_fields() -> None:
    fields = option_fields()
    named = [name for names in PANELS.values() for name in names] + list(SHORT_FLAGS)
    assert set(named) <= set(fields)  # a typo would silently leave an option in the default panel
    assert len(named) == len(set(named))  # one panel each
    assert fields["lr"].panel == "Optimizer" and fields["aug_noise_p"].panel == "Augmentation"
    assert fields["epochs"].panel == "Training" and fields["register_model"].panel == "Model package"
    assert "-a" in command_options("train")["arch"].opts and "-d" in command_options("train")["data"].opts


def test_a_field_named_otherwise_on_the_command_line() -> None:
    assert command_options("train")["register_model"].opts == ["--register"]
    assert command_options("train")["register_model"].secondary_opts == ["--no-register"]


def test_sweep_takes_lists_instead_of_one_schedule_and_rate() -> None:
    options = command_options("sweep")
    assert {"schedule", "lr", "run_name"}.isdisjoint(options)
    assert options["schedules"].default == ",".join(DECAY_SCHEDULES)
    assert options["onnx"].default is False and command_options("train")["onnx"].default is True
    assert options["backend"].default == "sequential"


def test_every_help_text_is_shown_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """--help renders help as Rich markup, where "[word...]" is a tag and vanishes: "Gamma in [exp(-r),
    exp(r)]" showed as "Gamma in ."; each option's help must appear whole in its command's --help."""
    monkeypatch.setenv("COLUMNS", "400")  # no wrapping inside a word's neighbourhood that flat() can't undo
    root = typer.main.get_command(app)
    commands: list[tuple[list[str], click.Command]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", {})
        commands += [([name, sub], cmd) for sub, cmd in subcommands.items()] or [([name], command)]
    checked = 0
    for path, command in commands:
        shown = flat(CliRunner().invoke(app, [*path, "--help"]).output)
        for param in command.params:
            help_text = getattr(param, "help", None)
            if help_text:
                as_written = help_text.replace("\\[", "[")  # what escape() protected, unprotected
                assert rich.markup.render(help_text).plain == as_written, (path, param.name)
                assert " ".join(as_written.split()) in shown, (path, param.name)
                checked += 1
    assert checked > 100  # every command's options, not a few
