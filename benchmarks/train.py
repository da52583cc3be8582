"""Training-side CPU benchmark: model throughput, and what the data pipeline costs on top.

    python benchmarks/train.py                 # the full run (about 10 minutes on 2 quiet cores)
    python benchmarks/train.py --quick         # a smoke run: 128 px, short budgets, a tiny subset

Part 1 measures images/s per architecture, training (forward + backward + AdamW step, every layer
trainable) and inference (no_grad), at each size, with channels_last off and on, on random
tensors, with the optimizer and loss that training's factories make. Part 2 trains epochs on a real
stratified subset three ways, through the project's own `train_one_epoch`: (a) the in-memory uint8
cache + augmentation that `create_loaders` makes, (b) a dataset that decodes every JPEG every epoch,
(c) pre-made tensors (compute only), and breaks the cached path's per-image cost into its steps.
Results go to `<out>/train.json` and `<out>/train.md` (train-quick.* with --quick); the Markdown is
printed too. Numbers from a busy machine mean little.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from pneumonia_zoo.data.augment import RobustAugmentation
from pneumonia_zoo.data.cache import DecodedImages, decode_all, load_pixels, normalize_tensor
from pneumonia_zoo.data.discovery import Sample, discover
from pneumonia_zoo.data.images import decode_image
from pneumonia_zoo.data.pipeline import PreparedData
from pneumonia_zoo.data.split import stratified_subsample
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.factories import create_loaders, create_loss, create_optimizer
from pneumonia_zoo.training.loop import train_one_epoch
from pneumonia_zoo.training.schedules import Scheduler
from pneumonia_zoo.zoo.architectures import ARCHITECTURES, get_architecture
from pneumonia_zoo.zoo.factory import create_model

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "data" / "chest_xray"
FIXTURE_DATA = ROOT / "tests" / "fixtures" / "chest_xray"
ORIGINALS = ROOT.parent / "shared" / "data" / "originals"
SEED = 42
TARGET_RATIO = 1.1  # issue 6: a cached epoch may cost at most 10% more than its compute


# ---------------------------------------------------------------- part 1: model throughput


@dataclass
class Timing:
    """Per-batch seconds of one measurement; img/s comes from the median batch, which a burst
    of background load moves less than the mean."""

    batch_size: int
    warmup_batches: int
    batch_seconds: list[float]

    @property
    def images_per_s(self) -> float:
        return self.batch_size / statistics.median(self.batch_seconds)

    @property
    def mean_images_per_s(self) -> float:
        return self.batch_size * len(self.batch_seconds) / sum(self.batch_seconds)


def time_batches(
    step: Callable[[], None], batch_size: int, budget_s: float, warmup: int, min_batches: int
) -> Timing:
    """Warm up, then time batches until `budget_s` has passed and at least `min_batches` ran.

    A time budget rather than a batch count: one vgg16 training batch at 224 px takes about 11 s
    here while a small_cnn one takes milliseconds. Warm-up (oneDNN picks its kernels on the first
    calls) stops early once it has used half the budget, so slow models pay for one batch only.
    """
    started, warmed = time.perf_counter(), 0
    while warmed < warmup and (warmed == 0 or time.perf_counter() - started < budget_s / 2):
        step()
        warmed += 1
    seconds: list[float] = []
    timed_from = time.perf_counter()
    while len(seconds) < min_batches or time.perf_counter() - timed_from < budget_s:
        tick = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - tick)
    return Timing(batch_size, warmed, seconds)


def bench_config(arch: str, size: int, batch_size: int, data: Path = FIXTURE_DATA) -> TrainConfig:
    """Training's defaults for `arch` (optimizer, loss, augmentation, channels_last) at this size."""
    return TrainConfig(arch=arch, data=data, batch_size=batch_size, image_size=size)


def train_step(
    model: nn.Module, config: TrainConfig, size: int, batch_size: int, channels_last: bool
) -> Callable[[], None]:
    """One optimisation step as `train_one_epoch` does it, on a fixed random batch, with the optimizer
    and loss training's factories make from the config."""
    images = torch.randn(batch_size, 3, size, size)
    targets = torch.randint(0, 2, (batch_size,))
    optimizer = create_optimizer(config, model)
    loss_fn = create_loss(config, targets, torch.device("cpu"))

    def step() -> None:
        model.train()
        # The loop converts every batch it gets, so the conversion belongs in the timing.
        batch = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch), targets)
        loss.backward()
        optimizer.step()
        loss.item()

    return step


def eval_step(model: nn.Module, size: int, batch_size: int, channels_last: bool) -> Callable[[], None]:
    """One inference batch as `predict_probs` does it."""
    images = torch.randn(batch_size, 3, size, size)

    def step() -> None:
        model.eval()
        batch = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        with torch.no_grad():
            model(batch).softmax(1)

    return step


@dataclass
class ThroughputRow:
    arch: str
    size: int
    channels_last: bool
    train_images_per_s: float
    eval_images_per_s: float
    train_mean_images_per_s: float
    eval_mean_images_per_s: float
    train_batches: int
    eval_batches: int
    parameters: int


def measure_throughput(
    arch: str, size: int, channels_last: bool, batch_size: int, budget_s: float, warmup: int, min_batches: int
) -> ThroughputRow:
    torch.manual_seed(SEED)
    # Random weights: no ImageNet checkpoint exists offline, and speed does not depend on them.
    model = create_model(arch, pretrained=False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # as run_training does
    config = bench_config(arch, size, batch_size)
    train = time_batches(
        train_step(model, config, size, batch_size, channels_last), batch_size, budget_s, warmup, min_batches
    )
    infer = time_batches(
        eval_step(model, size, batch_size, channels_last), batch_size, budget_s, warmup, min_batches
    )
    row = ThroughputRow(
        arch,
        size,
        channels_last,
        train.images_per_s,
        infer.images_per_s,
        train.mean_images_per_s,
        infer.mean_images_per_s,
        len(train.batch_seconds),
        len(infer.batch_seconds),
        sum(p.numel() for p in model.parameters()),
    )
    del model
    gc.collect()  # densenet201 holds ~4.7 GB while training; free it before the next model
    return row


# ---------------------------------------------------------------- part 2: the data pipeline


class DecodeEveryEpoch(Dataset):
    """What the cache replaces: read, decode and resize each JPEG whenever it is asked for (the same
    decode as the cache's, `load_pixels`, then the same augmentation and normalisation)."""

    def __init__(
        self,
        samples: list[Sample],
        preprocessing: Preprocessing,
        augment: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> None:
        self.samples = samples
        self.preprocessing = preprocessing
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        pixels, _, _ = load_pixels(sample.path, self.preprocessing)
        image = torch.from_numpy(pixels.copy())[None]  # 1 x S x S uint8, as the cache stores it
        if self.augment is not None:
            image = self.augment(image)
        return normalize_tensor(self.preprocessing, image), torch.tensor(sample.label)


@dataclass
class PipelineRow:
    arch: str
    size: int
    images: int  # images per epoch (drop_last as create_loaders sets it)
    rounds: int
    compute_s: float  # (c) pre-made tensors, best of the rounds
    cached_s: float  # (a) uint8 cache + augmentation through create_loaders
    decode_s: float  # (b) JPEG decode every epoch
    cached_loader_only_s: float  # iterating (a)'s loader with no model
    decode_loader_only_s: float
    one_off_decode_s: float  # decode_all of the subset: what the cache costs once
    stages_ms_per_image: dict[str, float] = field(default_factory=dict)

    @property
    def cached_ratio(self) -> float:
        return self.cached_s / self.compute_s

    @property
    def decode_ratio(self) -> float:
        return self.decode_s / self.compute_s


def subset(root: Path, count: int) -> list[Sample]:
    pool, _ = discover(root)
    return stratified_subsample(pool, count, SEED)


def run_epoch(
    model: nn.Module, loader: DataLoader | list, config: TrainConfig, runtime: Runtime, labels: torch.Tensor
) -> float:
    """Seconds for one `train_one_epoch` over `loader` (no progress bar), with training's optimizer and
    loss (`labels`: the training labels, for class weights when the config asks for them)."""
    optimizer = create_optimizer(config, model)
    scheduler = Scheduler(config.schedule, optimizer, config.schedule_params(), max(len(loader), 1))
    loss_fn = create_loss(config, labels, runtime.device)
    started = time.perf_counter()
    train_one_epoch(
        model, loader, optimizer, scheduler, loss_fn, runtime, config.channels_last, "bench", quiet=True
    )
    return time.perf_counter() - started


def iterate(loader: DataLoader) -> float:
    started = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - started


def profile_cached_steps(
    images: DecodedImages,
    preprocessing: Preprocessing,
    augment: RobustAugmentation | None,
    batch_size: int,
    limit: int = 256,
) -> dict[str, float]:
    """Milliseconds per image in each step of CachedDataset.__getitem__ and of the collate.

    The augmentation is one call (its steps are drawn at random inside it); its affine warp, the
    usual largest part, is timed again on its own beside it.
    """
    count = min(limit, len(images.labels))
    totals = dict.fromkeys(
        ["index", "augment", "augment: affine alone", "to_float", "normalize", "collate"], 0.0
    )
    items = []
    for index in range(count):
        tick = time.perf_counter()
        image, label = images.pixels[index], images.labels[index]
        totals["index"] += time.perf_counter() - tick
        if augment is not None:
            tick = time.perf_counter()
            augment.affine(image)
            totals["augment: affine alone"] += time.perf_counter() - tick
            tick = time.perf_counter()
            image = augment(image)
            totals["augment"] += time.perf_counter() - tick
        tick = time.perf_counter()
        image.float()  # the dtype conversion alone, to separate it from the arithmetic
        totals["to_float"] += time.perf_counter() - tick
        tick = time.perf_counter()
        items.append((normalize_tensor(preprocessing, image), label))
        totals["normalize"] += time.perf_counter() - tick
    for start in range(0, count, batch_size):
        tick = time.perf_counter()
        default_collate(items[start : start + batch_size])
        totals["collate"] += time.perf_counter() - tick
    totals["normalize"] -= totals["to_float"]  # normalize includes its own float(); show the rest
    return {name: 1000 * seconds / max(count, 1) for name, seconds in totals.items()}


def measure_pipeline(
    arch_name: str, size: int, root: Path, count: int, batch_size: int, rounds: int
) -> PipelineRow:
    arch = get_architecture(arch_name)
    preprocessing = Preprocessing(size, arch.mean, arch.std)
    samples = subset(root, count)
    tick = time.perf_counter()
    decoded = decode_all(samples, preprocessing, quiet=True)
    one_off = time.perf_counter() - tick
    config = bench_config(arch_name, size, batch_size, root)
    runtime = Runtime(torch.device("cpu"))

    # (a) exactly what training uses (its augmentation, num_workers=0, shuffle, drop_last).
    cached_loader, _ = create_loaders(config, PreparedData(decoded, decoded, None), preprocessing, runtime)
    augment = cached_loader.dataset.augment  # type: ignore[attr-defined]  (a CachedDataset)
    # (b) the same loader settings over a dataset that decodes per item.
    decode_loader = DataLoader(
        DecodeEveryEpoch(decoded.samples, preprocessing, augment),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
        drop_last=cached_loader.drop_last,
    )
    # (c) the same number of batches, normalized once up front.
    compute_batches = [
        (
            normalize_tensor(preprocessing, decoded.pixels[i : i + batch_size]),
            decoded.labels[i : i + batch_size],
        )
        for i in range(0, len(cached_loader) * batch_size, batch_size)
    ]
    images = sum(len(labels) for _, labels in compute_batches)

    torch.manual_seed(SEED)
    model = create_model(arch_name, pretrained=False)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    labels = decoded.labels
    run_epoch(model, compute_batches[:3], config, runtime, labels)  # warm-up: oneDNN kernels, allocator

    # Interleaved rounds, best of each: background load then hits all three paths alike.
    times: dict[str, list[float]] = {key: [] for key in ("c", "a", "b", "a_loader", "b_loader")}
    for _ in range(rounds):
        times["c"].append(run_epoch(model, compute_batches, config, runtime, labels))
        times["a"].append(run_epoch(model, cached_loader, config, runtime, labels))
        times["b"].append(run_epoch(model, decode_loader, config, runtime, labels))
        times["a_loader"].append(iterate(cached_loader))
        times["b_loader"].append(iterate(decode_loader))
    best = {key: min(values) for key, values in times.items()}
    stages = profile_cached_steps(decoded, preprocessing, augment, batch_size)
    stages["compute (c)"] = 1000 * best["c"] / images
    del model
    gc.collect()
    return PipelineRow(
        arch_name,
        size,
        images,
        rounds,
        best["c"],
        best["a"],
        best["b"],
        best["a_loader"],
        best["b_loader"],
        one_off,
        stages,
    )


def decode_costs(root: Path, size: int, count: int = 24) -> dict[str, float]:
    """ms to decode + squash-resize one image as the cache does it (`decode_image` with min_side, one
    grey channel): the dataset's 224 px copies vs full-size originals.

    The copies here are small; a user's Kaggle download (~1300x900) makes (b) much worse.
    """
    preprocessing = Preprocessing(size)

    def per_image(paths: list[Path]) -> float:
        blobs = [path.read_bytes() for path in paths]
        tick = time.perf_counter()
        for blob in blobs:
            preprocessing.pixels(decode_image(blob, min_side=size))
        return 1000 * (time.perf_counter() - tick) / max(len(blobs), 1)

    costs = {"dataset copies": per_image([s.path for s in subset(root, count)])}
    originals = sorted(ORIGINALS.glob("*.jpeg"))
    if originals:
        costs["full-size originals"] = per_image(originals)
    return costs


# ---------------------------------------------------------------- report


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "platform": platform.platform(),
    }


def load_average() -> list[float] | None:
    """Recorded beside the numbers: a load above the core count means they were contended."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def markdown(report: dict) -> str:
    info, settings = report["machine"], report["settings"]
    warmup, timed, budget = settings["warmup"], settings["min_batches"], settings["budget_s"]
    lines = [
        "# Training benchmark",
        "",
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
        f"- machine: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}",
        f"- python {info['python']}, torch {info['torch']}, torchvision {info['torchvision']}",
        f"- load average before / after: {report['load_before']} / {report['load_after']}",
        f"- batch {settings['batch_size']}, fp32, random init; per measurement at most {warmup} warm-up "
        f"batches, then at least {timed} timed batches and {budget} s; "
        "img/s = batch / median batch time",
        "",
    ]
    busy = report["load_before"] and report["load_before"][0] > 0.5
    if busy:  # torch's OpenMP threads spin against the other load: small ops slow down many-fold
        lines += [
            f"**The machine was busy before this run (1-minute load {report['load_before'][0]}): these "
            "numbers are contended; rerun on a quiet CPU.**",
            "",
        ]
    lines += [
        "## Throughput (images/s)",
        "",
        "Train: forward + backward + AdamW step, all layers trainable. Eval: no_grad inference.",
        "",
        "| arch | px | channels_last | train img/s | eval img/s | timed batches (train/eval) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in report["throughput"]:
        lines.append(
            f"| {row['arch']} | {row['size']} | {'on' if row['channels_last'] else 'off'} "
            f"| {row['train_images_per_s']:.1f} | {row['eval_images_per_s']:.1f} "
            f"| {row['train_batches']}/{row['eval_batches']} |"
        )
    if report["pipeline"]:
        lines += [
            "",
            "## Data pipeline (one training epoch, seconds, best of the rounds)",
            "",
            f"Data: {report['pipeline_data']}. (a) in-memory uint8 cache + augmentation through "
            "`create_loaders` (what training runs), (b) decoding every JPEG every epoch, (c) compute only "
            f"on pre-made tensors. Target: (a)/(c) <= {TARGET_RATIO}.",
            "",
            "| arch | px | images | (c) compute | (a) cached | (b) decode | (a)/(c) | (b)/(c) "
            "| loader alone (a) / (b) | one-off cache fill | target |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in report["pipeline"]:
            met = "met" if row["cached_ratio"] <= TARGET_RATIO else "missed"
            lines.append(
                f"| {row['arch']} | {row['size']} | {row['images']} | {row['compute_s']:.2f} "
                f"| {row['cached_s']:.2f} | {row['decode_s']:.2f} | {row['cached_ratio']:.2f} "
                f"| {row['decode_ratio']:.2f} | {row['cached_loader_only_s']:.2f} / "
                f"{row['decode_loader_only_s']:.2f} | {row['one_off_decode_s']:.2f} | {met} |"
            )
        stage_names = list(report["pipeline"][0]["stages_ms_per_image"])
        lines += [
            "",
            "Where a cached image's time goes (ms per image; `compute (c)` is the model's share):",
            "",
            "| arch | px | " + " | ".join(stage_names) + " |",
            "|---|---:|" + "---:|" * len(stage_names),
        ]
        for row in report["pipeline"]:
            stages = row["stages_ms_per_image"]
            lines.append(
                f"| {row['arch']} | {row['size']} | "
                + " | ".join(f"{stages.get(name, float('nan')):.3f}" for name in stage_names)
                + " |"
            )
    if report["decode_ms_per_image"]:
        lines += ["", "Decode + squash-resize, ms per image:", ""]
        lines += [f"- {name}: {value:.2f}" for name, value in report["decode_ms_per_image"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 128 px, short budgets, tiny subset")
    parser.add_argument("--archs", help=f"comma-separated (default: all: {','.join(ARCHITECTURES)})")
    parser.add_argument("--sizes", help="comma-separated pixel sizes (default 224,128; --quick: 128)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all)")
    parser.add_argument("--budget", type=float, help="seconds timed per measurement (default 5; --quick 1)")
    parser.add_argument(
        "--pipeline",
        help="arch@px,... trained for the pipeline comparison "
        "(default small_cnn@128,efficientnet_lite0@128; --quick small_cnn@128; 'none' skips it)",
    )
    parser.add_argument("--pipeline-images", type=int, help="subset size (default 512; --quick 64)")
    parser.add_argument("--rounds", type=int, help="pipeline rounds, best kept (default 2; --quick 1)")
    parser.add_argument(
        "--data", type=Path, help="a chest_xray/ folder (default: the shared copy, else fixtures)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.archs = (args.archs or ",".join(ARCHITECTURES)).split(",")
    args.sizes = [int(size) for size in (args.sizes or ("128" if quick else "224,128")).split(",")]
    args.budget = args.budget if args.budget is not None else (1.0 if quick else 5.0)
    args.warmup, args.min_batches = (1, 1) if quick else (2, 2)
    pipeline = args.pipeline or ("small_cnn@128" if quick else "small_cnn@128,efficientnet_lite0@128")
    args.pipeline = (
        [] if pipeline == "none" else [(a, int(s)) for a, s in (p.split("@") for p in pipeline.split(","))]
    )
    args.pipeline_images = args.pipeline_images or (64 if quick else 512)
    args.rounds = args.rounds or (1 if quick else 2)
    args.data = args.data or (REAL_DATA if (REAL_DATA / "train").is_dir() else FIXTURE_DATA)
    for name in args.archs + [a for a, _ in args.pipeline]:
        get_architecture(name)  # fail before minutes of work, not after
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/train.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "load_before": load_average(),
        "settings": {
            "batch_size": args.batch_size,
            "budget_s": args.budget,
            "warmup": args.warmup,
            "min_batches": args.min_batches,
            "archs": args.archs,
            "sizes": args.sizes,
        },
        "throughput": [],
        "pipeline": [],
        "pipeline_data": None,
        "decode_ms_per_image": {},
    }
    for arch in args.archs:
        for size in args.sizes:
            for channels_last in (False, True):
                row = measure_throughput(
                    arch, size, channels_last, args.batch_size, args.budget, args.warmup, args.min_batches
                )
                report["throughput"].append(asdict(row))
                print(
                    f"{arch:>18} {size:>4} px channels_last={'on ' if channels_last else 'off'} "
                    f"train {row.train_images_per_s:8.1f} img/s  eval {row.eval_images_per_s:8.1f} img/s",
                    file=sys.stderr,
                    flush=True,
                )
    if args.pipeline:
        count = len(subset(args.data, args.pipeline_images))
        report["pipeline_data"] = f"{count} stratified train images of {args.data}"
        for arch, size in args.pipeline:
            row = measure_pipeline(arch, size, args.data, args.pipeline_images, args.batch_size, args.rounds)
            report["pipeline"].append(
                asdict(row) | {"cached_ratio": row.cached_ratio, "decode_ratio": row.decode_ratio}
            )
            print(
                f"pipeline {arch} {size} px: (a)/(c) {row.cached_ratio:.2f}  (b)/(c) {row.decode_ratio:.2f}",
                file=sys.stderr,
                flush=True,
            )
        report["decode_ms_per_image"] = decode_costs(args.data, args.pipeline[0][1])
    report["load_after"] = load_average()
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "train-quick" if args.quick else "train"  # a smoke run never overwrites the real results
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
