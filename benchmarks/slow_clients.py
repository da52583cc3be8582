"""Slow and stalled clients (issue 22, findings 3 and 4): does the service still answer everyone else?

`pneumonia-zoo serve` runs with its default settings and the starter model. Each case opens hostile
sockets, then for its duration polls `/healthz` and `/readyz` every 0.2 s and sends a normal 157 KB
upload once a second; it records their statuses and slowest answers. Cases:

- stalled-bodies: 24 sockets each declare a 23 MB upload, send its first part header and stall (the
  upload budget used to reserve every declared byte: a normal upload waited 30 s);
- slowloris: 300 sockets send half a request header and stall (uvicorn's limit counted sockets: 64 of
  them made the probes answer 503);
- both at once.

Targets (issue 22's acceptance): every probe 200 within 1 s, every normal upload 200 within 5 s.
(benchmarks/memory.py measures memory under hostile uploads; this file is about connections.)

    python benchmarks/slow_clients.py            # about a minute
    python benchmarks/slow_clients.py --quick    # a few seconds a case, to check it runs
"""

import argparse
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report  # noqa: E402
from benchmarks.procs import free_port, serve, service_command  # noqa: E402
from benchmarks.store import register_starter, sqlite_uri  # noqa: E402
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR  # noqa: E402

PROBE_TARGET_S = 1.0
UPLOAD_TARGET_S = 5.0
NORMAL_UPLOAD = SAMPLE_IMAGES_DIR / "IM-0027-0001.jpeg"  # 157 KB
STALLED_HEAD = (
    b"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 23000000\r\n"
    b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpeg"\r\n\r\n'
)
SLOWLORIS_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished
CASES = {
    "stalled-bodies": [(STALLED_HEAD, 24)],
    "slowloris": [(SLOWLORIS_HEAD, 300)],
    "both": [(STALLED_HEAD, 24), (SLOWLORIS_HEAD, 300)],
}


def _open(port: int, head: bytes, stack: ExitStack) -> None:
    try:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        sock.sendall(head)
    except OSError:
        pass  # refused or reset: the server is defending itself, which is what is measured


def _timed(call) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        status = call().status_code
    except httpx.HTTPError:
        status = 0  # no answer at all
    return status, time.perf_counter() - started


def measure(url: str, port: int, hostile: list[tuple[bytes, int]], seconds: float) -> dict:
    probes: list[tuple[int, float]] = []
    uploads: list[tuple[int, float]] = []
    image = NORMAL_UPLOAD.read_bytes()
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                for path in ("/healthz", "/readyz"):
                    probes.append(_timed(lambda path=path: http.get(path)))
                time.sleep(0.2)

    def upload() -> None:
        files = {"file": (NORMAL_UPLOAD.name, image, "image/jpeg")}
        while not stop.is_set():
            uploads.append(_timed(lambda: httpx.post(f"{url}/api/v1/predict", files=files, timeout=60)))
            time.sleep(1)

    with ExitStack() as stack:
        for head, count in hostile:
            for _ in range(count):
                _open(port, head, stack)
        workers = [threading.Thread(target=poll), threading.Thread(target=upload)]
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
    return {"probes": _summary(probes, PROBE_TARGET_S), "uploads": _summary(uploads, UPLOAD_TARGET_S)}


def _summary(answers: list[tuple[int, float]], target_s: float) -> dict:
    statuses = [status for status, _ in answers]
    slowest = max((seconds for _, seconds in answers), default=0.0)
    return {
        "count": len(answers),
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "slowest_s": round(slowest, 3),
        "met": bool(answers) and all(s == 200 for s in statuses) and slowest <= target_s,
    }


def run(seconds: float) -> dict:
    machine = report.machine()
    results = {}
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-slow-") as tmp:
        uri = sqlite_uri(Path(tmp))
        register_starter(uri)
        port = free_port()
        env = {"MLFLOW_TRACKING_URI": uri}
        with serve(service_command(port), "/readyz", port, Path(tmp) / "serve.log", env) as server:
            for name, hostile in CASES.items():
                results[name] = measure(server.url, port, hostile, seconds)
                time.sleep(1)
    return {"machine": machine, "seconds_per_case": seconds, "cases": results}


def render(data: dict) -> str:
    rows = []
    for name, case in data["cases"].items():
        for kind, target in (("probes", PROBE_TARGET_S), ("uploads", UPLOAD_TARGET_S)):
            summary = case[kind]
            statuses = ", ".join(f"{s}: {n}" for s, n in summary["statuses"].items())
            verdict = "met" if summary["met"] else "NOT met"
            rows.append(
                [name, kind, statuses, f"{summary['slowest_s']:.2f} s", f"200 within {target:g} s: {verdict}"]
            )
    return "\n".join(
        [
            "# Slow and stalled clients",
            "",
            *report.machine_lines(data["machine"]),
            "",
            f"Each case held its hostile sockets for {data['seconds_per_case']:g} s.",
            "",
            report.markdown_table(["case", "requests", "statuses", "slowest", "target"], rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 s a case")
    parser.add_argument(
        "--seconds", type=float, default=15, help="per case (past the grace and header timeouts)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    data = run(3 if args.quick else args.seconds)
    markdown = render(data)
    report.write(args.out, "slow-clients-quick" if args.quick else "slow-clients", data, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
