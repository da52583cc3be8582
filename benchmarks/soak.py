"""Soak with a hot swap: requests at high concurrency while a new champion is promoted mid-run.

    python benchmarks/soak.py [--quick] [--requests 2000] [--concurrency 32] [--out benchmarks/results]

Our service runs as users start it (`pneumonia-zoo serve`, asyncio + h11, default settings) except
that it polls the champion alias every second instead of every 30. A copy of the starter package is
registered as version 2 before the load starts (that takes tens of seconds on 2 cores, in a
subprocess as a separate trainer would); once a quarter of the requests have answered, the champion
alias moves to it. Reports failures (target 0), whether every answer names a version that existed and
versions never move back, where the switch happened, RSS growth between the first and the last
500 requests (target < 10%), and the RSS `--settle-s` seconds after the load against the idle RSS
before it (one request, then 2 s: the service gives its memory pools back once it idles). Writes
soak.json and soak.md to --out (soak-quick.* with --quick; --name for another setting, with --env).

    python benchmarks/soak.py --env MALLOC_ARENA_MAX=8 --name soak-arenas8
"""

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/soak.py`

from benchmarks import report, store
from benchmarks.loadgen import Answer, LoadResult, Upload, load_uploads, run_load
from benchmarks.procs import ROOT, RssSampler, event_loop_of, free_port, serve, service_command
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR

SHARED_ORIGINALS = ROOT.parent / "shared" / "data" / "originals"
RSS_GROWTH_TARGET = 0.10
IDLE_WAIT_S = 2.0  # after the warm-up request, before the idle RSS is read
SETTLE_S = 10.0


def swap_report(answers: Sequence[Answer], old: str, new: str) -> dict:
    """Failures, versions named, and whether the switch from `old` to `new` was clean."""
    by_start = sorted(answers, key=lambda a: a.started)
    versions = [a.version for a in by_start if a.ok]
    back = []  # a worker's requests are sequential: once it saw `new` it must never see `old`
    for worker in {a.worker for a in answers}:
        seen = [a.version for a in by_start if a.worker == worker and a.ok]
        if new in seen and old in seen[seen.index(new) :]:
            back.append(worker)
    first_new = min((a.ended for a in answers if a.ok and a.version == new), default=None)
    # Anything sent after some answer already came from `new` must come from `new` too.
    stale_after_switch = (
        sum(1 for a in answers if a.ok and a.started > first_new and a.version != new) if first_new else 0
    )
    switch_index = versions.index(new) if new in versions else None
    return {
        "requests": len(answers),
        "failed": sum(not a.ok for a in answers),
        "failures": sorted({f"{a.status} {a.error}"[:160] for a in answers if not a.ok})[:5],
        "unnamed": sum(1 for a in answers if a.ok and a.version is None),
        "versions_seen": sorted({v for v in versions if v is not None}),
        "unknown_versions": sorted({v for v in versions if v not in (old, new)}),
        "answers_per_version": {v: versions.count(v) for v in (old, new)},
        "switch_index": switch_index,
        "workers_moving_back": len(back),
        "stale_after_switch": stale_after_switch,
    }


def rss_growth(answers: Sequence[Answer], rss: RssSampler, window: int) -> dict:
    """Peak RSS while the first `window` answers arrived vs while the last `window` did."""
    by_end = sorted(answers, key=lambda a: a.ended)
    first, last = by_end[:window], by_end[-window:]
    before = rss.peak_between(first[0].started, first[-1].ended)
    after = rss.peak_between(last[0].started, last[-1].ended)
    return {
        "window_requests": window,
        "first_mb": round(before / 2**20, 1),
        "last_mb": round(after / 2**20, 1),
        "growth": round(after / before - 1, 4) if before else None,
        "peak_mb": round(rss.peak / 2**20, 1),
    }


def settled_vs_idle(idle: int, settled: int, settle_s: float) -> dict:
    return {
        "idle_mb": round(idle / 2**20, 1),
        "settled_mb": round(settled / 2**20, 1),
        "settle_s": settle_s,
        "settled_vs_idle": round(settled / idle - 1, 4) if idle else None,
    }


def warm_up(url: str, upload: Upload) -> None:
    """One request, as the idle baseline's: the model and its first batch are loaded."""
    response = httpx.post(f"{url}/api/v1/predict", files={"file": (upload.name, upload.data)}, timeout=120)
    response.raise_for_status()


def move_alias(uri: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(uri).set_registered_model_alias("pneumonia-classifier", "champion", version)


async def _load_with_swap(
    url: str,
    uploads: Sequence[Upload],
    requests: int,
    concurrency: int,
    uri: str,
    version: str,
    admin_token: str | None,
) -> tuple[LoadResult, dict]:
    result = LoadResult(concurrency)
    load = asyncio.create_task(
        run_load(f"{url}/api/v1/predict", uploads, concurrency, requests=requests, result=result)
    )
    started = time.perf_counter()
    while len(result.answers) < requests // 4 and not load.done():
        await asyncio.sleep(0.05)
    promote_started = time.perf_counter()
    await asyncio.to_thread(move_alias, uri, version)
    if admin_token:  # swap now rather than at the next poll: every later request must get `version`
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            response = await client.post(
                "/api/v1/admin/reload", headers={"Authorization": f"Bearer {admin_token}"}
            )
            response.raise_for_status()
    promoted = time.perf_counter()
    await load
    first_new = min((a.ended for a in result.answers if a.ok and a.version == version), default=None)
    timing = {
        "new_version": version,
        "promote_started_s": round(promote_started - started, 2),
        "alias_moved_s": round(promoted - started, 2),
        "first_new_answer_s": round(first_new - started, 2) if first_new else None,
        "answers_before_alias_moved": sum(a.ended <= promoted for a in result.answers),
    }
    return result, timing


def run_soak(
    uri: str,
    new_version: str,
    uploads: Sequence[Upload],
    requests: int,
    concurrency: int,
    logs: Path,
    runtime: str = "auto",
    admin_reload: bool = False,
    extra_env: dict[str, str] | None = None,
    settle_s: float = SETTLE_S,
) -> dict:
    """Serve the champion of `uri` (version 1) and move the alias to `new_version` mid-run.

    The service polls the alias every second; with `admin_reload` the swap is also forced through
    /api/v1/admin/reload right after the move (the test uses it, so the swap happens whatever the speed).
    """
    import mlflow  # noqa: F401  (now, not in the middle of the load: the import takes seconds)

    token = "soak-admin-token" if admin_reload else None
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": uri, "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "1"}
    if runtime != "auto":  # auto (ONNX Runtime when the version has it) is the default: leave it unset
        env["PNEUMONIA_ZOO_RUNTIME"] = runtime
    if token:
        env["PNEUMONIA_ZOO_ADMIN_TOKEN"] = token
    env |= extra_env or {}
    with (
        serve(service_command(port), "/readyz", port, logs / "soak-serve.log", env) as server,
        RssSampler(server.process.pid) as rss,
    ):
        loop = event_loop_of(server.process.pid)
        warm_up(server.url, uploads[0])
        time.sleep(IDLE_WAIT_S)
        idle = rss.samples[-1][1]
        result, timing = asyncio.run(
            _load_with_swap(server.url, uploads, requests, concurrency, uri, new_version, token)
        )
        time.sleep(settle_s)
        settled = rss.samples[-1][1]
    summary = result.summary() | {"seconds": round(result.window[1] - result.window[0], 2)}
    return {
        "requests": requests,
        "concurrency": concurrency,
        "runtime": runtime,
        "event_loop": loop,
        "cold_start_s": round(server.cold_start_s, 2),
        "load": {k: summary[k] for k in ("images_per_s", "p50_ms", "p95_ms", "p99_ms", "seconds")},
        "swap": swap_report(result.answers, "1", timing["new_version"]) | timing,
        "rss": rss_growth(result.answers, rss, min(500, requests // 4))
        | settled_vs_idle(idle, settled, settle_s),
        "extra_env": extra_env or {},
    }


def render(data: dict) -> str:
    s, r = data["soak"]["swap"], data["soak"]["rss"]
    rows = [
        ["failed requests", s["failed"], "0", "met" if s["failed"] == 0 else "NOT met"],
        [
            "answers naming an unknown or no version",
            len(s["unknown_versions"]) + s["unnamed"],
            "0",
            "met" if not s["unknown_versions"] and not s["unnamed"] else "NOT met",
        ],
        [
            "workers that moved back to the old version",
            s["workers_moving_back"],
            "0",
            "met" if s["workers_moving_back"] == 0 else "NOT met",
        ],
        [
            "old-version answers sent after the first new one",
            s["stale_after_switch"],
            "0",
            "met" if s["stale_after_switch"] == 0 else "NOT met",
        ],
        [
            f"RSS growth, first vs last {r['window_requests']} requests",
            r["growth"],
            f"< {RSS_GROWTH_TARGET}",
            "met" if r["growth"] is not None and r["growth"] < RSS_GROWTH_TARGET else "NOT met",
        ],
    ]
    soak = data["soak"]
    return "\n".join(
        [
            "# Soak with a hot swap",
            "",
            *report.machine_lines(data["machine"]),
            "",
            f"{soak['requests']} requests at concurrency {soak['concurrency']} (runtime {soak['runtime']}, "
            f"{soak['event_loop']}); version "
            f"{s['new_version']} promoted after {s['answers_before_alias_moved']} answers "
            f"(alias moved at {s['alias_moved_s']} s, first answer from it at {s['first_new_answer_s']} s; "
            f"switch at request #{s['switch_index']} in sending order). Answers per version: "
            f"{s['answers_per_version']}.",
            "",
            f"Load: {soak['load']}; RSS {r['first_mb']} MB -> {r['last_mb']} MB (peak {r['peak_mb']} MB).",
            f"Idle before the load {r.get('idle_mb')} MB; {r.get('settle_s')} s after it "
            f"{r.get('settled_mb')} MB ({r.get('settled_vs_idle')} relative to idle).",
            *([f"Extra environment: {soak['extra_env']}."] if soak.get("extra_env") else []),
            "",
            report.markdown_table(["check", "value", "target", "verdict"], rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="300 requests at concurrency 16")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runtime", choices=("auto", "onnx", "torch"), default="auto")
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--settle-s", type=float, default=SETTLE_S, help="seconds after the load")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="set for the service (repeatable)"
    )
    parser.add_argument("--name", help="result file name (default soak, or soak-quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.concurrency = 300, 16
    folder = args.images or (SHARED_ORIGINALS if SHARED_ORIGINALS.is_dir() else SAMPLE_IMAGES_DIR)
    info = report.machine()
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-soak-") as tmp:
        uri = store.sqlite_uri(Path(tmp))
        store.register_starter(uri)  # version 1, champion
        version = store.register_copy_subprocess(uri, alias=None)  # version 2, not yet champion
        soak = run_soak(
            uri,
            version,
            load_uploads(folder),
            args.requests,
            args.concurrency,
            Path(tmp),
            args.runtime,
            extra_env=dict(item.split("=", 1) for item in args.env),
            settle_s=args.settle_s,
        )
    data = {"machine": info, "images": str(folder), "soak": soak, "rss_growth_target": RSS_GROWTH_TARGET}
    markdown = render(data)
    report.write(args.out, args.name or ("soak-quick" if args.quick else "soak"), data, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
