"""`pneumonia-zoo`: train | sweep | evaluate | promote | predict | compare | register-starter |
export-starter | serve | ui.

Heavy imports (torch, mlflow) happen inside the commands so `--help` stays fast.
"""

import json
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from pneumonia_zoo.errors import UserError

app = typer.Typer(
    help="Pneumonia Zoo: train, track, compare and serve chest X-ray classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Options shared by `train` and `sweep`, declared once.
Arch = Annotated[
    str,
    typer.Option("--arch", "-a", help="vgg16, densenet201, alexnet, resnet50, efficientnet_lite0, small_cnn"),
]
Data = Annotated[
    Path, typer.Option("--data", "-d", help="Kaggle's chest_xray/ folder (train/, test/, optional val/)")
]
Epochs = Annotated[int, typer.Option(help="Maximum epochs (early stopping may end sooner).")]
ImageSize = Annotated[int, typer.Option("--image-size", help="Square input size; images are squashed to it.")]
BatchSize = Annotated[int, typer.Option("--batch-size")]
Limit = Annotated[
    int | None, typer.Option(help="Stratified subsample of N train images (and N test) for quick runs.")
]
Pretrained = Annotated[
    bool | None,
    typer.Option(
        "--pretrained/--no-pretrained", help="ImageNet weights (default: when the architecture has them)."
    ),
]
Freeze = Annotated[str, typer.Option(help="none | backbone (train only the head).")]
Seed = Annotated[int, typer.Option(help="Seeds the split, the initialisation and the batches.")]
Threads = Annotated[int | None, typer.Option(help="CPU threads for PyTorch (default: all cores).")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]
Onnx = Annotated[bool, typer.Option("--onnx/--no-onnx", help="Log an ONNX export beside the model.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ModelUri = Annotated[
    str | None,
    typer.Option("--model", "-m", help="models:/NAME@ALIAS or models:/NAME/VERSION (default: the champion)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _champion_uri(model: str | None) -> str:
    from pneumonia_zoo.config import get_settings

    settings = get_settings()
    return model or f"models:/{settings.registered_model_name}@{settings.champion_alias}"


@app.command()
def train(
    arch: Arch,
    data: Data,
    epochs: Epochs = 10,
    image_size: ImageSize = 224,
    batch_size: BatchSize = 16,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 1e-3,
    optimizer: Annotated[str, typer.Option(help="adamw | sgd")] = "adamw",
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 1e-4,
    schedule: Annotated[
        str,
        typer.Option(help="constant, step, staircase, exponential, natural_exp, polynomial, cosine, plateau"),
    ] = "cosine",
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs", help="Linear warm-up length.")] = 0.0,
    decay_rate: Annotated[float, typer.Option("--decay-rate")] = 0.5,
    decay_epochs: Annotated[float, typer.Option("--decay-epochs")] = 2.0,
    power: Annotated[float, typer.Option(help="Polynomial decay power.")] = 2.0,
    min_lr_ratio: Annotated[
        float, typer.Option("--min-lr-ratio", help="Floor of polynomial and cosine, as a share of --lr.")
    ] = 0.01,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    pretrained: Pretrained = None,
    freeze: Freeze = "none",
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of train patients held out for validation.")
    ] = 0.15,
    limit: Limit = None,
    seed: Seed = 42,
    class_weights: Annotated[
        bool,
        typer.Option(
            "--class-weights/--no-class-weights", help="Weight the loss by inverse class frequency."
        ),
    ] = False,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing")] = 0.0,
    augment: Annotated[bool, typer.Option("--augment/--no-augment")] = True,
    horizontal_flip: Annotated[
        bool,
        typer.Option("--hflip/--no-hflip", help="Random horizontal flips (off: anatomy is not symmetric)."),
    ] = False,
    patience: Annotated[int, typer.Option(help="Epochs without a better val AUC before stopping.")] = 5,
    max_minutes: Annotated[
        float | None,
        typer.Option("--max-minutes", help="Training-time budget: the epoch that crosses it is the last."),
    ] = None,
    threads: Threads = None,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last")] = True,
    device: Device = "auto",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for test confidence intervals.")] = 1000,
    onnx: Onnx = True,
    register_model: Annotated[
        bool, typer.Option("--register/--no-register", help="Register the model as a new version.")
    ] = True,
    run_name: Annotated[str | None, typer.Option("--run-name")] = None,
    quiet: Quiet = False,
) -> None:
    """Train one architecture, log everything to MLflow and register the model as a new version."""
    values = {k: v for k, v in locals().items() if k != "quiet"}
    from pneumonia_zoo.tracking.experiment import train as run_training
    from pneumonia_zoo.training.config import TrainConfig

    config = TrainConfig.build(**values)

    outcome = run_training(config, quiet=quiet)
    if outcome.status == "SKIPPED":
        return
    if outcome.status == "KILLED":
        typer.echo(f"interrupted: run {outcome.run_id} marked KILLED, no version registered", err=True)
        raise typer.Exit(130)
    metrics = outcome.metrics or {}
    summary = ", ".join(
        f"{k} {metrics[k]:.4f}" for k in ("val_auc", "test_auc", "test_accuracy") if k in metrics
    )
    typer.echo(f"run {outcome.run_id}: {summary}")
    if outcome.version:
        typer.echo(f"registered version {outcome.version}")


@app.command()
def sweep(
    arch: Arch,
    data: Data,
    schedules: Annotated[
        str, typer.Option(help="Comma-separated schedules.")
    ] = "step,staircase,exponential,natural_exp,polynomial,cosine",
    lrs: Annotated[str, typer.Option(help="Comma-separated base learning rates.")] = "1e-3",
    epochs: Epochs = 10,
    image_size: ImageSize = 224,
    batch_size: BatchSize = 16,
    pretrained: Pretrained = None,
    freeze: Freeze = "none",
    limit: Limit = None,
    seed: Seed = 42,
    threads: Threads = None,
    device: Device = "auto",
    onnx: Onnx = False,
    backend: Annotated[
        str, typer.Option(help="sequential | ray (trials in parallel on Ray: pip install .[ray]).")
    ] = "sequential",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option("--max-concurrent", help="Ray: at most N trials at once.")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """One nested MLflow run per schedule x learning rate, compared on the parent run."""
    from pneumonia_zoo.tracking.sweep import run_sweep
    from pneumonia_zoo.training.config import TrainConfig

    try:
        lr_values = [float(value) for value in lrs.split(",") if value.strip()]
    except ValueError:
        raise UserError(f"invalid --lrs '{lrs}': give numbers separated by commas") from None
    schedule_names = [s.strip() for s in schedules.split(",") if s.strip()]
    base = TrainConfig.build(
        arch=arch,
        data=data,
        epochs=epochs,
        image_size=image_size,
        batch_size=batch_size,
        pretrained=pretrained,
        freeze=freeze,
        limit=limit,
        seed=seed,
        threads=threads,
        device=device,
        onnx=onnx,
    )
    result = run_sweep(
        base,
        schedule_names,
        lr_values,
        quiet=quiet,
        backend=backend,
        address=address,
        max_concurrent=max_concurrent,
    )
    typer.echo(result.table.to_string(index=False))
    typer.echo(f"parent run {result.parent_run_id}; best run {result.best_run_id}")


@app.command()
def evaluate(
    data: Data,
    model: ModelUri = None,
    split: Annotated[
        str, typer.Option(help="train | val | test (val is rebuilt from the model's seed).")
    ] = "test",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for 95% intervals (0: none).")] = 1000,
    limit: Limit = None,
    as_json: AsJson = False,
) -> None:
    """Metrics of a registered model on a split, at the threshold stored with the model."""
    from pneumonia_zoo.tracking.assess import assess

    resolved, evaluation, unreadable = assess(_champion_uri(model), data, split, bootstrap, limit=limit)
    result = {
        "model": {"name": resolved.name, "version": resolved.version, "architecture": resolved.architecture},
        "split": split,
        "images": len(evaluation.labels),
        "unreadable": len(unreadable),
        "threshold": evaluation.threshold,
        "metrics": evaluation.metrics,
        "ci95": {k: list(v) for k, v in evaluation.intervals.items()},
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"{resolved.name} v{resolved.version} ({resolved.architecture}) on {split}: "
        f"{len(evaluation.labels)} images, threshold {evaluation.threshold:.3f}"
    )
    for name in ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc"):
        low, high = evaluation.intervals.get(name, (float("nan"), float("nan")))
        ci = f"  [{low:.4f}, {high:.4f}]" if name in evaluation.intervals else ""
        typer.echo(f"  {name:<12} {evaluation.metrics[name]:.4f}{ci}")
    m = evaluation.metrics
    typer.echo(f"  confusion    tn {m['tn']}  fp {m['fp']}  fn {m['fn']}  tp {m['tp']}")


@app.command()
def promote(
    name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to move.")] = None,
    metric: Annotated[str, typer.Option(help="Validation metric to rank by (higher is better).")] = "val_auc",
) -> None:
    """Move the champion alias to the version with the best validation metric."""
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.tracking.registry import promote as promote_best

    settings = get_settings()
    best = promote_best(name, alias, metric)
    typer.echo(
        f"{best.name} version {best.version} is now @{alias or settings.champion_alias} "
        f"({metric} {best.tags.get(metric)})"
    )


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="JPEG or PNG files.")],
    model: ModelUri = None,
    as_json: AsJson = False,
) -> None:
    """Classify X-ray images with a registered model (the champion by default)."""
    from pneumonia_zoo.data.images import ImageDecodeError, read_image
    from pneumonia_zoo.tracking.registry import load_version

    for path in images:
        if not path.is_file():
            raise UserError(f"{path} is not a file")
    resolved, package = load_version(_champion_uri(model))
    decoded = []
    for path in images:
        try:
            decoded.append(read_image(path))
        except ImageDecodeError as exc:
            raise UserError(f"{path}: {exc}") from None
    probs = package.predict_proba(decoded)
    names, threshold = package.config.class_names, package.config.threshold
    results = [
        {
            "file": str(path),
            "label": names[1] if p[1] >= threshold else names[0],
            "probabilities": {names[0]: float(p[0]), names[1]: float(p[1])},
            "threshold": threshold,
            "model": {
                "name": resolved.name,
                "version": resolved.version,
                "architecture": resolved.architecture,
            },
        }
        for path, p in zip(images, probs, strict=True)
    ]
    if as_json:
        typer.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        return
    for r in results:
        typer.echo(
            f"{r['file']}: {r['label']}  P(PNEUMONIA)={r['probabilities']['PNEUMONIA']:.4f} "
            f"threshold {threshold:.3f}  [{resolved.name} v{resolved.version}]"
        )


@app.command()
def compare(
    name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    out: Annotated[Path, typer.Option(help="Report folder (compare.md, compare.json, PNG charts).")] = Path(
        "reports/compare"
    ),
    latest_per_arch: Annotated[
        bool, typer.Option("--latest-per-arch", help="Only the newest version of each architecture.")
    ] = False,
    timing: Annotated[
        bool, typer.Option("--timing/--no-timing", help="Measure inference ms per image (batch 1).")
    ] = True,
    images: Annotated[
        Path | None, typer.Option(help="Folder of images to time on (default: sample_images/).")
    ] = None,
) -> None:
    """Side-by-side report of registered versions: metrics with 95% CIs, size, train and inference time."""
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.tracking.compare import compare as run_compare
    from pneumonia_zoo.tracking.compare import timing_images

    folder = images or get_settings().sample_images_dir
    if timing and not folder.is_dir():
        raise UserError(f"{folder} is not a folder of images to time on (or pass --no-timing)")
    result = run_compare(name, out, latest_per_arch, timing_images(folder) if timing else None)
    typer.echo(result.markdown)
    typer.echo(f"report written to {out / 'compare.md'}")


@app.command("register-starter")
def register_starter(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Starter package folder (default: models/starter).")
    ] = None,
) -> None:
    """Register the shipped starter model and make it champion, if the registry has no champion."""
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.tracking.starter import DEFAULT_STARTER_DIR, ensure_champion

    settings = get_settings()
    version = ensure_champion(directory or DEFAULT_STARTER_DIR)
    if version is not None:
        typer.echo(f"{settings.registered_model_name}@{settings.champion_alias} is version {version}")


@app.command("export-starter")
def export_starter(
    model: Annotated[str, typer.Option("--model", "-m", help="models:/NAME/VERSION (or @ALIAS) to export.")],
    out: Annotated[Path, typer.Option(help="Folder to write the package and MODEL_CARD.md to.")] = Path(
        "models/starter"
    ),
    fp16: Annotated[bool, typer.Option("--fp16", help="Store weights as float16 (half the size).")] = False,
) -> None:
    """Write a registered version as the starter model: its package plus a generated model card."""
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.tracking.compare import timing_images
    from pneumonia_zoo.tracking.starter import export_starter as run_export

    samples = get_settings().sample_images_dir
    check = timing_images(samples, count=8) if samples.is_dir() else None
    result = run_export(model, out, fp16, check)
    typer.echo(
        f"wrote {out}: weights {result.weights_bytes / 1e6:.1f} MB "
        f"({'float16' if result.fp16 else 'float32'}), {result.total_bytes / 1e6:.1f} MB in all"
    )
    if result.max_probability_change is not None:
        typer.echo(
            f"largest change in a probability on {len(check or [])} sample images: "
            f"{result.max_probability_change:.2e}"
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the champion: HTML pages and the JSON API (the app `uvicorn fastapiapp:app` serves)."""
    import uvicorn

    # The factory, not "fastapiapp:app": it works from any folder, not just the project root.
    uvicorn.run("pneumonia_zoo.serving.app:create_app", factory=True, host=host, port=port)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port for the MLflow UI.")] = 5000,
) -> None:
    """Open the MLflow UI on the same store (MLFLOW_TRACKING_URI)."""
    from pneumonia_zoo.tracking.store import local_artifact_root, tracking_uri

    uri = tracking_uri()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if root := local_artifact_root(uri):
        command += ["--default-artifact-root", root.as_uri()]
    os.execv(sys.executable, command)


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit code."""
    # MLflow's INFO lines (table creation, monitor start) and library deprecation notices drown
    # the CLI's own output; users can still ask for them with MLFLOW_LOGGING_LEVEL=INFO.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # A parent that ignores SIGINT (a `cmd &` in a script, nohup, pytest-xdist workers) passes that on,
    # and Python then never raises KeyboardInterrupt: `kill -INT` could not end a run cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for module in (r"mlflow(\..*)?", r"sqlalchemy(\..*)?", r"alembic(\..*)?"):
        warnings.filterwarnings("ignore", module=module)
    try:
        app()
    except UserError as exc:  # includes a refused (tampered or incomplete) model package
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
