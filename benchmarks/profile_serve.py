"""Where the service's CPU goes under load: py-spy against `pneumonia-zoo serve`, the top entries printed.

Our service runs as users start it (`pneumonia-zoo serve`, asyncio + h11, default settings, the starter
as champion in a temporary registry); the load generator posts the full-resolution originals at
`--concurrency` for `--duration` seconds after a warm-up, while `py-spy record --threads --nonblocking`
samples the server (busy samples only: the many idle threads would drown the rest). The collapsed stacks
are kept (`profile.txt`: load them in https://www.speedscope.app or flamegraph.pl) and summarised as
shares of all samples: our functions inclusive (anywhere on the stack), every function self (the
innermost frame: where the time is spent), and each thread. Run it on a quiet machine: the load
generator shares the cores.

    python benchmarks/profile_serve.py                      # c = 8, 15 s: about a minute
    python benchmarks/profile_serve.py --concurrency 32 --duration 20 --top 40
    python benchmarks/profile_serve.py --env PNEUMONIA_ZOO_MAX_BATCH_SIZE=1 --name profile-nobatch

Writes <name>.json, <name>.md and <name>.txt (the collapsed stacks) to --out (default
benchmarks/results; <name> is profile, or profile-quick with --quick).
"""

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/profile_serve.py`

from benchmarks import report, store  # noqa: E402
from benchmarks.loadgen import load_uploads, run_load  # noqa: E402
from benchmarks.procs import BIN, ROOT, event_loop_of, free_port, serve, service_command  # noqa: E402
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR  # noqa: E402

SHARED_ORIGINALS = ROOT.parent / "shared" / "data" / "originals"
WARMUP_S = 3.0
RATE = 100  # samples per second
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`score (pneumonia_zoo/stats/outliers.py:87)` -> `score (pneumonia_zoo/stats/outliers.py)`: a
    function's samples together, whatever line they were on; site-packages paths shortened."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = re.sub(r"^.*/site-packages/", "", match["file"])
    file = re.sub(r"^.*/(pneumonia_zoo|benchmarks)/", r"\1/", file)
    return f"{match['function']} ({file})"


def summarise(collapsed: str, top: int) -> dict:
    """Shares of all samples: per function inclusive and self, and per thread."""
    inclusive: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        count = int(match["count"])
        frames = match["stack"].split(";")
        thread = ""
        if frames[0].startswith(("thread", "process")):  # --threads puts the thread first
            thread, frames = frames[0], frames[1:]
        total += count
        threads[thread or "?"] += count
        names = [frame_name(frame) for frame in frames]
        for name in set(names):
            inclusive[name] += count
        if names:
            innermost[names[-1]] += count

    def shares(counter: Counter[str]) -> list[dict]:
        return [
            {"name": name, "samples": n, "share": round(n / total, 4)} for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "inclusive": shares(Counter({k: n for k, n in inclusive.items() if "(pneumonia_zoo/" in k})),
        "self": shares(innermost),
        "threads": shares(threads),
    }


def record(pid: int, seconds: float, raw: Path) -> subprocess.Popen:
    """py-spy on `pid` for `seconds`, collapsed stacks with thread ids into `raw`."""
    command = [
        str(BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--threads",
        "--nonblocking",
        "--format",
        "raw",
        "--rate",
        str(RATE),
        "--duration",
        str(int(round(seconds))),
        "--output",
        str(raw),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run(concurrency: int, duration_s: float, top: int, folder: Path, env: dict[str, str], raw: Path) -> dict:
    machine = report.machine()
    uploads = load_uploads(folder)
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-profile-") as tmp:
        uri = store.sqlite_uri(Path(tmp))
        store.register_starter(uri)
        port = free_port()
        service_env = {"MLFLOW_TRACKING_URI": uri} | env
        with serve(service_command(port), "/readyz", port, Path(tmp) / "serve.log", service_env) as server:
            loop = event_loop_of(server.process.pid)
            url = f"{server.url}/api/v1/predict"
            spy: list[subprocess.Popen] = []

            def start_spy() -> None:  # once the warm-up is over, for the measured window only
                time.sleep(WARMUP_S)
                spy.append(record(server.process.pid, duration_s, raw))

            starter = threading.Thread(target=start_spy, daemon=True)
            starter.start()
            load = asyncio.run(run_load(url, uploads, concurrency, duration_s=duration_s, warmup_s=WARMUP_S))
            starter.join()
            _, errors = spy[0].communicate(timeout=120)
            if spy[0].returncode != 0:
                raise SystemExit(f"py-spy failed ({spy[0].returncode}): {errors.strip()[-2000:]}")
    summary = summarise(raw.read_text(), top)
    return {
        "machine": machine,
        "event_loop": loop,
        "images": str(folder),
        "concurrency": concurrency,
        "duration_s": duration_s,
        "rate_hz": RATE,
        "extra_env": env,
        "load": load.summary(),
        "profile": summary,
    }


def render(data: dict) -> str:
    profile, load = data["profile"], data["load"]

    def table(rows: list[dict], what: str) -> str:
        return report.markdown_table(
            [what, "share of samples", "samples"],
            [[f"`{row['name']}`", f"{row['share']:.1%}", row["samples"]] for row in rows],
        )

    return "\n".join(
        [
            "# Profile of the service under load",
            "",
            *report.machine_lines(data["machine"]),
            "",
            f"`pneumonia-zoo serve` ({data['event_loop']}), concurrency {data['concurrency']}, "
            f"{data['duration_s']:g} s sampled at {data['rate_hz']} Hz after {WARMUP_S:g} s of warm-up "
            f"(busy samples only, every thread): {profile['samples']} samples. Load meanwhile: "
            f"{load['images_per_s']} img/s, p50 {load['p50_ms']} ms, {load['errors']} errors.",
            *([f"Extra environment: {data['extra_env']}."] if data["extra_env"] else []),
            "",
            "## Our functions, inclusive (the function or anything it called)",
            "",
            table(profile["inclusive"], "function"),
            "",
            "## Self (the innermost frame)",
            "",
            table(profile["self"], "function"),
            "",
            "## Threads",
            "",
            table(profile["threads"], "thread"),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds sampled (after the warm-up)")
    parser.add_argument("--top", type=int, default=25, help="entries per table")
    parser.add_argument("--images", type=Path, default=None, help="default: ../shared/data/originals")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="for the service")
    parser.add_argument("--quick", action="store_true", help="5 s at concurrency 4, to check it runs")
    parser.add_argument("--name", help="result file name (default profile, or profile-quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.duration = 4, 5.0
    name = args.name or ("profile-quick" if args.quick else "profile")
    folder = args.images or (SHARED_ORIGINALS if SHARED_ORIGINALS.is_dir() else SAMPLE_IMAGES_DIR)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(item.split("=", 1) for item in args.env)
    data = run(args.concurrency, args.duration, args.top, folder, env, args.out / f"{name}.txt")
    markdown = render(data)
    report.write(args.out, name, data, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
