"""`pneumonia-zoo feedback export` and `pneumonia-zoo shadow ...` (cli/live.py) through the real app, with
the real settings from the environment, a real audit database and a real MLflow store."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.cli import app
from pneumonia_zoo.config import get_settings
from pneumonia_zoo.data.discovery import read_manifest
from tests.audit.conftest import record, write
from tests.conftest import FIXTURE_DATA, copy_store, store_for, use_store


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def refused(result, message: str) -> bool:  # type: ignore[no-untyped-def]
    """One line on stderr, a non-zero exit, no traceback."""
    lines = result.stderr.strip().splitlines()
    return result.exit_code != 0 and len(lines) == 1 and message in lines[0] and result.exception is not None


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_store(monkeypatch, f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("PNEUMONIA_ZOO_AUDIT_URL", "PNEUMONIA_ZOO_KEEP_INPUTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    get_settings.cache_clear()


def fill(database: Path, keep: Path | None) -> None:
    trail = AuditTrail(f"sqlite:///{database}", keep_dir=keep)
    trail.start()
    try:
        image = next((FIXTURE_DATA / "test" / "PNEUMONIA").glob("*.jpeg"))
        write(trail, record("r1", data=image.read_bytes(), model_name="pneumonia-classifier"))
        trail.add_feedback("PNEUMONIA", request_id="r1")
    finally:
        trail.stop()


def test_export_writes_a_manifest_from_the_database_beside_the_store(
    environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(environment / "audit.db", environment / "kept")
    monkeypatch.setenv("PNEUMONIA_ZOO_KEEP_INPUTS_DIR", str(environment / "kept"))
    get_settings.cache_clear()
    result = run("feedback", "export", "--out", str(environment / "site.csv"))
    assert result.exit_code == 0, result.output
    assert "manifest of 1" in result.output
    assert [s.class_name for s in read_manifest(environment / "site.csv")] == ["PNEUMONIA"]


def test_export_without_kept_inputs_says_why(environment: Path) -> None:
    fill(environment / "audit.db", None)
    result = run("feedback", "export", "--out", str(environment / "records.csv"), "--json")
    assert result.exit_code == 0, result.output
    assert '"kind": "records"' in result.output and "KEEP_INPUTS_DIR is not set" in result.output


@pytest.mark.parametrize(
    ("audit_url", "message"),
    [("off", "recording is off"), (None, "no audit database"), ("::not a url::", "not a database URL")],
)
def test_export_refusals_are_one_line(environment: Path, audit_url: str | None, message: str) -> None:
    args = ["feedback", "export", "--out", str(environment / "x.csv")]
    result = run(*args, *(["--audit-url", audit_url] if audit_url else []))
    assert refused(result, message), (result.exit_code, result.stderr)
    assert not (environment / "x.csv").exists()


def test_a_shadow_rollout_moves_only_aliases(scratch_store: str, tmp_path: Path, monkeypatch) -> None:
    uri = use_store(monkeypatch, copy_store(scratch_store, tmp_path / "mlflow.db"))
    store = store_for(uri)
    store.set_alias("1")  # champion: version 1
    try:
        assert refused(run("shadow", "start", "1"), "is the champion")
        started = run("shadow", "start", "2")
        assert started.exit_code == 0 and "version 2 is now @challenger" in started.output
        assert store.resolve("models:/pneumonia-classifier@challenger").version == "2"
        promoted = run("shadow", "promote")
        assert promoted.exit_code == 0 and "(was version 1)" in promoted.output
        assert store.resolve("models:/pneumonia-classifier@champion").version == "2"
        assert refused(run("shadow", "promote"), "no version is @challenger")
        run("shadow", "start", "1")
        assert "removed (was version 1)" in run("shadow", "stop").output
    finally:
        get_settings.cache_clear()
