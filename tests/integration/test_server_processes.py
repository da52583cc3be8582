"""A server that a test or benchmark starts dies with it, even when it is killed outright."""

import shutil
import subprocess
import sys
import time

import psutil
import pytest

from benchmarks.procs import ROOT, tied_to_this_process

# The launcher starts a long sleeper as the benchmarks start a server (its own session), prints the
# sleeper's pid and waits; the test then SIGKILLs the launcher, so no `finally` of the launcher runs.
LAUNCHER = """
import subprocess, sys, time
from benchmarks.procs import tied_to_this_process
command = [sys.executable, "-c", "import time; time.sleep(300)"]
if sys.argv[1] == "tied":
    command = tied_to_this_process(command)
server = subprocess.Popen(command, start_new_session=True)
print(server.pid, flush=True)
time.sleep(300)
"""


def _orphan_after_launcher_killed(mode: str, wait_s: float) -> bool:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, mode], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert launcher.stdout is not None
    server = psutil.Process(int(launcher.stdout.readline()))
    time.sleep(0.5)  # the sleeper has exec'd (setpriv, then python)
    launcher.kill()
    launcher.wait(10)
    try:
        server.wait(wait_s)
        return False
    except psutil.TimeoutExpired:
        server.kill()
        return True


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux's setpriv is not installed here")
def test_a_killed_launcher_leaves_no_server_behind() -> None:
    assert tied_to_this_process(["x"])[-1] == "x"
    assert not _orphan_after_launcher_killed("tied", wait_s=10)
    assert _orphan_after_launcher_killed(
        "plain", wait_s=2
    )  # without the tie the server outlives it: the test can fail
