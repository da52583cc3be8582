"""Command-line options: those several commands share, and `train`'s and `sweep`'s, built from
TrainConfig's fields so each training option is declared once (in the config).

Typer reads a command's parameters from `inspect.signature`; `options_signature` builds that signature
from the fields' types, defaults, help and allowed values (`OneOf`, `Literal`). Only how the options are
shown is the CLI's own: the --help panel and the short flag of a field, in the tables below.
"""

import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from rich.markup import escape

from pneumonia_zoo.choices import OneOf
from pneumonia_zoo.tracking.uris import ALIAS_FORM, VERSION_FORM
from pneumonia_zoo.training.config import AUGMENT_PREFIX, flat_fields, option_flag

# -- options shared by several commands ---------------------------------------------------------------

ModelUri = Annotated[
    str | None,
    typer.Option("--model", "-m", help=f"{ALIAS_FORM} or {VERSION_FORM} (default: the champion)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
OperatingPoint = Annotated[
    str | None,
    typer.Option("--operating-point", help="A named operating point of the model (default: its own)."),
]

# -- how TrainConfig's fields are shown --------------------------------------------------------------

DEFAULT_PANEL = "Training"
AUGMENTATION_PANEL = "Augmentation"  # every aug_* field, and `augment`
PANELS: dict[str, tuple[str, ...]] = {
    "Optimizer": ("lr", "optimizer", "weight_decay", "momentum"),
    "Schedule": ("schedule", "warmup_epochs", "decay_rate", "decay_epochs", "power", "min_lr_ratio"),
    "Data": ("val_fraction", "val_split", "limit", "seed"),
    AUGMENTATION_PANEL: ("augment",),
    "Machine": ("threads", "workers", "channels_last", "device", "autocast"),
    "Model package": (
        "guard_flag_rate",
        "robustness_originals",
        "bootstrap",
        "onnx",
        "float16",
        "register_model",
    ),
}
SHORT_FLAGS = {"arch": "-a", "data": "-d"}
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}


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


def _choices(info: FieldInfo) -> list[str]:
    """The allowed values a field declares: its OneOf, or its Literal's values."""
    for item in info.metadata:
        if isinstance(item, OneOf):
            return list(item.values)
    base, _ = _unwrap(info.annotation)
    if typing.get_origin(base) is Literal:
        return [str(value) for value in typing.get_args(base)]
    return []


def option_fields() -> dict[str, OptionField]:
    """Every option of `train`, in declaration order (augmentation fields in place of `augmentation`)."""
    return {
        name: OptionField(
            name=name,
            flag=option_flag(name),
            short=SHORT_FLAGS.get(name),
            panel=AUGMENTATION_PANEL
            if name.startswith(AUGMENT_PREFIX)
            else _PANEL_OF.get(name, DEFAULT_PANEL),
            help=escape(info.description or ""),  # Rich would take "[exp(-r), exp(r)]" for a tag
            choices=_choices(info),
            annotation=info.annotation,
            default=None if info.is_required() else info.get_default(call_default_factory=True),
            required=info.is_required(),
        )
        for name, info in flat_fields().items()
    }


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(base type, optional) for `X | None`."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def typer_parameter(field: OptionField, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    base, optional = _unwrap(field.annotation)
    if field.choices:  # Typer turns an Enum into click.Choice: the choices are listed in --help and checked
        base = enum.Enum(f"{field.name}_choices", {c: c for c in field.choices}, type=str)  # type: ignore[misc,no-redef]
    names = [f"--{field.flag}"] if base is not bool else [f"--{field.flag}/--no-{field.flag}"]
    if field.short:
        names.append(field.short)
    option = typer.Option(
        *names, help=field.help, rich_help_panel=field.panel, show_default=not field.required
    )
    value = field.default if default is inspect.Parameter.empty else default
    annotation = base | None if optional or (value is None and not field.required) else base
    if base is Path and not optional:
        annotation = Path
    return inspect.Parameter(
        field.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=... if field.required else value,
        annotation=Annotated[annotation, option],
    )


def options_signature(
    fields: list[OptionField], extra: list[inspect.Parameter], defaults: dict | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator giving `function(**values)` the signature Typer turns into options (choices arrive
    as their plain string values)."""
    defaults = defaults or {}
    parameters = [typer_parameter(f, defaults.get(f.name, inspect.Parameter.empty)) for f in fields] + extra

    def decorate(function: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(function)
        def command(**values: Any) -> None:
            return function(**{k: v.value if isinstance(v, enum.Enum) else v for k, v in values.items()})

        command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        return command

    return decorate


def extra_option(name: str, annotation: Any, default: Any, *names: str, **option: Any) -> inspect.Parameter:
    """A command's own option (not a training knob); its help is plain text, not Rich markup."""
    if "help" in option:
        option["help"] = escape(option["help"])
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, typer.Option(*names, **option)],
    )
