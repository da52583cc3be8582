"""The training recipe, top to bottom: data, model, fit, evaluate, log, register.

Each stage is one function; `train` runs them in order. Only rank 0 talks to MLflow, and a
version is registered only after everything else succeeded, so a failed or interrupted run
never leaves a half-made version behind.
"""

import json
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

import pneumonia_zoo
from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.config import PROJECT_ROOT, get_settings
from pneumonia_zoo.data.cache import CachedDataset
from pneumonia_zoo.data.pipeline import PreparedData, prepare_data
from pneumonia_zoo.data.transforms import Preprocessing, build_augmentation
from pneumonia_zoo.tracking.package import CONFIG_FILE, ONNX_FILE, PackageConfig, save_package
from pneumonia_zoo.tracking.registry import VERSION_METRIC_TAGS, register_version
from pneumonia_zoo.tracking.store import ensure_experiment
from pneumonia_zoo.training import plots
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.device import Runtime, seed_everything, setup_runtime, teardown_runtime
from pneumonia_zoo.training.evaluate import eval_loader, evaluate_probs, evaluate_split
from pneumonia_zoo.training.loop import FitResult, fit
from pneumonia_zoo.training.metrics import choose_thresholds
from pneumonia_zoo.training.schedules import Scheduler
from pneumonia_zoo.zoo.registry import create_model, get_architecture

PYFUNC_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image")]),
    outputs=Schema([ColSpec("double", name) for name in CLASS_NAMES] + [ColSpec("string", "label")]),
)


@dataclass
class TrainOutcome:
    run_id: str | None
    status: str  # FINISHED, KILLED (Ctrl-C), or SKIPPED on non-zero ranks
    version: str | None = None
    metrics: dict[str, float] | None = None


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_loaders(
    config: TrainConfig, data: PreparedData, preprocessing: Preprocessing, runtime: Runtime
) -> tuple[DataLoader, DataLoader]:
    augment = build_augmentation(config.horizontal_flip) if config.augment else None
    train_set = CachedDataset(data.train, preprocessing, augment)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = (
        DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=config.seed)
        if runtime.distributed
        else None
    )
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        pin_memory=runtime.device.type == "cuda",
        drop_last=len(train_set) > config.batch_size,  # a batch of 1 breaks BatchNorm
    )
    return train_loader, eval_loader(data.val, preprocessing, config.batch_size)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def build_loss(config: TrainConfig, data: PreparedData, runtime: Runtime) -> nn.Module:
    weight = None
    if config.class_weights:  # inverse class frequency, so NORMAL counts as much as PNEUMONIA
        counts = torch.bincount(data.train.labels, minlength=len(CLASS_NAMES)).float().clamp(min=1)
        weight = (counts.sum() / (len(CLASS_NAMES) * counts)).to(runtime.device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def log_run_inputs(config: TrainConfig, data: PreparedData, pretrained: bool) -> None:
    mlflow.log_params({k: v for k, v in config.model_dump(mode="json").items() if v is not None})
    mlflow.set_tags(
        {
            "architecture": config.arch,
            "image_size": config.image_size,
            "pretrained": pretrained,
            "git_commit": git_commit(),
            "pneumonia_zoo_version": pneumonia_zoo.__version__,
        }
    )
    table = data.file_table()
    for split, rows in table.groupby("split"):
        mlflow.log_text(rows.to_csv(index=False), f"splits/{split}.csv")
    counts = {f"n_{split}": int((table["split"] == split).sum()) for split in data.splits()}
    mlflow.log_params(counts)
    with warnings.catch_warnings():  # a local folder matches two equivalent MLflow source types
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            table,
            source=str(Path(config.data).resolve()),
            name="chest_xray",
            targets="label",
            digest=data.digest(),
        )
    mlflow.log_input(dataset, context="training")
    unreadable = data.unreadable()
    mlflow.log_metric("unreadable_images", len(unreadable))
    if unreadable:
        mlflow.log_text("\n".join(f"{path}\t{why}" for path, why in unreadable), "data/unreadable.tsv")
    mlflow.log_text(config.model_dump_json(indent=2), "config.json")


def evaluate_and_log(
    config: TrainConfig,
    model: nn.Module,
    data: PreparedData,
    preprocessing: Preprocessing,
    runtime: Runtime,
    fit_result: FitResult,
) -> tuple[dict[str, float], float, float]:
    """Choose the threshold on validation, measure val and test, log metrics and figures."""
    val_loader = eval_loader(data.val, preprocessing, config.batch_size)
    val = evaluate_split("val", model, val_loader, runtime, 0.5, 0, config.channels_last)
    thresholds = choose_thresholds(val.labels, val.probs)
    val = evaluate_probs("val", val.labels, val.probs, val.loss, thresholds.youden)
    evaluations = [val]
    if data.test is not None:
        test_loader = eval_loader(data.test, preprocessing, config.batch_size)
        evaluations.append(
            evaluate_split(
                "test", model, test_loader, runtime, thresholds.youden, config.bootstrap, config.channels_last
            )
        )
    metrics: dict[str, float] = {
        "threshold": thresholds.youden,
        "threshold_sensitivity_95": thresholds.sensitivity_95,
        "best_epoch": float(fit_result.best_epoch),
        "epochs_run": float(len(fit_result.history)),
        "budget_exhausted": float(fit_result.budget_exhausted),
        "train_seconds": fit_result.seconds,
        "parameters": float(sum(p.numel() for p in model.parameters())),
    }
    for evaluation in evaluations:
        metrics |= evaluation.flat_metrics()
        mlflow.log_text(evaluation.report(), f"reports/{evaluation.name}_classification_report.txt")
        mlflow.log_figure(plots.confusion_figure(evaluation), f"plots/{evaluation.name}_confusion_matrix.png")
        mlflow.log_figure(plots.roc_pr_figure(evaluation), f"plots/{evaluation.name}_roc_pr.png")
    # Final values go one step after the last epoch, so each curve ends on the restored best model.
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)}, step=len(fit_result.history))
    if fit_result.history:
        mlflow.log_figure(plots.history_figure(fit_result.history), "plots/curves.png")
        mlflow.log_figure(plots.lr_figure(fit_result.history), "plots/learning_rate.png")
    if data.test is not None:
        names = [s.path.name for s in data.test.samples]
        mlflow.log_figure(
            plots.misclassified_figure(evaluations[-1], data.test.pixels, names),
            "plots/test_misclassified.png",
        )
    plots.plt.close("all")
    return metrics, thresholds.youden, thresholds.sensitivity_95


def log_and_register(
    config: TrainConfig,
    model: nn.Module,
    preprocessing: Preprocessing,
    metrics: dict[str, float],
    threshold: float,
    threshold_95: float,
    pretrained: bool,
    run_id: str,
) -> str:
    """Package the model, log it as a pyfunc beside its ONNX export, register a version."""
    info = {
        "pretrained": str(pretrained),
        "epochs": str(config.epochs),
        "run_id": run_id,
        "freeze": config.freeze,
        "schedule": config.schedule,
        "seed": str(config.seed),
        "val_fraction": str(config.val_fraction),
        "limit": str(config.limit),
    }
    package_config = PackageConfig(
        architecture=config.arch,
        preprocessing=preprocessing,
        threshold=threshold,
        threshold_sensitivity_95=threshold_95,
        metrics={k: float(v) for k, v in metrics.items() if np.isfinite(v)},
        info=info,
    )
    with tempfile.TemporaryDirectory() as tmp:
        package_dir = Path(tmp) / "package"
        save_package(model, package_config, package_dir, with_onnx=config.onnx)
        return log_and_register_package(package_dir, register=config.register_model)


def version_tags(package: PackageConfig) -> dict[str, str]:
    """The tags every registered version carries, all derived from its package's `model.json`."""
    tags = {
        key: f"{package.metrics[key]:.6f}"
        for key in VERSION_METRIC_TAGS
        if key in package.metrics and np.isfinite(package.metrics[key])
    }
    return tags | {
        "architecture": package.architecture,
        "image_size": str(package.preprocessing.image_size),
        "threshold": f"{package.threshold:.6f}",
        "pretrained": package.info.get("pretrained", "unknown"),
        "onnx": str(ONNX_FILE in package.files),
    }


def log_and_register_package(
    package_dir: Path, register: bool = True, extra_tags: dict[str, str] | None = None
) -> str:
    """Log a saved model package as the active run's pyfunc model, then register it as a new version.

    Shared by training and the starter model. Returns the new version ("" when `register` is off).
    """
    package = PackageConfig.from_json((package_dir / CONFIG_FILE).read_text())
    with warnings.catch_warnings():  # no input example: it would store a patient image in every model
        warnings.simplefilter("ignore", UserWarning)
        logged = mlflow.pyfunc.log_model(
            name="model",
            loader_module="pneumonia_zoo.tracking.pyfunc",
            data_path=str(package_dir),
            signature=PYFUNC_SIGNATURE,
            pip_requirements=[f"pneumonia-zoo=={pneumonia_zoo.__version__}"],
        )
    if not register:
        return ""
    version = register_version(logged.model_uri, version_tags(package) | (extra_tags or {}))
    return str(version.version)


def train(config: TrainConfig, quiet: bool = False, parent_run_id: str | None = None) -> TrainOutcome:
    """Run one training recipe end to end. Raises UserError for bad input before any run starts.

    `parent_run_id` nests the run under a parent that is not active in this process (a sweep
    trial running in another process, e.g. on Ray).
    """
    runtime = setup_runtime(config.device, config.threads)
    try:
        return _train(config, runtime, quiet, parent_run_id)
    finally:
        teardown_runtime(runtime)


def _train(config: TrainConfig, runtime: Runtime, quiet: bool, parent_run_id: str | None) -> TrainOutcome:
    seed_everything(config.seed)
    arch = get_architecture(config.arch)
    preprocessing = Preprocessing(config.image_size, arch.mean, arch.std)
    # Model and data first: a bad path or missing weights fail before any MLflow run exists.
    model = create_model(config.arch, config.pretrained, config.freeze)
    pretrained = arch.has_pretrained if config.pretrained is None else config.pretrained
    data = prepare_data(
        config.data,
        preprocessing,
        config.val_fraction,
        config.seed,
        config.limit,
        quiet=quiet or not runtime.is_main,
    )
    model = model.to(runtime.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = DistributedDataParallel(model) if runtime.distributed else model
    train_loader, val_loader = build_loaders(config, data, preprocessing, runtime)
    optimizer = build_optimizer(config, model)
    scheduler = Scheduler(config.schedule, optimizer, config.schedule_params(), len(train_loader))
    loss_fn = build_loss(config, data, runtime)

    run_fit = partial(
        fit, trained, train_loader, val_loader, optimizer, scheduler, loss_fn, runtime,
        config.epochs, config.patience, config.channels_last, max_minutes=config.max_minutes,
    )  # fmt: skip
    if not runtime.is_main:
        run_fit()
        return TrainOutcome(None, "SKIPPED")

    ensure_experiment(get_settings().experiment_name)
    run_name = config.run_name or f"{config.arch}-{config.schedule}-{config.image_size}px"
    with mlflow.start_run(
        run_name=run_name,
        log_system_metrics=True,
        nested=mlflow.active_run() is not None,
        parent_run_id=parent_run_id,
    ) as run:
        log_run_inputs(config, data, pretrained)
        fit_result = run_fit(on_epoch=lambda epoch, values: mlflow.log_metrics(values, step=epoch))
        if fit_result.interrupted:
            mlflow.set_tag("interrupted", "true")
            if fit_result.history:
                mlflow.log_figure(plots.history_figure(fit_result.history), "plots/curves.png")
            mlflow.end_run(status="KILLED")
            return TrainOutcome(run.info.run_id, "KILLED")
        metrics, threshold, threshold_95 = evaluate_and_log(
            config, model, data, preprocessing, runtime, fit_result
        )
        mlflow.log_text(json.dumps(fit_result.history, indent=1), "history.json")
        version = log_and_register(
            config, model, preprocessing, metrics, threshold, threshold_95, pretrained, run.info.run_id
        )
        if version:
            mlflow.set_tag("registered_version", version)
    return TrainOutcome(run.info.run_id, "FINISHED", version or None, metrics)
