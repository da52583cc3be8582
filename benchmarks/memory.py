"""Memory under adversarial, in-limit load: peak RSS during a burst, and how it settles back to idle.

The corpus is generated here, every file inside the service's documented default limits: small PNG files
that decode to huge images (7000 x 7000, 8 and 16 bit), big progressive JPEGs, and full batches of 16
files per request. `pneumonia-zoo serve` runs with its default settings and the starter model; 32
clients send the corpus round-robin. Targets (issues 12 and 20): peak RSS <= 1.5 GB; 30 s after the
burst, within 10% of the idle baseline. 503s with Retry-After are the admission control working, and
counted. The RSS is also sampled 1, 2, 5, 10 and 20 s after the burst (the settle curve: the service
gives its memory pools back once it idles, RELEASE_AFTER_S in serving/batcher.py).

    python benchmarks/memory.py            # about 3-5 minutes on 2 cores
    python benchmarks/memory.py --quick    # a smaller burst, to check it runs
    python benchmarks/memory.py --env MALLOC_ARENA_MAX=8 --name memory-arenas8   # another setting
    python benchmarks/memory.py --hostile  # issue 22: hostile headers (tests/hostile_files.py) instead
    python benchmarks/memory.py --memray peak.bin  # the service under memray: what is allocated at its peak

`--memray` needs memray in the venv (`.venv/bin/pip install memray`; not in the lock files: a diagnostic,
not a dependency). It records the service's heap (native stacks) and prints the Python stacks
holding the most at the high-water mark; tracking slows the service, so its RSS figures are not the
benchmark's.

The hostile case sends, at concurrency 10 for about a minute (--quick: 10 requests at 5), the uploads whose
headers cost seconds or gigabytes on main: a deflated DICOM bomb (400 kB inflating to 400 MB), 20 MB of
JPEG junk, of empty PNG chunks, of empty and of nested DICOM elements, a progressive JPEG of 3,000 tiny
scans, an implicit VR Window Center of 2 million values, polling /healthz every 0.2 s.
Targets (issue 22's acceptance): peak RSS <= 1.5 GB; every /healthz within 1 s.
"""

import argparse
import asyncio
import collections
import importlib.util
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report  # noqa: E402
from benchmarks.procs import RssSampler, event_loop_of, free_port, serve, service_command  # noqa: E402
from benchmarks.store import register_starter, sqlite_uri  # noqa: E402

GB = 1e9
PEAK_TARGET_BYTES = 1.5e9
SETTLE_S = 30.0
SETTLE_CURVE_S = (1, 2, 5, 10, 20)  # and SETTLE_S
SETTLED_TARGET = 0.10
BATCH = 16  # the default PNEUMONIA_ZOO_MAX_BATCH_FILES


@dataclass(frozen=True)
class Item:
    name: str
    data: bytes
    content_type: str


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def corpus(side: int = 7000) -> dict[str, Item]:
    """Images inside every default limit (50 M pixels, 20 MB per file) that decode to the most memory."""
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    smooth = np.add.outer(ramp, ramp) / 2  # compresses to almost nothing, decodes to side^2 pixels
    png16 = Image.fromarray((smooth * 60000).astype(np.uint16))
    png8 = Image.fromarray((smooth * 255).astype(np.uint8))
    rgb = Image.merge("RGB", [png8, png8.transpose(Image.Transpose.FLIP_LEFT_RIGHT), png8])
    return {
        "png16": Item("large-16bit.png", _encode(png16, "PNG"), "image/png"),
        "png8": Item("large-8bit.png", _encode(png8, "PNG"), "image/png"),
        "rgba": Item("large-rgba.png", _encode(rgb.convert("RGBA"), "PNG"), "image/png"),
        "progressive": Item("large.jpeg", _encode(rgb, "JPEG", quality=90, progressive=True), "image/jpeg"),
    }


async def _post(session: aiohttp.ClientSession, url: str, items: list[Item]) -> int:
    form = aiohttp.FormData()
    for item in items:
        form.add_field("files", item.data, filename=item.name, content_type=item.content_type)
    try:
        async with session.post(url, data=form) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def burst(url: str, requests: list[list[Item]], concurrency: int) -> list[int]:
    queue = list(enumerate(requests))
    statuses = [0] * len(requests)
    timeout = aiohttp.ClientTimeout(total=600)

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            index, items = queue.pop(0)
            statuses[index] = await _post(session, url, items)

    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    return statuses


def settle_curve(rss: RssSampler, ended: float, settle_s: float) -> dict[str, int]:
    """RSS at each point of SETTLE_CURVE_S (and `settle_s`) after the burst ended, sampled as it passes."""
    curve = {}
    for point in [*(p for p in SETTLE_CURVE_S if p < settle_s), settle_s]:
        time.sleep(max(0.0, ended + point - time.perf_counter()))
        curve[f"{point:g}"] = rss.samples[-1][1]
    return curve


def under_memray(command: list[str], capture: Path) -> list[str]:
    """`command` (an interpreter running `-c CODE ARGS`) run by memray instead, recording into `capture`."""
    interpreter, flag, code, *arguments = command
    assert flag == "-c", command
    # Not --aggregate: for this program it wrote an empty capture.
    tracker = [interpreter, "-m", "memray", "run", "--native", "--force", "-q", "-o", str(capture)]
    return [*tracker, "-c", code, *arguments]


def peak_stacks(capture: Path, top: int = 12) -> list[tuple[int, str]]:
    """(bytes, innermost Python frames) of the allocations alive at the capture's high-water mark."""
    from memray import FileReader

    held: collections.Counter[str] = collections.Counter()
    for record in FileReader(capture).get_high_watermark_allocation_records(merge_threads=True):
        frames = record.stack_trace(max_stacks=4)
        stack = " <- ".join(f"{function} ({Path(file).name}:{line})" for function, file, line in frames)
        held[stack] += record.size
    return [(size, stack) for stack, size in held.most_common(top)]


def run(
    quick: bool,
    extra_env: dict[str, str] | None = None,
    settle_s: float = SETTLE_S,
    memray: Path | None = None,
) -> dict:
    machine = report.machine()  # now: its load average is the one at the start
    items = corpus(3000 if quick else 7000)
    kinds = list(items)
    count = 16 if quick else 96
    # Full batches of one kind each, the kinds interleaved: every request is 16 large images.
    requests = [[items[kinds[i % len(kinds)]]] * BATCH for i in range(count)]
    concurrency = 8 if quick else 32
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-memory-") as tmp:
        uri = sqlite_uri(Path(tmp))
        register_starter(uri)
        port = free_port()
        # `pneumonia-zoo serve` as in the Docker image (asyncio + h11); only the registry is set.
        env = {"MLFLOW_TRACKING_URI": uri} | (extra_env or {})
        command = service_command(port)
        if memray is not None:
            command = under_memray(command, memray.resolve())
        with serve(command, "/readyz", port, Path(tmp) / "serve.log", env) as server:
            loop = event_loop_of(server.process.pid)
            url = f"{server.url}/api/v1/predict"
            with RssSampler(server.process.pid, interval_s=0.1) as rss:
                asyncio.run(burst(url, [[items["progressive"]]], 1))  # warm: one request, then idle
                time.sleep(3)
                idle = rss.samples[-1][1]
                started = time.perf_counter()
                statuses = asyncio.run(burst(url, requests, concurrency))
                ended = time.perf_counter()
                curve = settle_curve(rss, ended, settle_s)
                settled = curve[f"{settle_s:g}"]
                peak = rss.peak_between(started, ended + 1)
    growth = (settled - idle) / idle
    return {
        "machine": machine,
        "event_loop": loop,
        "extra_env": extra_env or {},
        "settle_s": settle_s,
        "settle_curve_bytes": curve,
        "corpus": {k: {"file_bytes": len(v.data)} for k, v in items.items()},
        "requests": count,
        "images_per_request": BATCH,
        "concurrency": concurrency,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "idle_rss_bytes": idle,
        "peak_rss_bytes": peak,
        "settled_rss_bytes": settled,
        "settled_growth": round(growth, 4),
        "burst_seconds": round(ended - started, 1),
        "targets": {
            "peak <= 1.5 GB": peak <= PEAK_TARGET_BYTES,
            "settled within 10% of idle": abs(growth) <= SETTLED_TARGET,
        },
    }


HEALTHZ_TARGET_S = 1.0


async def _poll_health(base: str, stop: asyncio.Event) -> list[float]:
    """Seconds each /healthz took, polled every 0.2 s until `stop` (a failed poll counts as 60 s)."""
    seconds = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while not stop.is_set():
            polled = time.perf_counter()
            try:
                async with session.get(f"{base}/healthz") as response:
                    await response.read()
                seconds.append(time.perf_counter() - polled)
            except (aiohttp.ClientError, TimeoutError):
                seconds.append(60.0)
            await asyncio.sleep(max(0.0, 0.2 - (time.perf_counter() - polled)))
    return seconds


async def hostile_burst(
    base: str, requests: list[list[Item]], concurrency: int
) -> tuple[list[int], list[float]]:
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_health(base, stop))
    statuses = await burst(f"{base}/api/v1/predict", requests, concurrency)
    stop.set()
    return statuses, await poller


def run_hostile(quick: bool, extra_env: dict[str, str] | None = None) -> dict:
    from tests import hostile_files  # the same files as tests/serving/test_hostile_uploads.py

    machine = report.machine()
    items = {
        name: Item(filename, make(), "application/octet-stream")
        for name, (make, filename) in hostile_files.HOSTILE.items()
    }
    rounds = 2 if quick else 24
    requests = [[item] for _ in range(rounds) for item in items.values()]
    concurrency = 5 if quick else 10
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-memory-") as tmp:
        uri = sqlite_uri(Path(tmp))
        register_starter(uri)
        port = free_port()
        env = {"MLFLOW_TRACKING_URI": uri} | (extra_env or {})
        with (
            serve(service_command(port), "/readyz", port, Path(tmp) / "serve.log", env) as server,
            RssSampler(server.process.pid, interval_s=0.1) as rss,
        ):
            time.sleep(1)
            idle = rss.samples[-1][1]
            started = time.perf_counter()
            statuses, health = asyncio.run(hostile_burst(server.url, requests, concurrency))
            ended = time.perf_counter()
            peak = rss.peak_between(started, ended + 1)
    return {
        "machine": machine,
        "case": "hostile",
        "extra_env": extra_env or {},
        "corpus": {k: {"file_bytes": len(v.data)} for k, v in items.items()},
        "requests": len(requests),
        "concurrency": concurrency,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "idle_rss_bytes": idle,
        "peak_rss_bytes": peak,
        "healthz_polls": len(health),
        "healthz_max_s": round(max(health, default=0.0), 3),
        "healthz_median_s": round(sorted(health)[len(health) // 2], 3) if health else None,
        "burst_seconds": round(ended - started, 1),
        "targets": {
            "peak <= 1.5 GB": peak <= PEAK_TARGET_BYTES,
            "every /healthz within 1 s": bool(health) and max(health) < HEALTHZ_TARGET_S,
        },
    }


def _rss_rows(data: dict, idle_label: str) -> list[list[str]]:
    return [
        [idle_label, f"{data['idle_rss_bytes'] / GB:.2f} GB", ""],
        [
            "peak RSS during the burst",
            f"{data['peak_rss_bytes'] / GB:.2f} GB",
            _verdict(data["targets"]["peak <= 1.5 GB"]),
        ],
    ]


def render_hostile(data: dict) -> str:
    targets = data["targets"]
    rows = [
        *_rss_rows(data, "idle RSS"),
        [
            f"slowest of {data['healthz_polls']} /healthz polls (median)",
            f"{data['healthz_max_s']:.3f} s ({data['healthz_median_s']} s)",
            _verdict(targets["every /healthz within 1 s"]),
        ],
    ]
    statuses = ", ".join(f"{status}: {n}" for status, n in data["statuses"].items())
    corpus = ", ".join(f"{k} {v['file_bytes'] / 1e6:.1f} MB" for k, v in data["corpus"].items())
    return "\n".join(
        [
            "# Memory and liveness under hostile uploads (issue 22)",
            "",
            *report.machine_lines(data["machine"]),
            "",
            f"{data['requests']} uploads at concurrency {data['concurrency']} ({data['burst_seconds']} s); "
            f"files: {corpus}.",
            f"Answers: {statuses} (413/422: refused; 503: admission control).",
            "",
            report.markdown_table(["measure", "value", "target"], rows),
            "",
        ]
    )


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def render(data: dict) -> str:
    rows = [
        *_rss_rows(data, "idle RSS (after one request)"),
        [
            f"RSS {data.get('settle_s', SETTLE_S):.0f} s after the burst",
            f"{data['settled_rss_bytes'] / GB:.2f} GB ({data['settled_growth']:+.1%} of idle)",
            _verdict(data["targets"]["settled within 10% of idle"]),
        ],
    ]
    idle = data["idle_rss_bytes"]
    curve = ", ".join(
        f"{point} s: {value / GB:.2f} GB ({(value - idle) / idle:+.0%})"
        for point, value in data.get("settle_curve_bytes", {}).items()
    )
    statuses = ", ".join(f"{status}: {n}" for status, n in data["statuses"].items())
    corpus = ", ".join(f"{k} {v['file_bytes'] / 1e3:.0f} KB" for k, v in data["corpus"].items())
    return "\n".join(
        [
            "# Memory under adversarial in-limit load",
            "",
            *report.machine_lines(data["machine"]),
            "",
            f"{data['requests']} requests of {data['images_per_request']} images at concurrency "
            f"{data['concurrency']} ({data['burst_seconds']} s); corpus files: {corpus}.",
            f"Answers: {statuses} (503: refused by admission control with Retry-After).",
            f"Settling after the burst (RSS vs idle): {curve}.",
            *([f"Extra environment: {data['extra_env']}."] if data.get("extra_env") else []),
            "",
            report.markdown_table(["measure", "value", "target"], rows),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small burst (3000 px images, 16 requests)")
    parser.add_argument("--settle-s", type=float, default=SETTLE_S, help="seconds after the burst")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set for the service (repeatable), e.g. MALLOC_ARENA_MAX=8 to compare a setting",
    )
    parser.add_argument("--hostile", action="store_true", help="hostile headers instead (issue 22)")
    parser.add_argument("--name", help="result file name (default memory[-hostile][-quick])")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--memray", type=Path, metavar="FILE", help="run the service under memray into FILE")
    args = parser.parse_args()
    if args.memray is not None and importlib.util.find_spec("memray") is None:
        parser.exit(2, "--memray needs memray: .venv/bin/pip install memray\n")
    extra_env = dict(item.split("=", 1) for item in args.env)
    if args.hostile:
        data = run_hostile(args.quick, extra_env)
        markdown = render_hostile(data)
    else:
        data = run(args.quick, extra_env, args.settle_s, args.memray)
        markdown = render(data)
        if args.memray is not None:
            stacks = peak_stacks(args.memray)
            data["memray_peak"] = [{"bytes": size, "stack": stack} for size, stack in stacks]
            markdown += (
                "\nUnder memray (its RSS figures above are not the benchmark's). Held at the heap's peak:\n\n"
            )
            markdown += "\n".join(f"- {size / 1e6:.0f} MB: `{stack}`" for size, stack in stacks) + "\n"
    name = "memory" + ("-hostile" if args.hostile else "") + ("-quick" if args.quick else "")
    report.write(args.out, args.name or name, data, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
