"""`pneumonia-zoo serve`'s process settings: two glibc malloc arenas and one BLAS thread, unless the
operator set their own. Each case runs in a fresh interpreter (both are process-wide)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

# Eight threads allocate at once; glibc's malloc_info then lists the arenas they got.
SCRIPT = """
import ctypes, json, os, tempfile, threading
from pneumonia_zoo.serving.process import tune_serving_process
tune_serving_process()
barrier = threading.Barrier(8)
def work():
    barrier.wait()
    kept = [bytearray(50_000) for _ in range(20)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
handle = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(handle))
libc.fclose(ctypes.c_void_p(handle))
with open(path) as report:
    arenas = report.read().count("<heap nr=")
os.remove(path)
from threadpoolctl import threadpool_info
print(json.dumps({
    "arenas": arenas,
    "blas_threads": sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}),
    "env": os.environ.get("MALLOC_ARENA_MAX"),
}))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_info")


def run(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "OPENBLAS_NUM_THREADS")}
    clean.pop("OMP_NUM_THREADS", None)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=clean | env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_arenas_and_one_blas_thread_by_default() -> None:
    found = run({})
    assert found["arenas"] <= 2 and found["env"] == "2", found  # 8 threads would otherwise get 8+
    assert found["blas_threads"] == [1], found


def test_the_operators_settings_win() -> None:
    found = run({"MALLOC_ARENA_MAX": "8", "OPENBLAS_NUM_THREADS": "2"})
    assert found["arenas"] > 2 and found["env"] == "8", found
    assert found["blas_threads"] == [2], found
