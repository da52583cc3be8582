"""The live loop's targets (issue 19), side by side in one run:

    python benchmarks/audit.py [--quick] [--only throughput|sigkill|monitor] [--out benchmarks/results]

- throughput: `pneumonia-zoo serve` (defaults, the starter model) with recording on (SQLite beside the
  store, WAL, synchronous=FULL) and off (PNEUMONIA_ZOO_AUDIT_URL=off), at concurrency 32, in alternating
  order over --rounds rounds; target: on >= 0.95 x off.
- sigkill: --requests (200) at concurrency 8, the server's process group SIGKILLed after --kill-after
  (60) answers, the service started again on the same files: every answered request_id must be found
  (target: 0 lost).
- monitor: an audit database filled with --records (100,000) records (two versions, 10% shadow-scored,
  10% labelled, drift references), then GET /api/v1/monitor on a running service and the monitor
  in-process, --calls times each; target: p95 < 200 ms.

Writes audit.json and audit.md to --out (audit-quick.* with --quick) and prints the Markdown. Run it
from the repository root after `make setup`, on a quiet machine: the server and the load generator
share the cores.
"""

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/audit.py`

from benchmarks import report, store
from benchmarks.loadgen import Upload, load_uploads, run_load
from benchmarks.procs import ROOT, free_port, serve, service_command
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR

SHARED_ORIGINALS = ROOT.parent / "shared" / "data" / "originals"
MODEL = "pneumonia-classifier"
TARGETS = {"recording_vs_off": 0.95, "lost_records": 0, "monitor_p95_ms": 200.0}


def uploads(limit: int) -> list[Upload]:
    folder = SHARED_ORIGINALS if SHARED_ORIGINALS.is_dir() else SAMPLE_IMAGES_DIR
    return load_uploads(folder, limit)


def environment(uri: str, audit: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": uri, "PNEUMONIA_ZOO_AUDIT_URL": audit}


# -- throughput: recording on against off ----------------------------------------------------------


def throughput(uri: str, work: Path, args: argparse.Namespace) -> dict:
    images = uploads(args.images)
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    for round_ in range(args.rounds):
        order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
        for mode in order:
            audit = f"sqlite:///{work / f'throughput-{round_}.db'}" if mode == "on" else "off"
            port = free_port()
            with serve(
                service_command(port), "/readyz", port, work / f"{mode}-{round_}.log", environment(uri, audit)
            ) as server:
                result = asyncio.run(
                    run_load(server.url + "/api/v1/predict", images, 32, args.duration, warmup_s=args.warmup)
                )
            runs[mode].append(result.summary())
    on = statistics.mean(r["images_per_s"] or 0 for r in runs["on"])
    off = statistics.mean(r["images_per_s"] or 0 for r in runs["off"])
    return {
        "runs": runs,
        "on_images_per_s": round(on, 2),
        "off_images_per_s": round(off, 2),
        "ratio": round(on / off, 3) if off else None,
    }


# -- SIGKILL under load ------------------------------------------------------------------------------


async def _load_until_killed(url: str, images: list[Upload], pid: int, args: argparse.Namespace) -> list[str]:
    answered: list[str] = []
    counter = iter(range(args.requests))
    killed = asyncio.Event()

    async def worker(session: aiohttp.ClientSession) -> None:
        for n in counter:
            if killed.is_set():
                return
            form = aiohttp.FormData()
            upload = images[n % len(images)]
            form.add_field("file", upload.data, filename=upload.name, content_type="image/jpeg")
            try:
                async with session.post(url + "/api/v1/predict", data=form) as response:
                    if response.status != 200:
                        continue
                    answered.append((await response.json())["request_id"])
            except (aiohttp.ClientError, TimeoutError):
                continue
            if len(answered) >= args.kill_after and not killed.is_set():
                killed.set()
                os.killpg(pid, signal.SIGKILL)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(8)))
    return answered


def sigkill(uri: str, work: Path, args: argparse.Namespace) -> dict:
    audit = f"sqlite:///{work / 'sigkill.db'}"
    images = uploads(args.images)
    port = free_port()
    with serve(
        service_command(port), "/readyz", port, work / "sigkill-1.log", environment(uri, audit)
    ) as server:
        answered = asyncio.run(_load_until_killed(server.url, images, server.process.pid, args))
        server.process.wait(30)
    port = free_port()
    with serve(
        service_command(port), "/readyz", port, work / "sigkill-2.log", environment(uri, audit)
    ) as server:
        lost = [
            rid
            for rid in answered
            if httpx.get(f"{server.url}/api/v1/predictions/{rid}", timeout=30).status_code != 200
        ]
    return {
        "requests": args.requests,
        "kill_after": args.kill_after,
        "answered": len(answered),
        "lost": len(lost),
    }


# -- the monitor over many records -------------------------------------------------------------------


def fill(url: str, records: int, seed: int = 0) -> None:
    """`records` answered records (versions 1 and 2), a tenth also shadow-scored, a tenth labelled."""
    from sqlalchemy import insert, select, update

    from pneumonia_zoo.audit.feedback import latest_label
    from pneumonia_zoo.audit.records import PredictionRecord, epoch_ms, now
    from pneumonia_zoo.audit.schema import FeedbackRow, PredictionRow
    from pneumonia_zoo.audit.trail import AuditTrail
    from pneumonia_zoo.package.format import ReferenceDistributions

    rng = np.random.default_rng(seed)
    trail = AuditTrail(url, batch_size=5000)
    trail.start()
    for version in ("1", "2"):
        reference = ReferenceDistributions.from_scores(rng.beta(0.5, 0.5, 2000), rng.gamma(2.0, 0.3, 2000))
        trail.remember_version(MODEL, version, "efficientnet_lite0", reference.model_dump())
    start = time.time() - 6 * 86400  # spread over six days: inside the default 7-day window
    answered = int(records / 1.1)
    futures, labels = [], []
    for first in range(0, answered, 5000):
        batch = []
        for i in range(first, min(first + 5000, answered)):
            truth = int(rng.random() < 0.6)
            p = float(np.clip(rng.beta(2 + 4 * truth, 6 - 4 * truth), 0, 1))
            moment = datetime.fromtimestamp(start + i * (6 * 86400 / answered), UTC)
            common = {
                "channel": "api",
                "model_name": MODEL,
                "architecture": "efficientnet_lite0",
                "runtime": "onnx",
                "operating_point": "balanced",
                "threshold": 0.74,
                "uncertain": abs(p - 0.74) < 0.1,
                "latency_ms": 40.0,
                "created_at": moment,
                "input_sha256": f"{i:064x}",
                "input_bytes": 100_000,
            }
            kind, version = ("champion", "1") if i % 5 else ("pinned", "2")
            guard = float(rng.gamma(2.0, 0.3))
            batch.append(
                PredictionRecord(
                    request_id=f"req-{i}",
                    kind=kind,
                    version=version,
                    p_pneumonia=p,
                    label="PNEUMONIA" if p >= 0.74 else "NORMAL",
                    guard_score=guard,
                    flagged=guard > 1,
                    reasons=[],
                    **common,
                )
            )
            if i % 10 == 1:  # a champion answer also scored by the challenger
                q = float(np.clip(p + rng.normal(0, 0.1), 0, 1))
                batch.append(
                    PredictionRecord(
                        request_id=f"req-{i}",
                        kind="shadow",
                        version="2",
                        p_pneumonia=q,
                        label="PNEUMONIA" if q >= 0.74 else "NORMAL",
                        champion_version="1",
                        champion_label="PNEUMONIA" if p >= 0.74 else "NORMAL",
                        guard_score=guard,
                        flagged=guard > 1,
                        reasons=[],
                        **common,
                    )
                )
            if i % 10 == 1:  # a tenth labelled: the shadow-scored ones (pairs)
                labels.append((f"req-{i}", "PNEUMONIA" if truth else "NORMAL"))
        futures.append(trail.submit(batch))
    for future in futures:
        future.result(timeout=600)
    moment = now()
    with trail.engine.begin() as connection:
        connection.execute(
            insert(FeedbackRow),
            [
                {
                    "request_id": rid,
                    "source": "bench",
                    "label": label,
                    "patient": None,
                    "created_at": moment,
                    "updated_at": moment,
                    "updated_ms": epoch_ms(moment),
                }
                for rid, label in labels
            ],
        )
        # The labels onto their records, as POST /api/v1/feedback does one by one.
        connection.execute(
            update(PredictionRow)
            .where(PredictionRow.request_id.in_(select(FeedbackRow.request_id)))
            .values(truth=latest_label())
        )
    trail.stop()


def timings(call, calls: int) -> dict:  # type: ignore[no-untyped-def]
    call()  # warm: the first call compiles the queries and fills SQLite's page cache
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        seconds.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(statistics.median(seconds), 1),
        "p95_ms": round(float(np.percentile(seconds, 95)), 1),
        "max_ms": round(max(seconds), 1),
        "calls": calls,
    }


def monitor(uri: str, work: Path, args: argparse.Namespace) -> dict:
    from pneumonia_zoo.audit.monitor import Window
    from pneumonia_zoo.audit.trail import AuditTrail

    audit = f"sqlite:///{work / 'monitor.db'}"
    started = time.perf_counter()
    fill(audit, args.records)
    filled_s = time.perf_counter() - started
    trail = AuditTrail(audit)
    in_process = timings(lambda: trail.monitor(MODEL, Window.parse("7d")), args.calls)
    counts = trail.monitor(MODEL, Window.parse("7d"))["versions"]
    trail.engine.dispose()
    port = free_port()
    with (
        serve(
            service_command(port), "/readyz", port, work / "monitor.log", environment(uri, audit)
        ) as server,
        httpx.Client(timeout=30) as client,
    ):
        http = timings(lambda: client.get(f"{server.url}/api/v1/monitor").raise_for_status(), args.calls)
    return {
        "records": sum(v["predictions"] for v in counts.values()),
        "labelled": sum(v["labelled"] for v in counts.values()),
        "fill_seconds": round(filled_s, 1),
        "http": http,
        "in_process": in_process,
    }


def markdown(data: dict) -> str:
    lines = ["# Live loop: recording, durability, the monitor", ""]
    rows = []
    if "throughput" in data:
        t = data["throughput"]
        rows.append(
            [
                "throughput at c=32, recording on / off",
                f"{t['on_images_per_s']} / {t['off_images_per_s']} images/s = {t['ratio']}",
                f">= {TARGETS['recording_vs_off']}",
                "met" if (t["ratio"] or 0) >= TARGETS["recording_vs_off"] else "missed",
            ]
        )
    if "sigkill" in data:
        s = data["sigkill"]
        rows.append(
            [
                f"SIGKILL after {s['kill_after']} answers ({s['requests']} requests, c=8)",
                f"{s['lost']} of {s['answered']} answered records lost",
                "0",
                "met" if s["lost"] == 0 else "missed",
            ]
        )
    if "monitor" in data:
        m = data["monitor"]
        rows.append(
            [
                f"GET /api/v1/monitor over {m['records']} records ({m['labelled']} labelled)",
                f"median {m['http']['median_ms']} ms, p95 {m['http']['p95_ms']} ms "
                f"(in-process p95 {m['in_process']['p95_ms']} ms)",
                f"p95 < {TARGETS['monitor_p95_ms']:.0f} ms",
                "met" if m["http"]["p95_ms"] < TARGETS["monitor_p95_ms"] else "missed",
            ]
        )
    lines.append(report.markdown_table(["measure", "result", "target", "verdict"], rows))
    lines += ["", *report.machine_lines(data["machine"])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run: short loads, 10,000 records.")
    parser.add_argument("--only", choices=("throughput", "sigkill", "monitor"), action="append")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds measured per throughput run.")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="On/off pairs, in alternating order.")
    parser.add_argument("--images", type=int, default=32, help="Distinct uploads cycled through.")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--kill-after", type=int, default=60)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds, args.records, args.calls = 4.0, 1.0, 1, 10_000, 5
    parts = args.only or ["throughput", "sigkill", "monitor"]
    data: dict = {"machine": report.machine(), "targets": TARGETS, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-audit-bench-") as tmp:
        work = Path(tmp)
        uri = store.sqlite_uri(work)
        store.register_starter(uri)
        for part in parts:
            data[part] = {"throughput": throughput, "sigkill": sigkill, "monitor": monitor}[part](
                uri, work, args
            )
    text = markdown(data)
    report.write(args.out, "audit-quick" if args.quick else "audit", data, text)
    print(text)


if __name__ == "__main__":
    main()
