"""Typer options built from TrainConfig's fields, so each option is declared once (in the config).

Typer reads a command's parameters from `inspect.signature`; `options_signature` builds that
signature from the fields' types, defaults, help, panels and choices.
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

from pneumonia_zoo.training.config import OptionField


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(base type, optional) for `X | None`."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def typer_parameter(field: OptionField, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    base, optional = _unwrap(field.annotation)
    choices = list(field.choices)
    if typing.get_origin(base) is Literal:
        choices, base = [str(a) for a in typing.get_args(base)], str
    if choices:  # Typer turns an Enum into click.Choice: the choices are listed in --help and checked
        base = enum.Enum(f"{field.name}_choices", {c: c for c in choices}, type=str)  # type: ignore[misc,no-redef]
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
    """A command's own option (not a training knob)."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, typer.Option(*names, **option)],
    )
