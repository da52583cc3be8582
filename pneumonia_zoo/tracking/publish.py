"""Publishing a package: log it as the active run's pyfunc model, then register it as a new version.

The one place that does this: training, ensembles, the starter model and the benchmarks all call
`publish`. Version tags are derived from the package's own model.json, so the registry alone can
rank and describe versions.
"""

import math
import warnings
from pathlib import Path

import mlflow
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

import pneumonia_zoo
from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.package.format import ONNX_FILE, PackageConfig
from pneumonia_zoo.package.io import read_config
from pneumonia_zoo.package.pyfunc import IMAGE_COLUMN
from pneumonia_zoo.tracking.store import VERSION_METRIC_TAGS, Store

PYFUNC_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]),
    outputs=Schema(
        [ColSpec("double", name) for name in CLASS_NAMES]
        + [
            ColSpec("string", "label"),
            ColSpec("string", "operating_point"),
            ColSpec("double", "threshold"),
            ColSpec("boolean", "uncertain"),
            ColSpec("double", "ood_score", required=False),
            ColSpec("boolean", "out_of_population"),
        ]
    ),
    params=ParamSchema([ParamSpec("operating_point", "string", "balanced")]),
)


def version_tags(package: PackageConfig) -> dict[str, str]:
    """The tags every registered version carries, all read from its package's model.json."""
    tags = {
        key: f"{package.metrics[key]:.6f}"
        for key in VERSION_METRIC_TAGS
        if key in package.metrics and math.isfinite(package.metrics[key])
    }
    members = package.members
    return (
        tags
        | {
            "architecture": package.architecture,
            "image_size": str(package.preprocessing.image_size if package.preprocessing else "")
            or ",".join(sorted({m.architecture for m in members})),
            "threshold": f"{package.threshold:.6f}",
            "operating_point": package.default_operating_point,
            "temperature": f"{package.temperature:.4f}",
            "guard": str(package.guard is not None),
            "pretrained": package.info.get("pretrained", "unknown"),
            "onnx": str(any(name.endswith(ONNX_FILE) for name in package.files)),
            "kind": "ensemble" if package.is_ensemble else "single",
        }
        | ({"members": ",".join(m.architecture for m in members)} if members else {})
    )


def publish(
    store: Store, package_dir: Path, register: bool = True, extra_tags: dict[str, str] | None = None
) -> str:
    """Log `package_dir` as the active run's model and register it; returns the version ("" if not)."""
    package = read_config(package_dir)
    with warnings.catch_warnings():  # no input example: it would store a patient image in every model
        warnings.simplefilter("ignore", UserWarning)
        logged = mlflow.pyfunc.log_model(
            name="model",
            loader_module="pneumonia_zoo.package.pyfunc",
            data_path=str(package_dir),
            signature=PYFUNC_SIGNATURE,
            pip_requirements=[f"pneumonia-zoo=={pneumonia_zoo.__version__}"],
        )
    if not register:
        return ""
    run = mlflow.active_run()
    assert run is not None, "publish() logs into the active run"
    version = store.register(logged.model_id, run.info.run_id, version_tags(package) | (extra_tags or {}))
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
