"""Serving benchmark: our service against the in-process ceilings, LitServe and a naive server.

    python benchmarks/serve.py [--quick] [--duration 8] [--only NAME] [--profile] [--out benchmarks/results]

First, in this process (benchmarks/bare.py): the network alone through the classifier's runner,
decode + preprocess per image on one core, the in-process single-image time and the in-process
end-to-end ceiling (decode + preprocess + forward + postprocess, batched, all cores, no HTTP). Then
each server on the same full-resolution X-rays at concurrency 1, 8 and 32: our service started as
users start it (`pneumonia-zoo serve`, default settings, the starter model from a fresh registry;
asyncio + h11 as in the Docker image) and variants of it, LitServe running the same decode code and
the classifier's hooks (one worker, and one per core), and a naive load-per-request server. Ratios
against issue 12's targets get verdicts; nothing is asserted.

Writes serve.json and serve.md to --out (serve-quick.* with --quick) and prints the Markdown. Run it
from the repository root after `make setup`, on a quiet machine: every server and the load generator
share the same cores.
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/serve.py`

from benchmarks import bare, report, store
from benchmarks.loadgen import Upload, load_uploads, run_load
from benchmarks.procs import (
    BIN,
    ROOT,
    RssSampler,
    event_loop_of,
    free_port,
    serve,
    service_command,
    uvicorn_command,
)
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR, available_cpus

SHARED_ORIGINALS = ROOT.parent / "shared" / "data" / "originals"
HEADLINE = "ours: pneumonia-zoo serve, defaults"
# Issue 12's targets (and issue 6's cold start); each gets a verdict, none is asserted.
TARGETS = {
    "decode_preprocess_ms": 3.0,  # <=: decode + preprocess per full-resolution X-ray on one core (mean)
    "vs_end_to_end_ceiling": 0.9,  # >=: service / in-process end-to-end ceiling at the top concurrency
    "vs_litserve": 1.3,  # >=: service / the better LitServe (same decode code) at the top concurrency
    "p50_over_single_image_ms": 3.0,  # <=: p50 at c=1 minus the in-process single-image time
    "cold_start_s": 10.0,  # <=: process start -> /readyz 200
}


@dataclass
class Config:
    name: str
    kind: str  # ours | litserve | naive
    env: dict[str, str] = field(default_factory=dict)
    concurrency: tuple[int, ...] = (1, 8, 32)
    uvloop: bool = False  # ours: let `pneumonia-zoo serve` pick uvloop (installed in a benchmark venv)
    workers: int = 1  # LitServe inference worker processes


def configs(concurrency: tuple[int, ...]) -> list[Config]:
    cpus = available_cpus()
    listed = [
        Config(HEADLINE, "ours", {}, concurrency),
        Config("ours, uvloop", "ours", {}, concurrency, uvloop=True),
        Config(
            "ours, no micro-batching",
            "ours",
            {"PNEUMONIA_ZOO_MAX_BATCH_SIZE": "1", "PNEUMONIA_ZOO_MAX_BATCH_WAIT_MS": "0"},
            concurrency,
        ),
        Config("ours, PyTorch runtime", "ours", {"PNEUMONIA_ZOO_RUNTIME": "torch"}, concurrency),
        Config("LitServe, 1 worker", "litserve", {}, concurrency),
    ]
    if cpus > 1:  # LitServe decodes in its worker: more workers is how it would use more cores
        listed.append(Config(f"LitServe, {cpus} workers", "litserve", {}, concurrency, workers=cpus))
    # Seconds per request: concurrency 1 says all there is to say.
    listed.append(Config("naive (load per request)", "naive", {}, (1,)))
    return listed


def command(config: Config, port: int) -> tuple[list[str], str, str]:
    """(command, readiness path, predict path)."""
    if config.kind == "ours":
        return service_command(port, config.uvloop), "/readyz", "/api/v1/predict"
    if config.kind == "litserve":
        script = ROOT / "benchmarks" / "peers" / "litserve_server.py"
        litserve = [sys.executable, str(script), "--port", str(port), "--workers", str(config.workers)]
        return litserve, "/health", "/predict"
    return uvicorn_command("benchmarks.peers.naive_server:app", port), "/health", "/predict"


@contextmanager
def py_spy(pid: int, svg: Path, seconds: float, enabled: bool) -> Iterator[None]:
    """A py-spy flame graph of `pid` while the block runs (busy samples only: idle threads are many)."""
    if not enabled:
        yield
        return
    svg.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--output",
        str(svg),
        "--rate",
        "50",
        "--duration",
        str(int(seconds) + 1),
        "--nonblocking",
        "--idle",
    ]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        spy.wait(60)
        print(f"  profile: {svg}", flush=True)


def run_config(
    config: Config, uri: str, uploads: list[Upload], args: argparse.Namespace, logs: Path, profiled: bool
) -> dict:
    port = free_port()
    cmd, ready, predict = command(config, port)
    # Only the registry is set for our service: every other setting is its default.
    env = {"MLFLOW_TRACKING_URI": uri} | config.env
    log = logs / f"{config.name.replace(' ', '_').replace(',', '').replace(':', '')}.log"
    levels = []
    with serve(cmd, ready, port, log, env) as server, RssSampler(server.process.pid) as rss:
        loop = event_loop_of(server.process.pid) if config.kind == "ours" else None
        for concurrency in config.concurrency:
            # The naive server takes seconds per request: a few requests, all measured, instead.
            if config.kind == "naive":
                load: dict = {"requests": 2 if args.quick else 6}
            else:
                load = {"duration_s": args.duration, "warmup_s": args.warmup}
            profile = profiled and concurrency == max(config.concurrency)
            seconds = args.duration + args.warmup
            with py_spy(server.process.pid, args.out / "profile-serve.svg", seconds, profile):
                result = asyncio.run(run_load(server.url + predict, uploads, concurrency, **load))
            levels.append(result.summary())
            print(f"  {config.name:40s} c={concurrency:<3d} {levels[-1]}", flush=True)
    return {
        "name": config.name,
        "kind": config.kind,
        "env": config.env,
        "event_loop": loop,
        "cold_start_s": round(server.cold_start_s, 2),
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "levels": levels,
    }


def level(result: dict | None, concurrency: int) -> dict | None:
    if result is None:
        return None
    return next((lv for lv in result["levels"] if lv["concurrency"] == concurrency), None)


def _ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or not a["images_per_s"] or not b["images_per_s"]:
        return None
    return round(a["images_per_s"] / b["images_per_s"], 3)


def _best(servers: list[dict], concurrency: int) -> dict | None:
    """The server with the most images/s at `concurrency` (of several LitServe configurations)."""
    measured = [s for s in servers if (lv := level(s, concurrency)) and lv["images_per_s"]]
    return max(measured, key=lambda s: level(s, concurrency)["images_per_s"], default=None)  # type: ignore[index]


def ratios(bare_result: dict, servers: list[dict], concurrency: tuple[int, ...]) -> dict:
    top = max(concurrency)
    named = {s["name"]: s for s in servers}
    ours = named.get(HEADLINE)
    litserve = [s for s in servers if s["kind"] == "litserve"]
    out: dict = {
        "decode_preprocess_ms": bare_result["decode"]["decode_preprocess_mean_ms"],
        "end_to_end_ceiling_images_per_s": bare_result["end_to_end"]["images_per_s"],
        "single_image_ms": bare_result["single_image"]["median_ms"],
    }
    if ours is None:
        return out
    top_level, one = level(ours, top), level(ours, 1)
    if top_level and top_level["images_per_s"]:
        out["vs_end_to_end_ceiling"] = round(
            top_level["images_per_s"] / out["end_to_end_ceiling_images_per_s"], 3
        )
        network = bare_result["network"].get(bare_result["runtime"])
        if network:  # for scale: the network alone, without any decoding
            out["vs_bare_network"] = round(top_level["images_per_s"] / network["best_images_per_s"], 3)
    if one and one["p50_ms"] is not None:
        out["p50_c1_ms"] = one["p50_ms"]
        out["p50_over_single_image_ms"] = round(one["p50_ms"] - out["single_image_ms"], 1)
    if litserve:
        out["vs_litserve"] = {}
        for c in concurrency:
            best = _best(litserve, c)
            if best is not None:
                out["vs_litserve"][c] = {
                    "ratio": _ratio(level(ours, c), level(best, c)),
                    "against": best["name"],
                }
    if (naive := named.get("naive (load per request)")) is not None:
        out["vs_naive_c1"] = _ratio(one, level(naive, 1))
    if (fast := named.get("ours, uvloop")) is not None:
        out["uvloop_over_asyncio"] = {c: _ratio(level(fast, c), level(ours, c)) for c in concurrency}
    out["cold_start_s"] = ours["cold_start_s"]
    return out


def _met(value: object, test: Callable[[float], bool]) -> str:
    return "not measured" if value is None else ("met" if test(value) else "NOT met")  # type: ignore[arg-type]


def verdicts(r: dict, top: int) -> list[tuple[str, str, object]]:
    lit = (r.get("vs_litserve") or {}).get(top, {})
    t = TARGETS
    return [
        (
            f"decode + preprocess <= {t['decode_preprocess_ms']:g} ms per full-resolution X-ray on one core "
            "(mean over these images; benchmarks/decode.py measures it on 308)",
            _met(r.get("decode_preprocess_ms"), lambda v: v <= t["decode_preprocess_ms"]),
            r.get("decode_preprocess_ms"),
        ),
        (
            f"service >= {t['vs_end_to_end_ceiling']:g}x the in-process end-to-end ceiling at c={top}",
            _met(r.get("vs_end_to_end_ceiling"), lambda v: v >= t["vs_end_to_end_ceiling"]),
            r.get("vs_end_to_end_ceiling"),
        ),
        (
            f">= {t['vs_litserve']:g}x LitServe given the same decode code, at c={top} "
            f"({lit.get('against')})",
            _met(lit.get("ratio"), lambda v: v >= t["vs_litserve"]),
            lit.get("ratio"),
        ),
        (
            f"p50 at c=1 within {t['p50_over_single_image_ms']:g} ms of the in-process single-image time",
            _met(r.get("p50_over_single_image_ms"), lambda v: v <= t["p50_over_single_image_ms"]),
            r.get("p50_over_single_image_ms"),
        ),
        (
            f"cold start <= {t['cold_start_s']:g} s",
            _met(r.get("cold_start_s"), lambda v: v <= t["cold_start_s"]),
            r.get("cold_start_s"),
        ),
    ]


def render(data: dict) -> str:
    b, top = data["bare"], data["top_concurrency"]
    lines = [
        "# Serving benchmark",
        "",
        *report.machine_lines(data["machine"]),
        "",
        f"Images: {data['images']['count']} from `{data['images']['source']}`; "
        f"{data['settings']['duration_s']} s measured per level after {data['settings']['warmup_s']} s "
        f"warm-up. Model: the starter ({b['runtime']}); {b['cpus']} CPUs allowed.",
        "",
        "## In process, without HTTP",
        "",
    ]
    rows = [[rt, v["batch1_ms"], v["best_batch"], v["best_images_per_s"]] for rt, v in b["network"].items()]
    lines += [
        "The network alone (the classifier's `forward` on preprocessed batches in memory):",
        "",
        report.markdown_table(["runtime", "batch-1 ms (median)", "best batch", "images/s"], rows),
        "",
    ]
    d, e, s = b["decode"], b["end_to_end"], b["single_image"]
    lines += [
        f"- decode + preprocess per image on one core: decode {d['decode_ms']} ms + preprocess "
        f"{d['preprocess_ms']} ms (medians); both {d['decode_preprocess_ms']} ms median, "
        f"{d['decode_preprocess_mean_ms']} ms mean. Serving preprocessing identical to training's: "
        f"{b['serving_preprocess_identical']}.",
        f"- single image, decode + preprocess + forward + postprocess at batch 1: {s['median_ms']} ms "
        f"median ({s['mean_ms']} ms mean).",
        f"- **end-to-end ceiling** (the same four steps, batch {e['batch']}, {e['decode_threads']} decode "
        f"threads): **{e['images_per_s']} images/s** (pipelined {e['pipelined_images_per_s']}, staged "
        f"{e['staged_images_per_s']}).",
        "",
        "## Servers",
        "",
    ]
    rows = []
    for server in data["servers"]:
        for lv in server["levels"]:
            rows.append(
                [
                    server["name"],
                    server["event_loop"],
                    lv["concurrency"],
                    lv["images_per_s"],
                    lv["p50_ms"],
                    lv["p95_ms"],
                    lv["p99_ms"],
                    lv["errors"],
                    server["peak_rss_mb"],
                    server["cold_start_s"],
                ]
            )
    header = ["server", "loop", "c", "images/s", "p50 ms", "p95 ms", "p99 ms", "errors", "peak RSS MB"]
    lines += [report.markdown_table([*header, "start→ready s"], rows), "", "## Ratios and targets", ""]
    lines += [f"- `{k}`: {v}" for k, v in data["ratios"].items()]
    lines += [
        "",
        report.markdown_table(
            ["target", "verdict", "value"], [list(v) for v in verdicts(data["ratios"], top)]
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="seconds per level, to prove it runs end to end")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each level")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="folder of X-rays (default: ../shared/data/originals, else the package's sample images)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy flame graph of our service at top concurrency, written to --out/profile-serve.svg",
    )
    parser.add_argument("--only", default=None, help="run only the servers whose name contains this")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 2.0, 1.0
    concurrency = (1, 8, 32)
    folder = args.images or (SHARED_ORIGINALS if SHARED_ORIGINALS.is_dir() else SAMPLE_IMAGES_DIR)
    uploads = load_uploads(folder)
    info = report.machine()
    print(f"{len(uploads)} images from {folder}; load average {info['load_average_at_start']}", flush=True)

    print("in process: network, decode, single image, end-to-end ceiling ...", flush=True)
    sizes = (1, 8, 16) if args.quick else (1, 4, 8, 16, 32)
    bare_result = bare.measure(
        store.STARTER_DIR, [u.data for u in uploads], sizes, 0.5 if args.quick else 2.0
    )
    print(
        f"  decode {bare_result['decode']}; single image {bare_result['single_image']}; "
        f"end to end {bare_result['end_to_end']}",
        flush=True,
    )

    servers = []
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-bench-") as tmp:
        uri = store.sqlite_uri(Path(tmp))
        store.register_starter(uri)  # as a user's `make serve` does: the starter is version 1, champion
        for config in configs(concurrency):
            if args.only and args.only not in config.name:
                continue
            # --profile records the headline configuration at the top concurrency
            servers.append(
                run_config(config, uri, uploads, args, Path(tmp), args.profile and config.name == HEADLINE)
            )

    top = max(concurrency)
    data = {
        "machine": info,
        "images": {
            "source": str(folder),
            "count": len(uploads),
            "mean_bytes": round(statistics.fmean(len(u.data) for u in uploads)),
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": list(concurrency),
            "quick": args.quick,
        },
        "top_concurrency": top,
        "bare": bare_result,
        "servers": servers,
        "ratios": ratios(bare_result, servers, concurrency),
        "targets": TARGETS,
    }
    data["verdicts"] = [{"target": t, "verdict": v, "value": x} for t, v, x in verdicts(data["ratios"], top)]
    markdown = render(data)
    report.write(args.out, "serve-quick" if args.quick else "serve", data, markdown)
    print("\n" + markdown)


if __name__ == "__main__":
    main()
