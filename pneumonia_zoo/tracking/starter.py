"""The starter model: a champion shipped in the repository, so a fresh clone serves real predictions.

`models/starter/` holds a model package exactly like the one inside a registered version
(`model.json`, `weights.safetensors`, optional `model.onnx`) plus a `MODEL_CARD.md`.
`ensure_champion` registers it and makes it champion only when the registry has no champion;
`export_starter` builds that folder from a registered version.
"""

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from safetensors.torch import load_file, save_file

import pneumonia_zoo
from pneumonia_zoo.config import PROJECT_ROOT, get_settings
from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.tracking.experiment import log_and_register_package
from pneumonia_zoo.tracking.package import (
    CONFIG_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    PackageConfig,
    load_package,
    sha256_file,
)
from pneumonia_zoo.tracking.registry import list_versions, load_version
from pneumonia_zoo.tracking.store import connect, ensure_experiment
from pneumonia_zoo.training.config import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_STARTER_DIR = PROJECT_ROOT / "models" / "starter"
MODEL_CARD = "MODEL_CARD.md"
STARTER_TAG = "starter"
WEIGHTS_SHA_TAG = "weights_sha256"
PACKAGE_FILES = (CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE)


def _champion_version(name: str, alias: str) -> str | None:
    try:
        return str(connect().get_model_version_by_alias(name, alias).version)
    except MlflowException:  # no registered model, or no such alias
        return None


def ensure_champion(starter_dir: Path | str = DEFAULT_STARTER_DIR) -> str | None:
    """Make the starter model the champion if the registry has none; returns the champion version.

    Never moves an existing champion. A starter version already registered (same weights sha256)
    is reused rather than registered again. Returns None when no starter model is shipped.
    """
    starter_dir = Path(starter_dir)
    if not (starter_dir / CONFIG_FILE).is_file():
        log.warning("no starter model is shipped (no %s): nothing to register", starter_dir / CONFIG_FILE)
        return None
    settings = get_settings()
    name, alias = settings.registered_model_name, settings.champion_alias
    champion = _champion_version(name, alias)
    if champion is not None:
        return champion
    package = load_package(starter_dir)  # checks every sha256 before anything is logged
    weights_sha = package.config.files[WEIGHTS_FILE]
    existing = [
        v
        for v in list_versions(name)
        if v.tags.get(STARTER_TAG) == "true" and v.tags.get(WEIGHTS_SHA_TAG) == weights_sha
    ]
    if existing:
        version = str(existing[-1].version)
    else:
        version = _register_starter(starter_dir, package.config, weights_sha)
    connect().set_registered_model_alias(name, alias, version)
    log.info("starter model registered as %s version %s and made @%s", name, version, alias)
    return version


def _register_starter(starter_dir: Path, config: PackageConfig, weights_sha: str) -> str:
    ensure_experiment(get_settings().experiment_name)
    with tempfile.TemporaryDirectory() as tmp:
        package_dir = Path(tmp) / "package"  # the same layout as a trained version: data/package/
        package_dir.mkdir()
        for file_name in PACKAGE_FILES:
            if (starter_dir / file_name).is_file():
                shutil.copy2(starter_dir / file_name, package_dir / file_name)
        run_name = f"starter-{config.architecture}-{config.preprocessing.image_size}px"
        with mlflow.start_run(run_name=run_name):
            mlflow.set_tags(
                {
                    STARTER_TAG: "true",
                    "architecture": config.architecture,
                    "image_size": config.preprocessing.image_size,
                    "pretrained": config.info.get("pretrained", "unknown"),
                    "source_run_id": config.info.get("run_id", "unknown"),
                    "pneumonia_zoo_version": pneumonia_zoo.__version__,
                }
            )
            mlflow.log_metrics({k: float(v) for k, v in config.metrics.items() if math.isfinite(float(v))})
            if (starter_dir / MODEL_CARD).is_file():
                mlflow.log_artifact(str(starter_dir / MODEL_CARD))
            version = log_and_register_package(
                package_dir, extra_tags={STARTER_TAG: "true", WEIGHTS_SHA_TAG: weights_sha}
            )
            mlflow.set_tag("registered_version", version)
    return version


# --- export: a registered version -> models/starter/ ---------------------------------------------


@dataclass
class ExportResult:
    directory: Path
    weights_bytes: int
    total_bytes: int
    fp16: bool
    max_probability_change: float | None  # exported vs registered package on the check images


def _half_weights(source: Path, destination: Path) -> None:
    """Floating-point tensors to float16; integer buffers (BatchNorm counters) stay as they are."""
    state = load_file(str(source))
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(half, str(destination))


def export_starter(
    model_uri: str, out: Path, fp16: bool = False, check_images: list[Path] | None = None
) -> ExportResult:
    """Write a registered version's package (and a model card) to `out`; the result is verified.

    With `check_images`, both packages classify them and the largest change in a probability is
    reported (float16 weights should change nothing that matters; check the test metrics too).
    """
    resolved, package = load_version(model_uri)
    run = connect().get_run(package.config.info["run_id"]) if "run_id" in package.config.info else None
    out.mkdir(parents=True, exist_ok=True)
    for file_name in (*PACKAGE_FILES, MODEL_CARD):
        (out / file_name).unlink(missing_ok=True)
    source = package.directory
    if fp16:
        _half_weights(source / WEIGHTS_FILE, out / WEIGHTS_FILE)
    else:
        shutil.copy2(source / WEIGHTS_FILE, out / WEIGHTS_FILE)
    files = {WEIGHTS_FILE: sha256_file(out / WEIGHTS_FILE)}
    if package.onnx_path is not None:
        shutil.copy2(package.onnx_path, out / ONNX_FILE)  # as exported: float32, already verified
        files[ONNX_FILE] = sha256_file(out / ONNX_FILE)
    config = package.config
    config.files = files
    config.info = config.info | {
        "source_model": f"models:/{resolved.name}/{resolved.version}",
        "weights_dtype": "float16" if fp16 else "float32",
    }
    (out / CONFIG_FILE).write_text(config.to_json())
    exported = load_package(out)  # refuse to leave behind a package that does not load
    change = None
    if check_images:
        images = [read_image(path) for path in check_images]
        change = float(np.abs(exported.predict_proba(images) - package.predict_proba(images)).max())
    (out / MODEL_CARD).write_text(model_card(config, resolved.name, resolved.version, run, fp16))
    sizes = {f: (out / f).stat().st_size for f in (*files, CONFIG_FILE, MODEL_CARD)}
    return ExportResult(out, sizes[WEIGHTS_FILE], sum(sizes.values()), fp16, change)


# --- the model card ------------------------------------------------------------------------------


def _fmt(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    if value is None or not math.isfinite(value):
        return "n/a"
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    ci = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{value:.3f}{ci}"


def model_card(
    config: PackageConfig, name: str, version: str, run: mlflow.entities.Run | None, fp16: bool
) -> str:
    params = dict(run.data.params) if run else {}
    tags = dict(run.data.tags) if run else {}
    metrics = dict(run.data.metrics) if run else {}
    metrics |= config.metrics  # the package's own (final) values win
    train_config = TrainConfig.from_params(params)
    command = (
        train_config.train_command() if train_config else "# not recorded: the run logged no training params"
    )
    image_size = config.preprocessing.image_size

    def count(key: str) -> str:
        return params.get(key, "n/a")

    test_rows = "\n".join(
        f"| {label} | {_fmt(metrics, f'test_{key}')} |"
        for key, label in (
            ("accuracy", "accuracy"),
            ("sensitivity", "sensitivity (recall of PNEUMONIA)"),
            ("specificity", "specificity (recall of NORMAL)"),
            ("precision", "precision"),
            ("f1", "F1"),
            ("auc", "ROC AUC"),
        )
    )
    threshold_95 = config.threshold_sensitivity_95
    epochs_run = metrics.get("epochs_run")
    seconds = metrics.get("train_seconds")
    parameters = metrics.get("parameters")
    lines = [
        f"# Starter model: {config.architecture}, {image_size} px",
        "",
        "> **Research tool, not a diagnostic device.** Not validated for clinical use; never use it to",
        "> make or rule out a diagnosis.",
        "",
        f"Exported from `models:/{name}/{version}` (run `{config.info.get('run_id', 'n/a')}`, git commit "
        f"`{tags.get('git_commit', 'n/a')}`, pneumonia-zoo {tags.get('pneumonia_zoo_version', 'n/a')}) "
        f"on {datetime.now(UTC):%Y-%m-%d}. Weights are {'float16' if fp16 else 'float32'}"
        f"{' (loaded into a float32 network)' if fp16 else ''}; the ONNX export, when present, is the "
        "float32 one logged with the run.",
        "",
        "## Model",
        "",
        f"- Architecture `{config.architecture}`, "
        f"{f'{parameters / 1e6:.2f} M parameters' if parameters else 'parameter count n/a'}, "
        f"ImageNet-pretrained: {config.info.get('pretrained', 'n/a')}, layers frozen: "
        f"{config.info.get('freeze', 'n/a')}.",
        f"- Input: the image squashed to {image_size} x {image_size} RGB, normalised with mean "
        f"{list(config.preprocessing.mean)} and std {list(config.preprocessing.std)}.",
        f"- Output: P(NORMAL), P(PNEUMONIA); classes {list(config.class_names)}.",
        f"- Epochs run: {int(epochs_run) if epochs_run else 'n/a'} "
        f"(best epoch {int(metrics['best_epoch']) + 1 if 'best_epoch' in metrics else 'n/a'}) with "
        f"schedule `{params.get('schedule', config.info.get('schedule', 'n/a'))}`, lr "
        f"{params.get('lr', 'n/a')}, in {f'{seconds / 60:.1f} min' if seconds else 'n/a'}.",
        "",
        "## Data and split",
        "",
        "Kermany et al., *Chest X-Ray Images (Pneumonia)* (Kaggle `chest_xray/`, paediatric patients,",
        "Guangzhou Women and Children's Medical Center).",
        "",
        "| split | images | how |",
        "|---|---|---|",
        f"| train | {count('n_train')} | Kaggle train/ + val/, minus the validation patients |",
        f"| validation | {count('n_val')} | {params.get('val_fraction', 'n/a')} of train patients, "
        f"stratified, grouped by patient, seed {params.get('seed', 'n/a')} |",
        f"| test | {count('n_test')} | Kaggle's official test/, never used to choose anything |",
        "",
        f"Subsample (`--limit`): {params.get('limit', 'none')}.",
        "",
        "## Metrics",
        "",
        f"Validation ROC AUC {_fmt(metrics, 'val_auc')}, validation loss {_fmt(metrics, 'val_loss')}.",
        "",
        f"Test split at the decision threshold, with 95% bootstrap intervals "
        f"({params.get('bootstrap', 'n/a')} resamples):",
        "",
        "| metric | value [95% CI] |",
        "|---|---|",
        test_rows,
        "",
        "## Threshold",
        "",
        f"- Decision threshold on P(PNEUMONIA): **{config.threshold:.4f}**, chosen on validation "
        "(Youden's J). The service uses it.",
        f"- Threshold for 95% sensitivity on validation: "
        f"{f'{threshold_95:.4f}' if threshold_95 is not None else 'n/a'} (screening setting: fewer missed "
        "pneumonias, more false alarms).",
        "",
        "## Intended use and limits",
        "",
        "- Intended for research, teaching and demonstrating an MLOps pipeline on public data.",
        "- Not a medical device: not validated prospectively, on other hospitals, scanners, adults, or",
        "  other lung diseases. The data are paediatric anterior-posterior X-rays from one centre.",
        "- Labels are image-level (NORMAL vs PNEUMONIA, bacterial and viral together); it cannot",
        "  localise disease, and Grad-CAM maps are explanations of the network, not findings.",
        "- Intervals above come from one test set of one centre; performance elsewhere will differ.",
        "",
        "## Reproduce",
        "",
        "```bash",
        command,
        "```",
    ]
    lines += [
        "",
        f"then `pneumonia-zoo export-starter --model models:/{name}/VERSION --out models/starter"
        f"{' --fp16' if fp16 else ''}`. `--data` is the path on the machine that trained it.",
        "",
    ]
    return "\n".join(lines)
