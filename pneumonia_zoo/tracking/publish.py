"""Publishing a package: log it as the active run's pyfunc model, then register it as a new version.

The one place that does this: training, ensembles, the starter model and the benchmarks all call
`publish`. Version tags are derived from the package's own model.json, so the registry alone can
rank and describe versions.
"""

import math
import shutil
import tempfile
import warnings
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

import pneumonia_zoo
from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.package.format import ONNX_FILE, PackageConfig
from pneumonia_zoo.package.io import member_configs, read_config
from pneumonia_zoo.package.pyfunc import IMAGE_COLUMN
from pneumonia_zoo.tracking.records import version_tags
from pneumonia_zoo.tracking.store import Store

_OUTPUTS: list[ColSpec | TensorSpec] = [ColSpec("double", name) for name in CLASS_NAMES]
_OUTPUTS += [
    ColSpec("string", "label"),
    ColSpec("string", "operating_point"),
    ColSpec("double", "threshold"),
    ColSpec("boolean", "uncertain"),
    ColSpec("double", "ood_score", required=False),
    ColSpec("boolean", "out_of_population"),
]
PYFUNC_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
    outputs=Schema(_OUTPUTS),
    params=ParamSchema([ParamSpec("operating_point", "string", "balanced")]),
)


# What pneumonia_zoo.package.pyfunc imports to load and run a package (image decoding includes DICOM),
# pinned at the installed versions: `mlflow models serve --env-manager uv|virtualenv` builds the model's
# environment from an index. The package's own code travels with the model (code_paths), so no
# `pneumonia-zoo` distribution (which no index has) is required.
PYFUNC_DISTRIBUTIONS = (
    "numpy",
    "pandas",
    "pillow",
    "onnxruntime",
    "safetensors",
    "pydicom",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
)
TORCH_DISTRIBUTIONS = ("torch", "torchvision", "timm")  # a version without ONNX runs on PyTorch


def model_requirements(package: PackageConfig) -> list[str]:
    """The pyfunc's pip requirements: ONNX versions need no torch."""
    has_onnx = any(name.endswith(ONNX_FILE) for name in package.files)
    names = PYFUNC_DISTRIBUTIONS + (() if has_onnx else TORCH_DISTRIBUTIONS)
    return [f"{name}=={installed_version(name)}" for name in names]


def package_code(target: Path) -> Path:
    """A copy of the package's code under `target` (about 1 MB: assets such as the starter stay out)."""
    copy = target / "pneumonia_zoo"
    source = Path(pneumonia_zoo.__file__).parent
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("assets", "__pycache__", "*.pyc"))
    return copy


def publish(
    store: Store, package_dir: Path, register: bool = True, extra_tags: dict[str, str] | None = None
) -> str:
    """Log `package_dir` as the active run's model and register it; returns the version ("" if not)."""
    package = read_config(package_dir)
    # No input example: it would store a patient image in every model.
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="pneumonia-zoo-code-") as code:
        warnings.simplefilter("ignore", UserWarning)
        logged = mlflow.pyfunc.log_model(
            name="model",
            loader_module="pneumonia_zoo.package.pyfunc",
            data_path=str(package_dir),
            code_paths=[str(package_code(Path(code)))],
            signature=PYFUNC_SIGNATURE,
            pip_requirements=model_requirements(package),
        )
    if not register:
        return ""
    run = mlflow.active_run()
    assert run is not None, "publish() logs into the active run"
    members = member_configs(package_dir, package)
    member_sizes = [member.preprocessing.image_size for member in members if member.preprocessing]
    tags = version_tags(package, member_sizes)
    version = store.register(logged.model_id, run.info.run_id, tags | (extra_tags or {}))
    mlflow.set_tag("registered_version", version)
    return version


def register_package(
    store: Store,
    package_dir: Path,
    run_name: str,
    tags: dict[str, str] | None = None,
    artifacts: list[Path] | None = None,
    alias: str | None = None,
) -> str:
    """A package folder (not trained here) as a new run and version: the starter, a copy for a benchmark.

    The run gets the package's own metrics and `tags`, the version `tags` too; `alias` is moved to it.
    """
    package = read_config(package_dir)
    store.activate()
    with mlflow.start_run(run_name=run_name):
        mlflow.set_tags(
            {"architecture": package.architecture, "pneumonia_zoo_version": pneumonia_zoo.__version__}
            | (tags or {})
        )
        mlflow.log_metrics({k: float(v) for k, v in package.metrics.items() if math.isfinite(float(v))})
        for path in artifacts or []:
            mlflow.log_artifact(str(path))
        version = publish(store, package_dir, extra_tags=tags)
    if alias:
        store.set_alias(version, alias)
    return version
