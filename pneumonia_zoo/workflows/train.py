"""The training recipe, top to bottom: data, model, fit, calibrate, package, evaluate, log, register.

Each stage is one function; `train` runs them in order. Only rank 0 talks to MLflow, and a version
is registered only after everything else succeeded, so a failed or interrupted run never leaves a
half-made version behind. The metrics logged are those of the package as it ships (its own
preprocessing, calibration and runtime), measured by the same code as `pneumonia-zoo evaluate`.
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
from mlflow.data.pandas_dataset import from_pandas
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import pneumonia_zoo
from pneumonia_zoo.data.pipeline import PreparedData, prepare_data
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.evaluation import plots as evaluation_plots
from pneumonia_zoo.evaluation.predict import predict_images
from pneumonia_zoo.evaluation.report import Evaluation, evaluate
from pneumonia_zoo.evaluation.robustness import robustness_metrics
from pneumonia_zoo.package.build import write_single
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.package.format import PackageConfig, PackageInfo, ReferenceDistributions
from pneumonia_zoo.package.io import guard_config, record_files
from pneumonia_zoo.resources import PACKAGE_ROOT
from pneumonia_zoo.tracking.cards import log_model_card
from pneumonia_zoo.tracking.publish import publish
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.training import plots
from pneumonia_zoo.training.calibrate import Calibration, calibrate
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.device import Runtime, seed_everything, setup_runtime, teardown_runtime
from pneumonia_zoo.training.factories import create_loaders, create_loss, create_optimizer
from pneumonia_zoo.training.loop import FitResult, fit
from pneumonia_zoo.training.mixup import create_mixup
from pneumonia_zoo.training.progressive import epoch_sizes
from pneumonia_zoo.training.schedules import Scheduler
from pneumonia_zoo.zoo.architectures import get_architecture, resolve_pretrained
from pneumonia_zoo.zoo.factory import create_model


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
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_run_inputs(config: TrainConfig, data: PreparedData, pretrained: bool, runtime: Runtime) -> None:
    mlflow.log_params({k: v for k, v in config.flat().items() if v is not None})
    mlflow.set_tags(
        {
            "architecture": config.arch,
            "image_size": config.image_size,
            "pretrained": pretrained,
            "git_commit": git_commit(),
            "pneumonia_zoo_version": pneumonia_zoo.__version__,
        }
        | runtime.tags()  # device (cpu or cuda), device_name (the GPU's), autocast, world_size
    )
    table = data.file_table()
    for split, rows in table.groupby("split"):
        mlflow.log_text(rows.to_csv(index=False), f"splits/{split}.csv")
    mlflow.log_params({f"n_{split}": int((table["split"] == split).sum()) for split in data.splits()})
    with warnings.catch_warnings():  # a local folder matches two equivalent MLflow source types
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(
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


def build_package(
    config: TrainConfig,
    model: nn.Module,
    preprocessing: Preprocessing,
    calibration: Calibration,
    pretrained: bool,
    run_id: str,
    directory: Path,
) -> PackageConfig:
    info = PackageInfo(
        pretrained=pretrained,
        epochs=config.epochs,
        run_id=run_id,
        freeze=config.freeze,
        schedule=config.schedule,
        seed=config.seed,
        val_fraction=config.val_fraction,
        val_split=config.val_split,
        limit=config.limit,
        prior=round(calibration.prior, 6),
    )
    package = PackageConfig(
        architecture=config.arch,
        preprocessing=preprocessing,
        temperature=calibration.temperature,
        logit_bias=calibration.bias,
        operating_points=calibration.operating_points,
        guard=guard_config(calibration.guard, config.guard_flag_rate),
        info=info,
    )
    return write_single(model, package, directory, calibration.guard, config.onnx, config.float16)


def evaluate_package(
    config: TrainConfig, package_dir: Path, data: PreparedData, fit_result: FitResult, device: str = "cpu"
) -> tuple[dict[str, float], list[Evaluation]]:
    """Val and test metrics, calibration, flag rates and robustness of the package as written.

    On a GPU the PyTorch runtime runs there (the several thousand forward passes of the robustness
    checks would otherwise take minutes of CPU per network); an ONNX export still runs on ONNX Runtime."""
    classifier = load_classifier(package_dir, device=device)
    evaluations = [evaluate("val", predict_images(classifier, data.val), classifier.config, bootstrap=0)]
    if data.test is not None:
        test = predict_images(classifier, data.test)
        evaluations.append(evaluate("test", test, classifier.config, bootstrap=config.bootstrap))
    metrics: dict[str, float] = {
        "threshold": classifier.config.threshold,
        "temperature": classifier.config.temperature,
        "logit_bias": classifier.config.logit_bias,
        "best_epoch": float(fit_result.best_epoch),
        "epochs_run": float(len(fit_result.history)),
        "budget_exhausted": float(fit_result.budget_exhausted),
        "train_seconds": fit_result.seconds,
        "parameters": float(sum(p.numel() for p in classifier.members[0].network.parameters())),
    }
    metrics |= {
        f"threshold_{name}": point.threshold for name, point in classifier.config.operating_points.items()
    }
    # The kept weights' validation loss (promote's tie-break): the SWA average's, else the best epoch's.
    if fit_result.averaged:
        metrics |= {f"swa_{name}": value for name, value in fit_result.averaged.items()}
        metrics |= {"swa_epochs_run": float(fit_result.swa_epochs_run), "val_loss": metrics["swa_val_loss"]}
    elif fit_result.history and fit_result.best_epoch >= 0:
        metrics["val_loss"] = float(fit_result.history[fit_result.best_epoch]["val_loss"])
    for evaluation in evaluations:
        metrics |= evaluation.flat_metrics()
    originals = config.originals_folder()
    copies = Path(config.data) / "train" if originals is not None else None
    metrics |= robustness_metrics(classifier, data.test, originals, copies)
    return metrics, evaluations


def reference_of(validation: Evaluation) -> ReferenceDistributions:
    """The package's validation P and guard scores as served: the monitor's drift reference."""
    return ReferenceDistributions.from_scores(validation.predictions.probs, validation.predictions.ood_scores)


def log_evaluations(evaluations: list[Evaluation], data: PreparedData) -> None:
    for evaluation in evaluations:
        name = evaluation.name
        mlflow.log_text(evaluation.report(), f"reports/{name}_classification_report.txt")
        mlflow.log_dict(evaluation.to_dict(), f"reports/{name}_evaluation.json")
        mlflow.log_figure(evaluation_plots.confusion_figure(evaluation), f"plots/{name}_confusion_matrix.png")
        mlflow.log_figure(evaluation_plots.roc_pr_figure(evaluation), f"plots/{name}_roc_pr.png")
        mlflow.log_figure(evaluation_plots.reliability_figure(evaluation), f"plots/{name}_reliability.png")
    if data.test is not None and evaluations[-1].name == "test":
        pixels = data.test.pixels.numpy()
        mlflow.log_figure(
            evaluation_plots.misclassified_figure(evaluations[-1], pixels), "plots/test_misclassified.png"
        )
    evaluation_plots.plt.close("all")


def train(
    config: TrainConfig, store: Store, quiet: bool = False, parent_run_id: str | None = None
) -> TrainOutcome:
    """Run one training recipe end to end. Raises UserError for bad input before any run starts.

    `parent_run_id` nests the run under a parent that is not active in this process (a sweep
    trial running in another process, e.g. on Ray).
    """
    runtime = setup_runtime(config.device, config.threads, config.autocast)
    try:
        return _train(config, store, runtime, quiet, parent_run_id)
    finally:
        teardown_runtime(runtime)


def _train(
    config: TrainConfig, store: Store, runtime: Runtime, quiet: bool, parent_run_id: str | None
) -> TrainOutcome:
    seed_everything(config.training_seed)
    arch = get_architecture(config.arch)
    preprocessing = Preprocessing(config.image_size, arch.mean, arch.std, config.input_jpeg_quality or None)
    # Model and data first: a bad path or missing weights fail before any MLflow run exists.
    model = create_model(config.arch, config.pretrained, config.freeze)
    pretrained = resolve_pretrained(config.arch, config.pretrained)
    if config.probe_epochs and runtime.distributed:
        raise UserError("--probe-epochs runs in one process: DDP fixes which layers train when it starts")
    data = prepare_data(
        config.data,
        preprocessing,
        config.val_fraction,
        config.seed,
        config.limit,
        quiet=quiet or not runtime.is_main,
        val_split=config.val_split,
    )
    model = model.to(runtime.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = DistributedDataParallel(model) if runtime.distributed else model
    train_loader, val_loader = create_loaders(config, data, preprocessing, runtime)
    optimizer = create_optimizer(config, model)
    scheduler = Scheduler(config.schedule, optimizer, config.schedule_params(), len(train_loader))
    loss_fn = create_loss(config, data.train.labels, runtime.device)

    run_fit = partial(
        fit,
        trained,
        train_loader,
        val_loader,
        optimizer,
        scheduler,
        loss_fn,
        runtime,
        config.epochs,
        config.patience,
        config.channels_last,
        max_minutes=config.max_minutes,
        quiet=quiet,
        mixup=create_mixup(config.mixup_alpha, config.training_seed + runtime.rank),
        ema_decay=config.ema_decay,
        swa_epochs=config.swa_epochs,
        swa_lr_ratio=config.swa_lr_ratio,
        input_sizes=epoch_sizes(config.progressive_start_size, config.image_size, config.epochs),
        probe_epochs=config.probe_epochs,
        head=arch.head,
    )
    if not runtime.is_main:
        run_fit()
        return TrainOutcome(None, "SKIPPED")

    store.activate()
    run_name = config.run_name or f"{config.arch}-{config.schedule}-{config.image_size}px"
    with mlflow.start_run(
        run_name=run_name,
        log_system_metrics=True,
        nested=mlflow.active_run() is not None,
        parent_run_id=parent_run_id,
    ) as run:
        log_run_inputs(config, data, pretrained, runtime)

        def log_epoch(epoch: int, values: dict[str, float]) -> None:
            mlflow.log_metrics(values, step=epoch)

        fit_result = run_fit(on_epoch=log_epoch)
        if fit_result.history:
            mlflow.log_figure(
                plots.history_figure(fit_result.history, fit_result.averaged, fit_result.swa_epochs_run),
                "plots/curves.png",
            )
            mlflow.log_figure(plots.lr_figure(fit_result.history), "plots/learning_rate.png")
            mlflow.log_text(json.dumps(fit_result.history, indent=1), "history.json")
        if fit_result.interrupted:
            mlflow.set_tag("interrupted", "true")
            mlflow.end_run(status="KILLED")
            return TrainOutcome(run.info.run_id, "KILLED")
        model = model.to(memory_format=torch.contiguous_format)
        calibration = calibrate(
            model,
            arch,
            data,
            preprocessing,
            runtime,
            config.batch_size,
            config.guard_flag_rate,
            config.channels_last,
            config.calibration,
        )
        with tempfile.TemporaryDirectory() as tmp:
            package_dir = Path(tmp) / "package"
            package = build_package(
                config, model.cpu(), preprocessing, calibration, pretrained, run.info.run_id, package_dir
            )
            metrics, evaluations = evaluate_package(
                config, package_dir, data, fit_result, str(runtime.device)
            )
            package.metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
            package.reference = reference_of(evaluations[0])  # live drift is measured against it
            record_files(package_dir, package)  # model.json now carries the metrics the package earned
            # Final values go one step after the last epoch, so each curve ends on the restored best model.
            mlflow.log_metrics(package.metrics, step=len(fit_result.history))
            log_evaluations(evaluations, data)
            where = runtime.tags()
            version = publish(
                store,
                package_dir,
                register=config.register_model,
                extra_tags={key: where[key] for key in ("device", "device_name", "autocast")},
            )
        if version:
            log_model_card(store, version)
    return TrainOutcome(run.info.run_id, "FINISHED", version or None, package.metrics)
