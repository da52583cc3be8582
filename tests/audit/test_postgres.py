"""The audit trail on a real PostgreSQL (Debian's `postgresql`, started by the test): the database is
created when missing, the migrations make the same schema as the models, and records, feedback, the
monitor and the export work as on SQLite."""

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pneumonia_zoo.audit.database import migrate
from pneumonia_zoo.audit.export import RECORDS, export_feedback
from pneumonia_zoo.audit.monitor import Window
from pneumonia_zoo.audit.schema import Base
from pneumonia_zoo.audit.trail import AuditTrail
from tests.audit.conftest import MODEL, record, write
from tests.integration.test_team_postgres import postgresql, sqlalchemy_uri

pytestmark = pytest.mark.slow


def test_the_audit_trail_on_postgresql(tmp_path: Path) -> None:
    with postgresql(tmp_path / "postgres.log") as libpq:
        url = sqlalchemy_uri(libpq).rsplit("/", 1)[0] + "/audit"  # a second database, not made yet
        trail = AuditTrail(url)
        trail.start()
        try:
            write(
                trail, record("a", "PNEUMONIA", 0.9), record("b", "NORMAL", 0.2), record("c", "NORMAL", 0.4)
            )
            shadow = record(
                "a",
                "NORMAL",
                0.1,
                kind="shadow",
                version="2",
                champion_version="1",
                champion_label="PNEUMONIA",
            )
            write(trail, shadow)
            trail.add_feedback("PNEUMONIA", request_id="a")
            trail.add_feedback("PNEUMONIA", request_id="c", source="pacs")
            assert trail.add_feedback("PNEUMONIA", request_id="c", source="pacs").statuses == {
                "c": "unchanged"
            }
            found = trail.monitor(MODEL, Window.parse("24h"))
            version = found["versions"]["1"]
            assert (version["predictions"], version["labelled"], version["sensitivity"]) == (3, 2, 0.5)
            assert found["shadow"]["pairs"][0]["agreement"] == 0.0
            assert trail.series(MODEL, Window.parse("all"))["versions"]["1"][0]["n"] == 3
            assert trail.prediction("a")["shadow"][0]["label"] == "NORMAL"
            assert export_feedback(trail.engine, tmp_path / "records.csv").kind == RECORDS
            assert migrate(trail.engine) == "0001"  # again: nothing to do
            with trail.engine.connect() as connection:
                assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        finally:
            trail.stop()
