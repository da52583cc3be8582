"""`pneumonia-zoo`: train | sweep | ensemble | evaluate | promote | predict | compare | card |
register-starter | export-starter | backfill-guard | serve | ui.

Options are validated before torch or MLflow are imported (they load inside the commands), so a typo
is refused at once and `--help` is fast. `train` and `sweep` take their options from TrainConfig.
"""

import json
import math
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pneumonia_zoo.cli_options import extra_option, options_signature
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig, option_fields

if TYPE_CHECKING:
    from pneumonia_zoo.tracking.store import Store

app = typer.Typer(
    help="Pneumonia Zoo: train, track, compare and serve chest X-ray classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelUri = Annotated[
    str | None,
    typer.Option("--model", "-m", help="models:/NAME@ALIAS or models:/NAME/VERSION (default: the champion)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
OperatingPoint = Annotated[
    str | None,
    typer.Option("--operating-point", help="A named operating point of the model (default: its own)."),
]
QUIET = extra_option("quiet", bool, False, "--quiet", "-q", help="No progress bars or epoch lines.")


def _store() -> "Store":
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.tracking.store import Store

    return Store(get_settings())


def _champion_uri(model: str | None) -> str:
    from pneumonia_zoo.config import get_settings

    settings = get_settings()
    return model or f"models:/{settings.registered_model_name}@{settings.champion_alias}"


def _check_data(config: TrainConfig) -> None:
    if not Path(config.data).is_dir():
        raise UserError(f"data folder {config.data} does not exist")


# -- train and sweep: every option comes from TrainConfig ---------------------------------------------

TRAIN_FIELDS = list(option_fields().values())


@app.command()
@options_signature(TRAIN_FIELDS, [QUIET])
def train(**values: Any) -> None:
    """Train one architecture, log everything to MLflow and register the model as a new version."""
    quiet = values.pop("quiet")
    config = TrainConfig.from_flat(values)
    _check_data(config)
    from pneumonia_zoo.workflows.train import train as run_training

    outcome = run_training(config, _store(), quiet=quiet)
    if outcome.status == "SKIPPED":
        return
    if outcome.status == "KILLED":
        typer.echo(f"interrupted: run {outcome.run_id} marked KILLED, no version registered", err=True)
        raise typer.Exit(130)
    metrics = outcome.metrics or {}
    summary = ", ".join(
        f"{k} {metrics[k]:.4f}" for k in ("val_auc", "test_auc", "test_accuracy", "test_ece") if k in metrics
    )
    typer.echo(f"run {outcome.run_id}: {summary}")
    if outcome.version:
        typer.echo(f"registered version {outcome.version}")


SWEEP_FIELDS = [f for f in TRAIN_FIELDS if f.name not in ("schedule", "lr", "run_name")]


@app.command()
@options_signature(
    SWEEP_FIELDS,
    [
        extra_option(
            "schedules",
            str,
            "step,staircase,exponential,natural_exp,polynomial,cosine",
            "--schedules",
            help="Comma-separated schedules.",
            rich_help_panel="Sweep",
        ),
        extra_option(
            "lrs", str, "1e-3", "--lrs", help="Comma-separated base learning rates.", rich_help_panel="Sweep"
        ),
        extra_option(
            "backend",
            str,
            "sequential",
            "--backend",
            help="sequential | ray (trials in parallel on Ray: pip install .[ray]).",
            rich_help_panel="Sweep",
        ),
        extra_option(
            "address",
            str | None,
            None,
            "--address",
            help="Ray cluster address (default: a local Ray).",
            rich_help_panel="Sweep",
        ),
        extra_option(
            "max_concurrent",
            int | None,
            None,
            "--max-concurrent",
            help="Ray: at most N trials at once.",
            rich_help_panel="Sweep",
        ),
        QUIET,
    ],
    defaults={"onnx": False},
)
def sweep(**values: Any) -> None:
    """One nested MLflow run per schedule x learning rate, compared on the parent run."""
    quiet, schedules, lrs = values.pop("quiet"), values.pop("schedules"), values.pop("lrs")
    backend, address, max_concurrent = (
        values.pop("backend"),
        values.pop("address"),
        values.pop("max_concurrent"),
    )
    try:
        lr_values = [float(value) for value in lrs.split(",") if value.strip()]
    except ValueError:
        raise UserError(f"invalid --lrs '{lrs}': give numbers separated by commas") from None
    schedule_names = [s.strip() for s in schedules.split(",") if s.strip()]
    base = TrainConfig.from_flat(values)
    _check_data(base)
    from pneumonia_zoo.workflows.sweep import run_sweep

    result = run_sweep(
        base,
        _store(),
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
def ensemble(
    members: Annotated[
        list[str],
        typer.Option("--member", help="A registered version (models:/NAME/VERSION); give two or more."),
    ],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="The chest_xray/ folder the members were trained on.")
    ],
    tta: Annotated[
        list[str] | None,
        typer.Option(
            "--tta", help="Test-time views to average: identity, zoom_in (repeat the option; default none)."
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples (patients) for test intervals.")] = 1000,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register it as a new version.")
    ] = True,
    run_name: Annotated[str | None, typer.Option("--run-name")] = None,
    quiet: Quiet = False,
) -> None:
    """Register an ensemble of registered versions: the average of their calibrated probabilities."""
    if not data.is_dir():
        raise UserError(f"data folder {data} does not exist")
    from pneumonia_zoo.workflows.ensemble import build_ensemble

    outcome = build_ensemble(_store(), members, data, tta, bootstrap, register, run_name, quiet)
    summary = ", ".join(
        f"{k} {outcome.metrics[k]:.4f}"
        for k in ("val_auc", "test_auc", "test_accuracy")
        if k in outcome.metrics
    )
    typer.echo(f"run {outcome.run_id}: {summary}")
    if outcome.version:
        typer.echo(f"registered version {outcome.version}")


@app.command()
def evaluate(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="Kaggle's chest_xray/ (with --split), or a folder holding NORMAL/ and PNEUMONIA/ directly.",
        ),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="A CSV with columns path,label[,patient] instead of --data.")
    ] = None,
    model: ModelUri = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="train | val | test (Kaggle folders only; default test; val "
            "is rebuilt from the model's seed)."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples (patients) for 95% intervals (0: none).")
    ] = 1000,
    limit: Annotated[int | None, typer.Option(help="Stratified subsample of N images.")] = None,
    operating_point: OperatingPoint = None,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness/--no-robustness",
            help="On the Kaggle test split: JPEG/resize agreement and full-resolution originals.",
        ),
    ] = True,
    log: Annotated[
        bool, typer.Option("--log", help="Record the evaluation against the version in MLflow.")
    ] = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Metrics of a registered model with patient-level intervals, calibration and the flag rate."""
    for path in (data, manifest):
        if path is not None and not path.exists():
            raise UserError(f"{path} does not exist")
    from pneumonia_zoo.workflows.evaluate import log_evaluation, run_evaluation

    store = _store()
    result = run_evaluation(
        store,
        _champion_uri(model),
        data,
        manifest,
        split,
        bootstrap,
        limit,
        operating_point,
        robustness,
        quiet or as_json,
    )
    output = result.to_dict()
    if log:
        output["logged_run"] = log_evaluation(store, result)
    if as_json:
        typer.echo(json.dumps(_finite_or_null(output), indent=2, default=float, allow_nan=False))
        return
    _print_evaluation(output)


def _finite_or_null(value: Any) -> Any:
    """NaN (an undefined metric: specificity without NORMAL images) is not JSON; null is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(item) for item in value]
    return value


def _print_evaluation(result: dict) -> None:
    model, data, point = result["model"], result["data"], result["operating_point"]
    typer.echo(
        f"{model['name']} v{model['version']} ({model['architecture']}) on {data['source']} "
        f"({data['context']}): "
        f"{data['images']} images of {data['patients']} patients; operating point {point['name']} "
        f"(threshold {point['threshold']:.3f})"
    )
    for name in ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc"):
        low, high = result["ci95"].get(name, (None, None))
        ci = f"  [{low:.4f}, {high:.4f}]" if low is not None and low == low else ""
        value = result["metrics"][name]
        typer.echo(f"  {name:<12} {value:.4f}{ci}" if value == value else f"  {name:<12} n/a")
    m, cal = result["metrics"], result["calibration"]
    typer.echo(f"  confusion    tn {m['tn']}  fp {m['fp']}  fn {m['fn']}  tp {m['tp']}")
    typer.echo(f"  calibration  ECE {cal['ece']:.4f}  Brier {cal['brier']:.4f}")
    typer.echo(f"  flagged      {result['out_of_population']['flag_rate']:.1%} out of population")
    for key, value in result.get("robustness", {}).items():
        if key.endswith(("_agreement", "_mean_dp")):
            typer.echo(f"  {key:<34} {value:.4f}")
    if "logged_run" in result:
        typer.echo(f"logged as run {result['logged_run']}")


@app.command()
def promote(
    metric: Annotated[str, typer.Option(help="Validation metric to rank by (higher is better).")] = "val_auc",
    alias: Annotated[str | None, typer.Option(help="Alias to move (default: the champion alias).")] = None,
) -> None:
    """Move the champion alias to the version with the best validation metric."""
    store = _store()
    best = store.promote(metric, alias)
    typer.echo(
        f"{store.model_name} version {best.version} is now @{alias or store.settings.champion_alias} "
        f"({metric} {best.metric(metric):.6f})"
    )


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="JPEG, PNG or DICOM files.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="models:/NAME@ALIAS, models:/NAME/VERSION, "
            "or a model package folder (default: the champion).",
        ),
    ] = None,
    operating_point: OperatingPoint = None,
    runtime: Annotated[str, typer.Option(help="auto | onnx | torch")] = "auto",
    as_json: AsJson = False,
) -> None:
    """Classify X-ray images with a registered model (the champion by default) or a package folder."""
    import time

    for path in images:
        if not path.is_file():
            raise UserError(f"{path} is not a file")
    if runtime not in ("auto", "onnx", "torch"):
        raise UserError(f"unknown --runtime '{runtime}': choose auto, onnx or torch")
    from pneumonia_zoo.data.images import ImageDecodeError, read_image
    from pneumonia_zoo.package.classifier import load_classifier
    from pneumonia_zoo.package.prediction import ModelInfo, prediction_record

    if model is not None and not model.startswith("models:/"):
        classifier = load_classifier(Path(model), runtime)
        info = ModelInfo(Path(model).name, "local", classifier.config.architecture, classifier.runtime)
    else:
        resolved, classifier = _store().load(_champion_uri(model), runtime)
        info = ModelInfo(resolved.name, resolved.version, classifier.config.architecture, classifier.runtime)
    classifier.config.operating_point(operating_point)  # an unknown name fails before any decoding
    started = time.perf_counter()
    decoded = []
    for path in images:
        try:
            decoded.append(read_image(path, min_side=classifier.input_size))
        except ImageDecodeError as exc:
            raise UserError(f"{path}: {exc}") from None
    scores = classifier.predict(decoded)
    latency = (time.perf_counter() - started) * 1000 / len(images)
    results = [
        prediction_record(classifier.config, scores, row, info, operating_point, str(path), latency)
        for row, path in enumerate(images)
    ]
    if as_json:
        typer.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        return
    for r in results:
        flag = (
            "  OUT OF POPULATION: " + "; ".join(r["out_of_population"]["reasons"])
            if r["out_of_population"]["flagged"]
            else ""
        )
        unsure = " (uncertain)" if r["uncertain"] else ""
        typer.echo(
            f"{r['filename']}: {r['label']}{unsure}  P(PNEUMONIA)={r['probabilities']['PNEUMONIA']:.4f} "
            f"{r['operating_point']['name']} threshold {r['threshold']:.3f}  "
            f"[{info.name} v{info.version}]{flag}"
        )


@app.command()
def compare(
    out: Annotated[Path, typer.Option(help="Report folder (compare.md, compare.json, PNG charts).")] = Path(
        "reports/compare"
    ),
    latest_per_arch: Annotated[
        bool, typer.Option("--latest-per-arch", help="Only the newest version of each architecture.")
    ] = False,
    timing: Annotated[
        bool, typer.Option("--timing/--no-timing", help="Measure ms per image (batch 1).")
    ] = True,
    images: Annotated[
        Path | None, typer.Option(help="Folder of images to time on (default: the samples).")
    ] = None,
) -> None:
    """Side-by-side report of registered versions: metrics with 95% CIs, size, train and inference time."""
    from pneumonia_zoo.config import get_settings

    folder = images or get_settings().sample_images_dir
    if timing and not folder.is_dir():
        raise UserError(f"{folder} is not a folder of images to time on (or pass --no-timing)")
    from pneumonia_zoo.workflows.compare import compare as run_compare
    from pneumonia_zoo.workflows.compare import timing_images

    result = run_compare(_store(), out, latest_per_arch, timing_images(folder) if timing else None)
    typer.echo(result.markdown)
    typer.echo(f"report written to {out / 'compare.md'}")


@app.command()
def card(
    model: ModelUri = None,
    log: Annotated[
        bool, typer.Option("--log", help="Also log it to the version's run (model_card.md).")
    ] = False,
) -> None:
    """Print the model card of a registered version (rendered from the registry)."""
    from pneumonia_zoo.tracking.cards import log_model_card, version_card

    store = _store()
    version = store.resolve(_champion_uri(model)).version
    typer.echo(log_model_card(store, version) if log else version_card(store, version))


@app.command("register-starter")
def register_starter(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Starter package folder (default: the package's own assets/starter)."),
    ] = None,
) -> None:
    """Register the shipped starter model and make it champion, if the registry has no champion."""
    from pneumonia_zoo.resources import STARTER_DIR
    from pneumonia_zoo.workflows.starter import ensure_champion

    store = _store()
    version = ensure_champion(store, directory or STARTER_DIR)
    if version is not None:
        typer.echo(f"{store.model_name}@{store.settings.champion_alias} is version {version}")


@app.command("export-starter")
def export_starter(
    model: Annotated[str, typer.Option("--model", "-m", help="models:/NAME/VERSION (or @ALIAS) to export.")],
    out: Annotated[Path, typer.Option(help="Folder to write the package and MODEL_CARD.md to.")] = Path(
        "pneumonia_zoo/assets/starter"
    ),
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="Round weights to float16 (half the size); ONNX is rebuilt from exactly those weights.",
        ),
    ] = False,
) -> None:
    """Write a registered version as the starter model: its package plus its model card."""
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.workflows.compare import timing_images
    from pneumonia_zoo.workflows.starter import export_starter as run_export

    samples = get_settings().sample_images_dir
    check = timing_images(samples, count=8) if samples.is_dir() else None
    result = run_export(_store(), model, out, fp16, check)
    typer.echo(
        f"wrote {out}: {result.total_bytes / 1e6:.1f} MB ({'float16' if result.float16 else 'as registered'})"
    )
    if result.max_probability_change is not None:
        typer.echo(
            f"largest change in a probability on {len(check or [])} sample images: "
            f"{result.max_probability_change:.2e}"
        )


@app.command("backfill-guard")
def backfill_guard(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="The chest_xray/ folder the model was trained on.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="A registered version: the guarded copy is registered as a new version."
        ),
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Or a package folder, rewritten in place.")
    ] = None,
    flag_rate: Annotated[
        float, typer.Option("--flag-rate", help="Share of validation images to flag.")
    ] = 0.02,
    quiet: Quiet = False,
) -> None:
    """Fit the out-of-population guard of a package made without one."""
    if (model is None) == (directory is None):
        raise UserError("give either --model (a registered version) or --dir (a package folder)")
    if not data.is_dir():
        raise UserError(f"data folder {data} does not exist")
    if not 0 < flag_rate < 0.5:
        raise UserError("--flag-rate must be between 0 and 0.5")
    from pneumonia_zoo.workflows import backfill

    if directory is not None:
        rate = backfill.add_guard(directory, data, flag_rate, quiet)
        typer.echo(f"{directory}: guard added, {rate:.1%} of validation images flagged")
    else:
        version = backfill.backfill_version(_store(), model or "", data, flag_rate, quiet)
        typer.echo(f"registered version {version} (with its guard)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the champion: HTML pages and the JSON API (the app `uvicorn fastapiapp:app` serves)."""
    from pneumonia_zoo.serving.process import tune_serving_process
    from pneumonia_zoo.serving.server import run_server

    tune_serving_process()  # allocator arenas and BLAS threads, before any server thread starts
    run_server(host, port)


@app.command()
def ui(port: Annotated[int, typer.Option(help="Port for the MLflow UI.")] = 5000) -> None:
    """Open the MLflow UI on the same store (MLFLOW_TRACKING_URI)."""
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.tracking.store import local_artifact_root

    uri = get_settings().tracking_uri
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
    # MLflow 3's UI also starts job consumers (seven processes) for GenAI jobs this project never runs.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    typer.echo(
        f"MLflow UI on http://127.0.0.1:{port} (store {uri}); training runs are under Experiments -> "
        "pneumonia-zoo (MLflow 3 may open on its GenAI view: choose 'Machine learning' at the top)"
    )
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
