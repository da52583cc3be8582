"""Temporary MLflow stores for the benchmarks, and new versions registered without training.

`python -m benchmarks.store register-copy --uri sqlite:///... [--dir DIR] [--alias champion]`
registers a package folder (the starter by default) again as a new version: the soak runs it in a
subprocess so that importing MLflow never stalls the load generator's event loop.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from pneumonia_zoo.resources import STARTER_DIR  # the installed package's own starter (no MLflow import)

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

__all__ = ["STARTER_DIR", "register_copy", "register_copy_subprocess", "register_starter", "sqlite_uri"]


def sqlite_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def register_starter(uri: str, package_dir: Path = STARTER_DIR) -> None:
    """`pneumonia-zoo register-starter` into the store at `uri`: version 1, champion (as users do it)."""
    subprocess.run(
        [str(BIN / "pneumonia-zoo"), "register-starter", "--dir", str(package_dir)],
        env=os.environ | {"MLFLOW_TRACKING_URI": uri},
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def register_copy_subprocess(
    uri: str, package_dir: Path = STARTER_DIR, alias: str | None = "champion"
) -> str:
    """Run `register-copy` in a fresh interpreter; returns the new version."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.store",
        "register-copy",
        "--uri",
        uri,
        "--dir",
        str(package_dir),
    ]
    if alias:
        command += ["--alias", alias]
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def register_copy(uri: str, package_dir: Path, alias: str | None) -> str:
    """Register `package_dir` (a model package) again as a new run and version; optionally move `alias`."""
    from pneumonia_zoo.config import Settings
    from pneumonia_zoo.tracking.publish import register_package
    from pneumonia_zoo.tracking.store import Store

    # The store named explicitly, not get_settings(): a developer's .env must not redirect a benchmark.
    store = Store(Settings(tracking_uri=uri))
    return register_package(store, package_dir, "benchmark-copy", {"benchmark_copy": "true"}, alias=alias)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store")
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("register-copy", help="register a package folder again as a new version")
    copy.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI"), help="tracking URI")
    copy.add_argument("--dir", type=Path, default=STARTER_DIR)
    copy.add_argument("--alias", default=None)
    args = parser.parse_args()
    if not args.uri:
        parser.error("--uri (or MLFLOW_TRACKING_URI) is required")
    print(register_copy(args.uri, args.dir, args.alias))


if __name__ == "__main__":
    main()
