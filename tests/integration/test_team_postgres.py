"""The team path for real: PostgreSQL -> `mlflow server` on it -> train and promote against the server ->
a running service picks up each new champion without a restart.

PostgreSQL is Debian's `postgresql` package (binaries in /usr/lib/postgresql/VERSION/bin), started by this
test on 127.0.0.1 with a temporary data directory and always stopped. As root (CI), the server runs as the
`postgres` user the package creates: PostgreSQL refuses to run as root.
"""

import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from glob import glob
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURE_DATA
from tests.servers import BIN, free_port, mlflow_server, running, stop

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The brief's tiny run: seconds of training on the 38 fixture images.
TRAIN = [
    "train",
    "--arch",
    "small_cnn",
    "--data",
    str(FIXTURE_DATA),
    "--epochs",
    "1",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--bootstrap",
    "50",
    "--no-onnx",
    "--threads",
    "2",
    "--quiet",
]
MODEL_NAME = "pneumonia-classifier"


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory (not on PATH there), else one on PATH."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).resolve().parent if on_path else None


@contextmanager
def postgresql(log: Path) -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1; yields its libpq URI (database `mlflow`, password auth)."""
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL binaries not found: install Debian's `postgresql` package (make test does)")
    account = {}
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs the `postgres` user (Debian's postgresql package creates it)")
        account = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="pneumonia-zoo-pg-"))
    password = secrets.token_urlsafe(16)
    port = free_port()
    process = None
    try:
        (base / "pwfile").write_text(password + "\n")
        if account:
            for path in (base, base / "pwfile"):
                os.chown(path, account["user"], account["group"])
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(base / "data"),
                "-U",
                "mlflow",
                "--pwfile",
                str(base / "pwfile"),
                "--auth",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=base,
            timeout=120,
            **account,
        )
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(base / "data"),
                    "-p",
                    str(port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={base}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=base,
                start_new_session=True,
                **account,
            )
        env = os.environ | {"PGPASSWORD": password}
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], timeout=10
            ).returncode
            != 0
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow"],
            check=True,
            capture_output=True,
            env=env,
            timeout=60,
        )
        yield f"postgresql://mlflow:{password}@127.0.0.1:{port}/mlflow"
    finally:
        if process is not None:
            with suppress(ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGINT)  # fast shutdown: ends open sessions too
                process.wait(20)
            stop(process)
        shutil.rmtree(base, ignore_errors=True)


def sqlalchemy_uri(libpq_uri: str) -> str:
    """SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; we ship psycopg2 (as compose.yaml does)."""
    return libpq_uri.replace("postgresql://", "postgresql+psycopg2://", 1)


def cli(*args: str, uri: str, cwd: Path, timeout: float = 300) -> str:
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    result = subprocess.run(
        [str(BIN / "pneumonia-zoo"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )
    assert result.returncode == 0, (
        f"pneumonia-zoo {args[0]}: exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def train_and_promote(uri: str, cwd: Path, expected_version: str) -> None:
    out = cli(*TRAIN, uri=uri, cwd=cwd)
    assert f"registered version {expected_version}" in out, out
    phase(f"version {expected_version} trained")
    out = cli("promote", uri=uri, cwd=cwd)
    promoted = re.search(r"version (\d+) is now @champion", out)
    assert promoted, out
    if promoted.group(1) != expected_version:
        # Two tiny runs can rank either way on val_auc; what is tested here is the pickup, so move the
        # alias by hand as a teammate would in the MLflow UI.
        from mlflow import MlflowClient

        MlflowClient(uri).set_registered_model_alias(MODEL_NAME, "champion", expected_version)


_START = time.monotonic()


def phase(text: str) -> None:
    """Progress with elapsed seconds (shown with `pytest -s`, and in the report of a failure)."""
    print(f"[{time.monotonic() - _START:6.1f}s] {text}", flush=True)


def poll(url: str, until, timeout: float, what: str):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=10)
            if until(last):
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    body = last.text if isinstance(last, httpx.Response) else repr(last)
    raise AssertionError(f"{what}: not within {timeout}s; last answer: {body[:2000]}")


def predict(service: str, image: Path) -> dict:
    with open(image, "rb") as handle:
        response = httpx.post(
            f"{service}/api/v1/predict", files={"file": (image.name, handle, "image/jpeg")}, timeout=60
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_service_follows_the_champion_on_a_postgres_tracking_server(tmp_path: Path) -> None:
    try:
        import psycopg2
    except ImportError:
        pytest.fail("psycopg2 missing: requirements-test.txt has psycopg2-binary (make test-setup)")
    image = next(iter(sorted((FIXTURE_DATA / "test" / "PNEUMONIA").glob("*.jpeg"))))
    work = tmp_path / "work"  # the CLI's working directory: nothing lands in the repository
    work.mkdir()

    global _START
    _START = time.monotonic()
    with (
        postgresql(tmp_path / "postgres.log") as backend,
        mlflow_server(sqlalchemy_uri(backend), tmp_path / "artifacts", tmp_path / "mlflow.log") as tracking,
    ):
        phase("postgres and mlflow server up")
        # The server really stores in PostgreSQL: its tables exist there.
        with closing(psycopg2.connect(backend)) as connection, connection.cursor() as cursor:
            cursor.execute(
                "select count(*) from information_schema.tables where table_name = 'registered_models'"
            )
            assert cursor.fetchone()[0] == 1

        port = free_port()
        service = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PNEUMONIA_ZOO_")} | {
            "MLFLOW_TRACKING_URI": tracking,
            "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "1",
        }
        command = [str(BIN / "uvicorn"), "fastapiapp:app", "--host", "127.0.0.1", "--port", str(port)]
        with running(command, f"{service}/healthz", tmp_path / "service.log", timeout=120, env=env, cwd=ROOT):
            phase("service up")
            # Up before any model exists: alive, not ready, and it says why.
            early = httpx.get(f"{service}/readyz", timeout=10)
            assert early.status_code == 503, early.text

            train_and_promote(tracking, work, "1")
            phase("version 1 trained and promoted")
            answer = json.loads(cli("predict", str(image), "--json", uri=tracking, cwd=work))
            assert answer["model"]["version"] == "1"
            ready = poll(
                f"{service}/readyz", lambda r: r.status_code == 200, 120, "/readyz 200 with version 1"
            )
            assert ready.json()["model"]["version"] == "1"
            phase("service ready with version 1")
            first = predict(service, image)
            assert first["model"]["version"] == "1" and first["label"] in ("NORMAL", "PNEUMONIA")

            train_and_promote(tracking, work, "2")
            phase("version 2 trained and promoted")
            poll(
                f"{service}/readyz",
                lambda r: r.status_code == 200 and r.json()["model"]["version"] == "2",
                120,
                "the running service picks up version 2",
            )
            phase("service switched to version 2")
            second = predict(service, image)
            assert second["model"]["version"] == "2"

        phase("service stopped")
        # Artifacts went through the server into its artifacts destination, not a local mlruns/.
        assert list((tmp_path / "artifacts").rglob("MLmodel")), "no model artifacts on the server"
        assert not (work / "mlruns").exists()
    phase("mlflow server and postgres stopped")
