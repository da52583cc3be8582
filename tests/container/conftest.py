"""A real Docker engine for tests/container (`make test-container`; skipped in plain `make test`).

The session uses a running engine, or starts `dockerd --bridge=none --iptables=false --ip-masq=false`
(no bridge: containers use the host network, each on a free 127.0.0.1 port passed as PORT) and stops
it at the end. Every container, volume and network a test makes carries LABEL or the PROJECT_PREFIX
name and is removed in a `finally`, and again when the session ends; images stay (the layer cache).

PYTHON_IMAGE     the base to build on; default: docker/base-image.sh (the official python image where it
                 can be pulled, else a local Debian bookworm base, cached)
TORCH_INDEX_URL  passed to the build when set (even empty); unset: the Dockerfile's CPU index when it
                 answers, else empty (PyPI's torch)
"""

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LABEL = "pneumonia-zoo-test"
PROJECT_PREFIX = "pzt"  # compose projects, containers and volumes made by these tests
ENABLED = os.environ.get("PNEUMONIA_ZOO_CONTAINER_TESTS") == "1"
ARTIFACTS = ROOT / "test-artifacts"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(
        reason="needs a Docker engine: make test-container (PNEUMONIA_ZOO_CONTAINER_TESTS=1)"
    )
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(skip)


def docker(*args: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: exit {result.returncode}\n{result.stderr[-4000:]}")
    return result


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def remove_test_objects() -> None:
    """Every container, volume and network these tests made (by label or by name prefix)."""
    names = docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    names += docker("ps", "-aq", "--filter", f"name=^{PROJECT_PREFIX}-", check=False).stdout.split()
    if names:
        docker("rm", "-f", "-v", *sorted(set(names)), check=False, timeout=120)
    volumes = docker("volume", "ls", "-q", check=False).stdout.split()
    ours = [v for v in volumes if v.startswith(f"{PROJECT_PREFIX}-")]
    ours += docker("volume", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ours:
        docker("volume", "rm", "-f", *sorted(set(ours)), check=False)
    networks = docker("network", "ls", "--format", "{{.Name}}", check=False).stdout.split()
    for network in (n for n in networks if n.startswith(f"{PROJECT_PREFIX}-")):
        docker("network", "rm", network, check=False)


def remove_stale_images() -> None:
    """Earlier builds' images that nothing uses any more: replaced test images, and builder stages
    but the newest (the layer cache of the next build). A lock change would otherwise leave GBs behind."""
    for label, keep in ((f"{LABEL}-build=1", 0), ("org.pneumonia-zoo.stage=builder", 1)):
        listing = docker(
            "images",
            "-q",
            "--no-trunc",
            "--filter",
            "dangling=true",
            "--filter",
            f"label={label}",
            check=False,
        ).stdout.split()  # newest first
        if listing[keep:]:
            docker("rmi", *listing[keep:], check=False, timeout=300)


@pytest.fixture(scope="session")
def report() -> Iterator[dict]:
    """Measurements (build time, image size, start and stop times), written to test-artifacts/."""
    data: dict = {}
    yield data
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "container-report.json").write_text(json.dumps(data, indent=2) + "\n")
    print("\ncontainer report:", json.dumps(data, indent=2))


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if engine_answers():
        try:
            remove_test_objects()
            yield
        finally:
            remove_test_objects()
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        pytest.fail("no Docker engine and no dockerd: `make test-container` installs docker.io")
    log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [dockerd, "--bridge=none", "--iptables=false", "--ip-masq=false"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not engine_answers():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.5)
        remove_test_objects()
        yield
    finally:
        try:
            if process.poll() is None and engine_answers():
                remove_test_objects()
        finally:
            process.terminate()  # dockerd stops its containerd and any container left
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture(scope="session")
def base_image(docker_engine: None, report: dict) -> str:
    image = os.environ.get("PYTHON_IMAGE")
    if not image:
        result = subprocess.run(
            ["bash", str(ROOT / "docker" / "base-image.sh")], capture_output=True, text=True, timeout=1200
        )
        assert result.returncode == 0, result.stderr[-4000:]
        image = result.stdout.strip().splitlines()[-1]
    report["base_image"] = image
    return image


def torch_index() -> str | None:
    """The TORCH_INDEX_URL build argument: None keeps the Dockerfile's CPU index."""
    if "TORCH_INDEX_URL" in os.environ:
        return os.environ["TORCH_INDEX_URL"]
    try:
        if httpx.get(f"{CPU_INDEX}/torch/", timeout=10, follow_redirects=True).status_code == 200:
            return None
    except httpx.HTTPError:
        pass
    return ""


def build(
    tag: str,
    context: Path,
    args: dict[str, str],
    report_key: str,
    report: dict,
    dockerfile=None,
    target: str | None = None,
) -> str:
    command = ["build", "--network", "host", "--label", f"{LABEL}-build=1", "-t", tag]
    for key, value in args.items():
        command += ["--build-arg", f"{key}={value}"]
    if dockerfile is not None:
        command += ["-f", str(dockerfile)]
    if target is not None:
        command += ["--target", target]
    ARTIFACTS.mkdir(exist_ok=True)
    started = time.monotonic()
    result = docker(
        *command, str(context), timeout=2400, check=False, env=os.environ | {"DOCKER_BUILDKIT": "0"}
    )
    seconds = round(time.monotonic() - started, 1)
    (ARTIFACTS / f"build-{report_key}.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"docker build {tag}:\n{(result.stdout + result.stderr)[-6000:]}"
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    remove_stale_images()
    report[report_key] = {
        "tag": tag,
        "target": target or "default",
        "build_seconds": seconds,
        "size_bytes": size,
        "args": args,
    }
    return tag


def app_build_args(base_image: str) -> dict[str, str]:
    """The base, and the torch index for the full image (the legacy builder also builds the full
    image's stages for the default one: every stage before the target)."""
    args = {"PYTHON_IMAGE": base_image}
    index = torch_index()
    if index is not None:
        args["TORCH_INDEX_URL"] = index
    return args


@pytest.fixture(scope="session")
def app_image(base_image: str, report: dict) -> str:
    """The repository's Dockerfile, built as users build it (`docker build .`: ONNX Runtime, no PyTorch)
    but for the base (and torch index)."""
    return build("pneumonia-zoo:test", ROOT, app_build_args(base_image), "app_image", report)


@pytest.fixture(scope="session")
def full_image(base_image: str, report: dict) -> str:
    """`docker build --target full .`: the same service with PyTorch."""
    return build(
        "pneumonia-zoo:test-full", ROOT, app_build_args(base_image), "full_image", report, target="full"
    )


def champion_without_onnx(tmp_path: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """A SQLite store whose champion is a small package without an ONNX export (only PyTorch runs it),
    registered from here: the container's environment and volume. The store is writable by the
    container's user and mounted at the same absolute path (it records artifacts by absolute path)."""
    from pneumonia_zoo.tracking.publish import register_package
    from tests.conftest import store_for
    from tests.package.helpers import make_package

    package = tmp_path / "no-onnx"
    make_package(package, size=64, onnx=False)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    register_package(store_for(uri), package, "container-test", alias="champion")
    for path in [store_dir, *store_dir.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o777 if path.is_dir() else path.stat().st_mode | 0o666)
    return {"MLFLOW_TRACKING_URI": uri, "REGISTER_STARTER": "0"}, (f"{store_dir}:{store_dir}",)


@dataclass
class Container:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.name).stdout.strip()

    def exec(self, *command: str) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *command, check=False, timeout=60)

    def wait_http(self, path: str, timeout: float, status: int = 200) -> httpx.Response:
        return wait_for(
            self.url + path,
            timeout,
            lambda response: response.status_code == status,
            self.logs,
            running=lambda: self.inspect("{{.State.Running}}") == "true",
        )


def wait_for(
    url: str,
    timeout: float,
    check: Callable[[httpx.Response], bool] = lambda response: response.status_code == 200,
    describe: Callable[[], str] = lambda: "",
    running: Callable[[], bool] | None = None,
) -> httpx.Response:
    """Poll `url` until `check` accepts the answer; fail with `describe()` (the logs) on a timeout, or at
    once when `running` says the container exited."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if running is not None and not running():
            raise AssertionError(f"{url}: the container exited:\n{describe()}")
        try:
            response = httpx.get(url, timeout=5)
            if check(response):
                return response
            last = f"{response.status_code} {response.text[:500]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"{url}: not as expected within {timeout}s (last: {last})\n{describe()}")


@contextmanager
def container(
    image: str, env: dict[str, str] | None = None, volumes: tuple[str, ...] = (), read_only: bool = True
) -> Iterator[Container]:
    """`docker run` on the host network, read-only root, tmpfs /tmp; removed whatever happens."""
    name = f"{PROJECT_PREFIX}-{uuid.uuid4().hex[:10]}"
    port = free_port()
    command = ["run", "-d", "--name", name, "--label", LABEL, "--network", "host"]
    if read_only:
        command += ["--read-only", "--tmpfs", "/tmp"]
    for key, value in ({"HOST": "127.0.0.1", "PORT": str(port)} | (env or {})).items():
        command += ["-e", f"{key}={value}"]
    for volume in volumes:
        command += ["-v", volume]
    try:
        docker(*command, image)
        yield Container(name, port)
    finally:
        docker("rm", "-f", "-v", name, check=False)
