"""Serving benchmark: the bare network, our service, LitServe and a naive server, on the same images.

    python benchmarks/serve.py [--quick] [--duration 8] [--out benchmarks/results]

Writes serve.json and serve.md to --out and prints the table. Run it from the repository root after
`make setup`, on a quiet machine: every server and the load generator share the same cores.
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/serve.py`

from benchmarks import bare, report, store
from benchmarks.loadgen import Upload, load_uploads, run_load
from benchmarks.procs import BIN, ROOT, RssSampler, free_port, serve, uvicorn_command

SHARED_ORIGINALS = ROOT.parent / "shared" / "data" / "originals"
TARGETS = {"throughput_vs_bare": 0.9, "p50_over_bare_ms": 10.0, "vs_litserve": 1.0, "cold_start_s": 10.0}


@dataclass
class Config:
    name: str
    kind: str  # ours | litserve | naive
    env: dict[str, str] = field(default_factory=dict)
    concurrency: tuple[int, ...] = (1, 8, 32)
    fast_loop: bool = False


def configs(concurrency: tuple[int, ...]) -> list[Config]:
    off = {"PNEUMONIA_ZOO_MAX_BATCH_SIZE": "1", "PNEUMONIA_ZOO_MAX_BATCH_WAIT_MS": "0"}
    return [
        Config("ours onnx, batching", "ours", {"PNEUMONIA_ZOO_RUNTIME": "onnx"}, concurrency),
        Config("ours onnx, no batching", "ours", {"PNEUMONIA_ZOO_RUNTIME": "onnx"} | off, concurrency),
        Config("ours torch, batching", "ours", {"PNEUMONIA_ZOO_RUNTIME": "torch"}, concurrency),
        Config("ours torch, no batching", "ours", {"PNEUMONIA_ZOO_RUNTIME": "torch"} | off, concurrency),
        Config(
            "ours onnx, batching, uvloop+httptools",
            "ours",
            {"PNEUMONIA_ZOO_RUNTIME": "onnx"},
            concurrency,
            fast_loop=True,
        ),
        Config("LitServe onnx, batching", "litserve", {}, concurrency),
        # Seconds per request: concurrency 1 says all there is to say.
        Config("naive (load per request)", "naive", {}, (1,)),
    ]


def command(config: Config, port: int) -> tuple[list[str], str, str]:
    """(command, readiness path, predict path)."""
    if config.kind == "ours":
        return uvicorn_command("fastapiapp:app", port, config.fast_loop), "/readyz", "/api/v1/predict"
    if config.kind == "litserve":
        script = ROOT / "benchmarks" / "peers" / "litserve_server.py"
        return [sys.executable, str(script), "--port", str(port)], "/health", "/predict"
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
    env = {"MLFLOW_TRACKING_URI": uri, "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "0"} | config.env
    log = logs / f"{config.name.replace(' ', '_').replace(',', '')}.log"
    levels = []
    with serve(cmd, ready, port, log, env) as server, RssSampler(server.process.pid) as rss:
        for concurrency in config.concurrency:
            # The naive server takes seconds per request: a few requests, all measured, instead.
            if config.kind == "naive":
                load = {"requests": 2 if args.quick else 6}
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
        "cold_start_s": round(server.cold_start_s, 2),
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "levels": levels,
    }


def level(result: dict, concurrency: int) -> dict | None:
    return next((lv for lv in result["levels"] if lv["concurrency"] == concurrency), None)


def ratios(bare_result: dict, servers: dict[str, dict], top: int) -> dict:
    onnx = bare_result["network"]["onnx"]
    decode = bare_result["decode"]
    ours, lit, naive = (
        servers.get(n) for n in ("ours onnx, batching", "LitServe onnx, batching", "naive (load per request)")
    )
    out: dict = {}
    if ours:
        top_level, one = level(ours, top), level(ours, 1)
        if top_level and top_level["images_per_s"]:
            out["throughput_vs_bare"] = round(top_level["images_per_s"] / onnx["best_images_per_s"], 3)
            # Decoding takes CPU the network would otherwise have: on all cores together, the
            # end-to-end ceiling is 1 / (1/network + decode/cores).
            cores = report.os.cpu_count() or 1
            ceiling = 1 / (1 / onnx["best_images_per_s"] + decode["decode_preprocess_mean_ms"] / 1000 / cores)
            out["end_to_end_ceiling_images_per_s"] = round(ceiling, 2)
            out["throughput_vs_end_to_end_ceiling"] = round(top_level["images_per_s"] / ceiling, 3)
        if one and one["p50_ms"] is not None:
            floor = onnx["batch1_ms"] + decode["decode_preprocess_ms"]
            out["p50_c1_ms"], out["bare_batch1_plus_decode_ms"] = one["p50_ms"], round(floor, 1)
            out["p50_over_bare_ms"] = round(one["p50_ms"] - floor, 1)
        if lit:
            out["vs_litserve"] = {
                c: _ratio(level(ours, c), level(lit, c))
                for c in (1, 8, 32)
                if level(ours, c) and level(lit, c)
            }
        if naive:
            out["vs_naive_c1"] = _ratio(level(ours, 1), level(naive, 1))
        out["cold_start_s"] = ours["cold_start_s"]
    return out


def _ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or not a["images_per_s"] or not b["images_per_s"]:
        return None
    return round(a["images_per_s"] / b["images_per_s"], 2)


def verdicts(r: dict, top: int) -> list[tuple[str, str, object]]:
    lit = r.get("vs_litserve", {}).get(top)
    return [
        (
            f">= {TARGETS['throughput_vs_bare']}x bare batched throughput at c={top}",
            _met(r.get("throughput_vs_bare"), lambda v: v >= TARGETS["throughput_vs_bare"]),
            r.get("throughput_vs_bare"),
        ),
        (
            f"p50 at c=1 within {TARGETS['p50_over_bare_ms']:.0f} ms of bare batch-1 + decode",
            _met(r.get("p50_over_bare_ms"), lambda v: v <= TARGETS["p50_over_bare_ms"]),
            r.get("p50_over_bare_ms"),
        ),
        (f">= 1.0x LitServe at c={top}", _met(lit, lambda v: v >= TARGETS["vs_litserve"]), lit),
        (
            f"cold start <= {TARGETS['cold_start_s']:.0f} s",
            _met(r.get("cold_start_s"), lambda v: v <= TARGETS["cold_start_s"]),
            r.get("cold_start_s"),
        ),
    ]


def _met(value: object, test) -> str:
    return "not measured" if value is None else ("met" if test(value) else "NOT met")


def render(data: dict) -> str:
    b, top = data["bare"], data["top_concurrency"]
    lines = [
        "# Serving benchmark",
        "",
        *report.machine_lines(data["machine"]),
        "",
        f"Images: {data['images']['count']} from `{data['images']['source']}`; "
        f"{data['settings']['duration_s']} s measured per level after {data['settings']['warmup_s']} s "
        "warm-up.",
        "",
        "## Bare network (preprocessed tensors in memory)",
        "",
    ]
    rows = [[rt, v["batch1_ms"], v["best_batch"], v["best_images_per_s"]] for rt, v in b["network"].items()]
    lines += [report.markdown_table(["runtime", "batch-1 ms (median)", "best batch", "images/s"], rows), ""]
    d = b["decode"]
    lines += [
        f"Per image (median): decode {d['decode_ms']} ms; preprocess {d['preprocess_ms']} ms as in "
        f"training (torch), {d['preprocess_serving_ms']} ms as the service does it (numpy, identical "
        f"output: {b['serving_preprocess_identical']}); decode + the faster preprocess "
        f"{d['decode_preprocess_ms']} ms (mean {d['decode_preprocess_mean_ms']} ms).",
        "",
        "## Servers",
        "",
    ]
    rows = []
    for s in data["servers"]:
        for lv in s["levels"]:
            rows.append(
                [
                    s["name"],
                    lv["concurrency"],
                    lv["images_per_s"],
                    lv["p50_ms"],
                    lv["p95_ms"],
                    lv["p99_ms"],
                    lv["errors"],
                    s["peak_rss_mb"],
                    s["cold_start_s"],
                ]
            )
    lines += [
        report.markdown_table(
            [
                "server",
                "c",
                "images/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "errors",
                "peak RSS MB",
                "start→ready s",
            ],
            rows,
        ),
        "",
        "## Ratios and targets",
        "",
    ]
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
        help="folder of X-rays (default: ../shared originals, else sample_images/)",
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
    folder = args.images or (SHARED_ORIGINALS if SHARED_ORIGINALS.is_dir() else ROOT / "sample_images")
    uploads = load_uploads(folder)
    info = report.machine()
    print(f"{len(uploads)} images from {folder}; load average {info['load_average_at_start']}", flush=True)

    print("bare network ...", flush=True)
    sizes = (1, 8, 16) if args.quick else (1, 4, 8, 16, 32)
    bare_result = bare.measure(
        store.STARTER_DIR, [u.data for u in uploads], sizes, 0.5 if args.quick else 2.0
    )
    onnx = bare_result["network"]["onnx"]
    print(f"  onnx {onnx['best_images_per_s']} img/s; decode {bare_result['decode']}")

    servers = []
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-bench-") as tmp:
        uri = store.sqlite_uri(Path(tmp))
        store.register_starter(uri)
        for index, config in enumerate(configs(concurrency)):
            if args.only and args.only not in config.name:
                continue
            # --profile records the first configuration (ours onnx, batching) at the top concurrency
            servers.append(run_config(config, uri, uploads, args, Path(tmp), args.profile and index == 0))

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
        "ratios": ratios(bare_result, {s["name"]: s for s in servers}, top),
        "targets": TARGETS,
    }
    data["verdicts"] = [{"target": t, "verdict": v, "value": x} for t, v, x in verdicts(data["ratios"], top)]
    markdown = render(data)
    report.write(args.out, "serve", data, markdown)
    print("\n" + markdown)


if __name__ == "__main__":
    main()
