"""The image's install steps replayed without Docker: the Dockerfile is read, not restated.

Builder stage: its WORKDIR and COPY lines are mirrored under a temporary root (through .dockerignore),
its RUN lines (all calls of docker/install.sh) run there into a fresh virtual environment. Runtime stage:
the root is emptied but for what `COPY --from=builder` keeps, its COPY lines are mirrored, and its CMD
and HEALTHCHECK run with its ENV. So the Dockerfile, the script and this test cannot drift apart.

The replayed image is the default one (`docker build .`: the last stage, with the stage it is built FROM
folded in): the serving lock without PyTorch. `make test-container` builds both targets in Docker.

Cached like Docker's layer cache: the replay root is a fixed folder under ~/.cache/pneumonia-zoo (venvs
hold absolute paths), and the venv the dependency RUN makes is kept as a hard-linked snapshot keyed by
that RUN, the files copied before it and the build arguments. An unchanged lock costs seconds instead
of 2-3 minutes of pip (and several GB written); the project RUN and everything after it always run.
`make test-container` builds the real image in Docker on top of this.
"""

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.dockerfile_model import (
    ROOT,
    Instruction,
    Stage,
    copy_of,
    healthcheck_command,
    ignore_patterns,
    is_ignored,
    key_values,
    parse,
    resolved,
)
from tests.servers import free_port, running, wait_http

pytestmark = pytest.mark.slow


class Replay:
    def __init__(self, root: Path):
        self.root = root
        self.workdir = "/"
        self.patterns = ignore_patterns()

    def path(self, container_path: str) -> Path:
        """A container path under the replay root."""
        absolute = container_path if container_path.startswith("/") else f"{self.workdir}/{container_path}"
        return self.root / os.path.normpath(absolute).lstrip("/")

    def map_word(self, word: str) -> str:
        """Container absolute paths in a command line, moved under the root (`/opt/venv` -> ROOT/opt/venv)."""
        key, eq, value = word.partition("=")
        if eq and re.fullmatch(r"[A-Za-z_]\w*", key):
            return f"{key}={self.map_word(value)}"
        return str(self.path(word)) if word.startswith("/") else word

    def copy(self, sources: list[str], dest: str) -> None:
        target = self.path(dest)
        for source in sources:
            origin = ROOT / source
            assert origin.exists(), f"COPY {source}: missing from the build context"
            files = [p for p in origin.rglob("*") if p.is_file()] if origin.is_dir() else [origin]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if is_ignored(relative, self.patterns):
                    continue
                inside = file.relative_to(origin) if origin.is_dir() else Path(file.name)
                destination = target / inside if origin.is_dir() or dest.endswith("/") else target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, destination)


def environment(stage: Stage, replay: Replay, base: dict[str, str]) -> dict[str, str]:
    """The stage's ENV, its paths moved under the replay root; $PATH stays this machine's own."""
    env = dict(base)
    for instruction in stage.all("ENV"):
        for key, value in key_values(instruction).items():
            if key == "PATH":
                parts = value.split(":")
                env[key] = ":".join(
                    base["PATH"] if part in ("$PATH", "${PATH}") else replay.map_word(part) for part in parts
                )
            else:
                env[key] = replay.map_word(value)
    return env


CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pneumonia-zoo" / "install-replay"


@pytest.fixture
def replay_root() -> Iterator[Path]:
    """The replayed filesystem at a fixed path (one test at a time: a lock), emptied before use."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        root = CACHE / "root"
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(CACHE / "kept", ignore_errors=True)
        yield root
        shutil.rmtree(CACHE / "kept", ignore_errors=True)


def layer_key(instruction: Instruction, copied: list[str], args: dict[str, str]) -> str:
    """What Docker's cache keys a RUN on: the instruction, the files copied before it, the build args."""
    digest = hashlib.sha256(instruction.args.encode())
    digest.update(repr(sorted(args.items())).encode())
    digest.update(sys.version.encode())
    for source in sorted(copied):
        for file in sorted(p for p in [ROOT / source, *(ROOT / source).rglob("*")] if p.is_file()):
            digest.update(file.relative_to(ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def restore_layer(key: str, venv: Path) -> bool:
    snapshot = CACHE / f"layer-{key}"
    if not (snapshot / "bin" / "python").exists():
        return False
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(snapshot), str(venv)], check=True, timeout=600)
    return True


def save_layer(key: str, venv: Path) -> None:
    """Hard links: the later steps add files and unlink some, and never write into an existing one."""
    for old in CACHE.glob("layer-*"):
        shutil.rmtree(old, ignore_errors=True)
    partial = CACHE / f"partial-{key}"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["cp", "-al", str(venv), str(partial)], check=True, timeout=600)
    partial.rename(CACHE / f"layer-{key}")


def test_the_image_install_replayed_in_a_fresh_venv(tmp_path: Path, replay_root: Path) -> None:
    global_args, stages = parse()
    builder, runtime = stages[0], resolved(stages, stages[-1])
    replay = Replay(replay_root)
    base_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("PNEUMONIA_ZOO_")
    }
    base_env["PYTHON"] = str(Path(sys.base_prefix) / "bin" / "python3")  # the interpreter, not this venv
    base_env["PATH"] = os.pathsep.join(
        p for p in base_env["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent
    )
    args: dict[str, str] = {}  # the default image takes no build argument but the base

    # --- builder
    env = dict(base_env)
    copied: list[str] = []
    cached = False
    for instruction in builder.instructions:
        if instruction.keyword == "WORKDIR":
            replay.workdir = instruction.args
            replay.path(".").mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            copy = copy_of(instruction)
            assert "from" not in copy.flags
            replay.copy(copy.sources, copy.dest)
            copied += copy.sources
        elif instruction.keyword == "ENV":
            env |= {k: replay.map_word(v) for k, v in key_values(instruction).items()}
        elif instruction.keyword == "RUN":
            words = shlex.split(instruction.args)
            assigned = {}
            while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
                key, _, value = words.pop(0).partition("=")
                assigned[key] = args.get(key, value) if re.fullmatch(r"\$\{?\w+\}?", value) else value
            assert words[0] == "docker/install.sh", (
                f"line {instruction.line}: only docker/install.sh is replayed"
            )
            command = ["bash", words[0], *(replay.map_word(w) for w in words[1:])]
            deps_layer = words[1:] and words[-1] == "deps"
            key = layer_key(instruction, copied, args)
            venv = replay.path(words[1])
            if deps_layer and restore_layer(key, venv):
                cached = True
                continue
            result = subprocess.run(
                command, cwd=replay.path("."), env=env | assigned, capture_output=True, text=True, timeout=900
            )
            assert result.returncode == 0, (
                f"RUN {instruction.args}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
            )
            if deps_layer:
                save_layer(key, venv)
    print(f"dependency layer: {'restored from the cache' if cached else 'installed and cached'}")

    # --- runtime: a new filesystem holding only what it copies from the builder
    kept = []
    for instruction in runtime.all("COPY"):
        copy = copy_of(instruction)
        if "from" in copy.flags:
            assert copy.flags["from"] == builder.name and copy.sources == [copy.dest], (
                "the replay keeps builder paths in place: copy them to the same path"
            )
            kept.append(replay.path(copy.dest))
    holding = CACHE / "kept"
    holding.mkdir()
    for index, path in enumerate(kept):
        shutil.move(path, holding / str(index))
    shutil.rmtree(replay.root)
    for index, path in enumerate(kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(holding / str(index), path)

    replay.workdir = "/"
    for instruction in runtime.instructions:
        if instruction.keyword == "WORKDIR":
            replay.workdir = instruction.args
            replay.path(".").mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY" and "from" not in copy_of(instruction).flags:
            copy = copy_of(instruction)
            replay.copy(copy.sources, copy.dest)
    app_dir = replay.path(".")
    env = environment(runtime, replay, base_env)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"  # not the image's shared /tmp file
    venv_python = replay.path("/opt/venv/bin/python")

    # The package is the installed one (not editable: no source tree is left), and the CLI runs.
    probe = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import importlib.util, pneumonia_zoo, onnxruntime; "
            "from pneumonia_zoo.resources import STARTER_DIR; "
            "print(pneumonia_zoo.__file__, STARTER_DIR.is_dir()); "
            "print(onnxruntime.__version__, importlib.util.find_spec('torch') is None)",
        ],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    location, versions = probe.stdout.strip().splitlines()[-2:]
    package_file, starter_found = location.split()
    assert Path(package_file).is_relative_to(replay.path("/opt/venv")), package_file
    assert "site-packages" in package_file and starter_found == "True"
    pins = dict(re.findall(r"^(onnxruntime)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    onnx_version, no_torch = versions.split()
    assert onnx_version == pins["onnxruntime"] and no_torch == "True", "the default image has no PyTorch"
    cli = subprocess.run(
        [str(replay.path("/opt/venv/bin/pneumonia-zoo")), "--help"],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0 and "train" in cli.stdout, cli.stderr

    # The image's CMD serves, and its HEALTHCHECK passes against it.
    port = str(free_port())
    command = [replay.map_word(word) for word in runtime.last("CMD").exec_form()]
    env |= {"HOST": "127.0.0.1", "PORT": port}  # docker/serve.sh's defaults are 0.0.0.0:8000
    starter = (ROOT / "pneumonia_zoo" / "assets" / "starter" / "model.json").exists()
    with running(
        command,
        f"http://127.0.0.1:{port}/healthz",
        tmp_path / "service.log",
        timeout=300,
        env=env,
        cwd=app_dir,
    ):
        _, check = healthcheck_command(runtime.last("HEALTHCHECK"))  # it reads PORT
        check[0] = shutil.which(check[0], path=env["PATH"])
        assert Path(check[0]).is_relative_to(replay.root), "HEALTHCHECK must run the image's python"
        result = subprocess.run(check, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        if starter:  # registered by docker/serve.sh into the empty store; it loads in the background
            wait_http(f"http://127.0.0.1:{port}/readyz", 90, log=tmp_path / "service.log")
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert ready.json()["model"]["version"] == "1", ready.text
        else:
            # An empty registry: alive, not ready, and it says why.
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            assert ready.status_code == 503 and "detail" in ready.json(), ready.text
        # The pages render from the installed package's templates and static files.
        home = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert home.status_code == 200 and "<html" in home.text.lower(), home.text[:2000]
    assert "PYTHON_IMAGE" in global_args
