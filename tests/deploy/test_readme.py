"""The README, as written: its shell blocks run in order in a copy of this clone.

The copy holds what `git clone` would give (tracked and untracked-but-not-ignored files, mtimes kept so
make sees the installed `.venv`, which is linked in). The environment is a new user's: no activated
venv (`.venv/bin` off PATH), no MLflow or service variables, `DATA` pointing at the small fixture set
(the README's stand-in for the Kaggle download). Ports 8000, 5000 and 5001 become free ones. Blocks marked
`<!-- readme-test: server URL -->` start in the background and must answer URL with 200; `skip` blocks
must say why. Exported variables carry from one block to the next, as in one terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from benchmarks.procs import stop
from pneumonia_zoo.config import Settings
from tests.deploy.readme_blocks import Block, prose_lines, shell_blocks
from tests.servers import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCKS = shell_blocks(README)
BLOCK_TIMEOUT_S = 600
SERVER_TIMEOUT_S = 240
SERVICE_ENV_SETTINGS = {"tracking_uri"}  # read from MLFLOW_TRACKING_URI, not a PNEUMONIA_ZOO_ name


def test_every_block_is_run_or_says_why_not() -> None:
    assert BLOCKS, "no shell blocks found in README.md"
    for block in BLOCKS:
        if block.kind == "skip":
            assert len(block.note) > 10, f"a skipped block must say why: {block}"
        if block.kind == "server":
            assert block.note.startswith("http://127.0.0.1:"), f"a server block needs its URL: {block}"
    assert sum(block.kind == "run" for block in BLOCKS) >= 5


def test_commands_do_not_assume_an_activated_venv() -> None:
    bare = re.compile(r"(^|[;&|(]\s*)(pneumonia-zoo|mlflow|python|pytest|uvicorn|torchrun)\b")
    for block in BLOCKS:
        for line in block.code.splitlines():
            command = re.sub(r"(^|\s)#.*$", "", line).strip()  # a shell comment may name anything
            assert not bare.search(command), f"README.md:{block.line}: `{command}` needs .venv/bin/"


def test_no_commands_hidden_in_indented_prose() -> None:
    """Commands belong in fenced blocks, where this test sees (and runs) them."""
    for number, line in prose_lines(README):
        assert not re.match(r"^ {4,}(\.venv/bin/|make |curl |docker )", line), f"README.md:{number}: {line}"


def test_every_setting_is_documented() -> None:
    text = README.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        if name in SERVICE_ENV_SETTINGS:
            continue
        assert f"`PNEUMONIA_ZOO_{name.upper()}`" in text, f"PNEUMONIA_ZOO_{name.upper()} is not in README.md"
    assert "`MLFLOW_TRACKING_URI`" in text


def clone_copy(destination: Path) -> Path:
    """The files `git clone` would give, with their mtimes, and the installed `.venv` linked in."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(ROOT / ".venv")
    return destination


def user_environment(clone: Path, home: Path) -> dict[str, str]:
    venv_bin = (ROOT / ".venv" / "bin").resolve()
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "PNEUMONIA_ZOO_", "PYTEST_", "VIRTUAL_ENV", "PYTHON"))
    }
    return env | {
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "DATA": str(clone / "tests" / "fixtures" / "chest_xray"),
    }


class Terminal:
    """One shell session across blocks: exported variables and the working directory carry over."""

    def __init__(
        self, clone: Path, env: dict[str, str], ports: dict[str, str], logs: Path, scratch: Path
    ) -> None:
        self.clone, self.env, self.ports, self.logs, self.scratch = clone, env, ports, logs, scratch
        self.state = logs / "state.sh"
        self.state.write_text(f"cd {clone}\n")
        self.servers: list[tuple[subprocess.Popen, Block]] = []

    def localise(self, text: str) -> str:
        for default, free in self.ports.items():
            text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{free}")
            text = text.replace(f"PORT={default}", f"PORT={free}")  # make ui UI_PORT=5001
        # The blocks' outputs under /tmp (a 59 MB starter, a heatmap, an export) stay in the test's folder.
        return text.replace("/tmp/", f"{self.scratch}/")

    def script(self, block: Block, save_state: bool) -> str:
        code = self.localise(block.code)
        tail = f'\nexport -p > {self.state}.new && echo "cd $PWD" >> {self.state}.new' if save_state else ""
        return f"set -euo pipefail\nsource {self.state}\n{code}{tail}\n"

    def spawn(self, block: Block, log: Path, save_state: bool) -> subprocess.Popen:
        """The block in bash, in a process group of its own, its output in `log`."""
        with open(log, "wb") as output:
            return subprocess.Popen(
                ["bash", "-c", self.script(block, save_state)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def run(self, block: Block) -> None:
        log = self.logs / f"block-{block.line}.log"
        process = self.spawn(block, log, save_state=True)
        try:
            returncode = process.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            stop(process)
        output_tail = log.read_text(errors="replace")[-3000:]
        assert returncode == 0, f"{block}\nexited {returncode}:\n{output_tail}"
        Path(f"{self.state}.new").replace(self.state)

    def start(self, block: Block) -> None:
        log = self.logs / f"server-{block.line}.log"
        process = self.spawn(block, log, save_state=False)
        self.servers.append((process, block))
        try:
            wait_http(self.localise(block.note), SERVER_TIMEOUT_S, process, log)
        except (RuntimeError, TimeoutError) as error:
            pytest.fail(f"{block}\n{error}")

    def close(self) -> None:
        for process, _ in reversed(self.servers):
            stop(process)


def job_consumers(pid: int) -> list[str]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "huey_consumer" in command:
            found.append(command)
    return found


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    clone = clone_copy(tmp_path / "clone")
    home = tmp_path / "home"
    home.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = user_environment(clone, home)
    ports = {port: str(free_port()) for port in ("8000", "5000", "5001")}
    env |= {"PORT": ports["8000"], "UI_PORT": ports["5000"]}
    installed = subprocess.run(["make", "--question", ".venv/.installed"], cwd=clone, env=env)
    if installed.returncode != 0:
        pytest.fail("`.venv` is older than its lock or pyproject.toml: run `make setup` first")
    session = Terminal(clone, env, ports, logs, scratch)
    try:
        yield session
    finally:
        session.close()


@pytest.mark.timeout(2400)
def test_readme_blocks_run_as_written(terminal: Terminal) -> None:
    for block in BLOCKS:
        if block.kind == "server":
            terminal.start(block)
        elif block.kind == "run":
            terminal.run(block)
    # `make ui` serves the UI alone: MLflow 3 would add seven job-consumer processes for GenAI jobs.
    for process, block in terminal.servers:
        assert not job_consumers(process.pid), f"MLflow job consumers under {block}"
    # What the blocks leave behind is what they promise: a store beside the clone with the runs in it.
    assert (terminal.clone / "mlflow.db").is_file()
    assert (terminal.clone / "reports" / "compare").is_dir()
