"""Which database, its schema made by the shipped Alembic migrations (idempotently), SQLite's durability."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from pneumonia_zoo.audit.database import MIGRATIONS_DIR, audit_url, migrate, open_engine, safe_url
from pneumonia_zoo.audit.schema import Base
from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.config import Settings


@pytest.mark.parametrize(
    ("configured", "tracking", "expected"),
    [
        (None, "sqlite:///mlflow.db", "sqlite:///audit.db"),
        (None, "sqlite:////srv/store/mlflow.db", "sqlite:////srv/store/audit.db"),
        (None, "http://mlflow:5000", "sqlite:///audit.db"),
        ("", "sqlite:////srv/mlflow.db", "sqlite:////srv/audit.db"),
        ("postgresql+psycopg2://u:p@db/audit", "sqlite:///mlflow.db", "postgresql+psycopg2://u:p@db/audit"),
        ("off", "sqlite:///mlflow.db", None),
        ("OFF ", "sqlite:///mlflow.db", None),
    ],
)
def test_the_default_is_beside_a_sqlite_store(
    configured: str | None, tracking: str, expected: str | None
) -> None:
    assert audit_url(configured, tracking) == expected


def test_messages_never_show_the_password() -> None:
    assert "secret" not in safe_url("postgresql+psycopg2://user:secret@db:5432/audit")
    assert safe_url("not a url") == "(an unparsable URL)"


def test_migrations_ship_as_package_data() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py"))[0] == "0001_initial.py"
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert "audit/migrations/*" in pyproject and "audit/migrations/versions/*" in pyproject


def test_migrate_makes_the_schema_once_and_matches_the_models(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'nested' / 'audit.db'}")
    try:
        first = migrate(engine)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO feedback (request_id, source, label, created_at, updated_at, updated_ms) "
                    "VALUES ('r', 's', 'NORMAL', '2024-01-01', '2024-01-01', 0)"
                )
            )
        assert migrate(engine) == first  # again: nothing to do, nothing lost
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM feedback")).scalar() == 1
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == [], "a model changed without a migration"
        assert {"predictions", "feedback", "model_versions", "alembic_version"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


@pytest.mark.parametrize(("sync", "pragma"), [("normal", 1), ("full", 2)])
def test_sqlite_is_write_ahead_and_synced_as_configured(tmp_path: Path, sync: str, pragma: int) -> None:
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", audit_sync=sync)
    trail = AuditTrail.from_settings(settings)
    assert trail is not None
    try:
        with trail.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA synchronous")).scalar() == pragma  # 1 NORMAL, 2 FULL
    finally:
        trail.engine.dispose()
