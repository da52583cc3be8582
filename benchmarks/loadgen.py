"""An async HTTP load generator: N workers post X-ray uploads back to back and record every answer.

aiohttp rather than httpx: the generator shares the machine's cores with the server it measures,
and aiohttp spends about half the client CPU per request that httpx does.
"""

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


@dataclass
class Answer:
    worker: int
    started: float  # perf_counter seconds
    ended: float
    status: int
    version: str | None = None  # the model version the answer names, when it names one
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class LoadResult:
    concurrency: int
    answers: list[Answer] = field(default_factory=list)
    window: tuple[float, float] = (0.0, 0.0)  # the measured span; warm-up answers end before it

    def measured(self) -> list[Answer]:
        """Answers completed inside the window: completions per second is the throughput."""
        start, end = self.window
        return [a for a in self.answers if start <= a.ended <= end]

    def summary(self) -> dict:
        answers = self.measured()
        latencies = np.array([a.latency_ms for a in answers if a.ok]) if answers else np.array([])
        span = self.window[1] - self.window[0]
        ok = sum(a.ok for a in answers)

        def pct(q: float) -> float | None:
            return round(float(np.percentile(latencies, q)), 1) if len(latencies) else None

        return {
            "concurrency": self.concurrency,
            "requests": len(answers),
            "errors": len(answers) - ok,
            "images_per_s": round(ok / span, 2) if span > 0 else None,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "seconds": round(span, 2),
        }


def load_uploads(folder: Path, limit: int | None = None) -> list[Upload]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpeg", ".jpg", ".png"})
    return [Upload(p.name, p.read_bytes()) for p in paths[:limit]]


def _version_of(body: bytes) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    model = answer.get("model") if isinstance(answer, dict) else None
    return str(model["version"]) if isinstance(model, dict) and "version" in model else None


async def _post(session: aiohttp.ClientSession, url: str, upload: Upload, worker: int) -> Answer:
    form = aiohttp.FormData()
    form.add_field("file", upload.data, filename=upload.name, content_type="image/jpeg")
    started = time.perf_counter()
    try:
        async with session.post(url, data=form) as response:
            body = await response.read()
            answer = Answer(worker, started, time.perf_counter(), response.status)
            if response.status == 200:
                answer.version = _version_of(body)
            else:
                answer.error = body[:200].decode("utf-8", "replace")
            return answer
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Answer(worker, started, time.perf_counter(), 0, error=f"{type(exc).__name__}: {exc}")


async def run_load(
    url: str,
    uploads: Sequence[Upload],
    concurrency: int,
    duration_s: float | None = None,
    requests: int | None = None,
    warmup_s: float = 0.0,
    timeout_s: float = 120.0,
    result: LoadResult | None = None,
) -> LoadResult:
    """`concurrency` workers post `uploads` round-robin, for `warmup_s + duration_s` or `requests` in all.

    With `requests`, everything is measured (no warm-up): the soak counts every answer. Pass
    `result` to watch answers arrive while the load runs.
    """
    if (duration_s is None) == (requests is None):
        raise ValueError("give exactly one of duration_s and requests")
    result = result or LoadResult(concurrency)
    counter = iter(range(10**9))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    start = time.perf_counter()
    measure_from = start + (warmup_s if duration_s is not None else 0.0)
    stop_at = measure_from + duration_s if duration_s is not None else float("inf")

    async def worker(index: int, session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            n = next(counter)
            if requests is not None and n >= requests:
                return
            result.answers.append(await _post(session, url, uploads[n % len(uploads)], index))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(i, session) for i in range(concurrency)))
    end = stop_at if duration_s is not None else time.perf_counter()
    result.window = (measure_from, end)
    return result
