"""Server processes for the benchmarks: start, time to ready, resident memory, stop."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its children (LitServe's workers are child processes)."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


class RssSampler:
    """Samples a process tree's RSS in a thread; `peak` and the (time, bytes) series afterwards."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), tree_rss(self.process)))
            self._stop.wait(self.interval_s)

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def peak_between(self, start: float, end: float) -> int:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside, default=0)


def event_loop_of(pid: int) -> str:
    """Which event loop a running server really uses: uvloop's extension mapped into it, or not."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    return "uvloop" if "/uvloop/" in maps else "asyncio"


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path
    cold_start_s: float
    notes: dict = field(default_factory=dict)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_tail(log)}")
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.05)  # fine polling: this is also how cold start is timed
    raise TimeoutError(f"{url} not ready within {timeout_s}s:\n{_tail(log)}")


@contextmanager
def serve(
    command: list[str],
    ready_path: str,
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 180,
) -> Iterator[Server]:
    """Start `command` (its own process group), time it to `ready_path` answering 200, stop it after."""
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            tied_to_this_process(command),
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=os.environ | (env or {}),
            start_new_session=True,
        )
    try:
        wait_ready(url + ready_path, process, log, timeout_s)
        yield Server(process, url, log, time.perf_counter() - started)
    finally:
        stop(process)


def tied_to_this_process(command: list[str]) -> list[str]:
    """`command`, sent SIGTERM by the kernel when the thread that starts it dies (setpriv --pdeathsig,
    where util-linux has it): a benchmark or test killed outright (a timeout, SIGKILL) runs no `finally`,
    and its server would otherwise stay behind holding a port and a gigabyte. Elsewhere, as it is."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *command] if setpriv else command


def stop(process: subprocess.Popen, grace_s: float = 15) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


# `pneumonia-zoo serve` in the environment of the Docker image, which has no uvloop: uvicorn's loop
# "auto" would otherwise pick the uvloop that LitServe pulls into a benchmark venv. A module set to None
# in sys.modules makes `import uvloop` raise ImportError, so uvicorn falls back to asyncio; nothing else
# about the command (the CLI, its settings, uvicorn's options) changes.
_WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; sys.argv[0] = 'pneumonia-zoo'; "
    "from pneumonia_zoo.cli import main; sys.exit(main())"
)


def service_command(port: int, uvloop: bool = False) -> list[str]:
    """Our service exactly as users start it: `pneumonia-zoo serve` with its default settings (the app
    factory, h11 with the header timeout, the service's limits).

    asyncio by default, as in the Docker image; `uvloop=True` runs the plain console script, which
    picks uvloop when it is installed (as `make setup`'s venv has it). HTTP is h11 either way:
    `run_server` passes its own h11 protocol class.
    """
    serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if uvloop:
        return [str(BIN / "pneumonia-zoo"), *serve]
    return [sys.executable, "-c", _WITHOUT_UVLOOP, *serve]


def uvicorn_command(app: str, port: int, fast_loop: bool = False) -> list[str]:
    """A plain uvicorn for the peers (the naive server): asyncio + h11 by default, as in the Docker
    image (LitServe pulls uvloop and httptools into a benchmark venv, and uvicorn would pick them
    silently); `fast_loop` asks for both explicitly."""
    loop, http = ("uvloop", "httptools") if fast_loop else ("asyncio", "h11")
    return [
        str(BIN / "uvicorn"),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        loop,
        "--http",
        http,
        "--log-level",
        "warning",
    ]
