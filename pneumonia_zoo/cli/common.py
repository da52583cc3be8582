"""What the commands share: the settings and store from the environment, and the checks of paths
made before anything heavy is imported (so a typo is refused at once)."""

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.errors import UserError, ZooError

if TYPE_CHECKING:
    from pneumonia_zoo.config import Settings
    from pneumonia_zoo.tracking.store import Store


def settings() -> "Settings":
    """The environment's settings (read once): the CLI is one of the two places that read them."""
    from pneumonia_zoo.config import get_settings  # pydantic-settings: not needed for --help

    return get_settings()


def open_store() -> "Store":
    from pneumonia_zoo.tracking.store import Store  # MLflow loads here, not for --help or a refusal

    return Store(settings())


def require_data_folder(path: Path) -> None:
    if not Path(path).is_dir():
        raise UserError(f"data folder {path} does not exist")


def require_existing(paths: Iterable[Path | None]) -> None:
    """Each given path (a folder or a file) exists; None is skipped."""
    for path in paths:
        if path is not None and not path.exists():
            raise UserError(f"{path} does not exist")


def require_files(paths: Iterable[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path} is not a file")


def one_line_errors(function: Callable[..., None]) -> Callable[..., None]:
    """`function` as a command whose ZooError becomes one line on stderr and the error's exit code,
    never a traceback (Typer reads the signature of `function` itself)."""

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except ZooError as exc:  # includes a refused (tampered or incomplete) model package
            output.show_error(exc)
            raise typer.Exit(exc.exit_code) from None

    return command
