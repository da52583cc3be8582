"""The first audit schema: predictions, feedback, model versions.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("http_request_id", sa.String(128), nullable=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("architecture", sa.String(64), nullable=False),
        sa.Column("runtime", sa.String(16), nullable=False),
        sa.Column("operating_point", sa.String(64), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("p_pneumonia", sa.Float(), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("uncertain", sa.Boolean(), nullable=False),
        sa.Column("guard_score", sa.Float(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("flag_reasons", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("input_bytes", sa.BigInteger(), nullable=False),
        sa.Column("input_path", sa.String(1024), nullable=True),
        sa.Column("truth", sa.String(16), nullable=True),
        sa.Column("champion_version", sa.String(32), nullable=True),
        sa.Column("champion_label", sa.String(16), nullable=True),
        sa.UniqueConstraint("request_id", "kind", name="uq_predictions_request_kind"),
    )
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])
    op.create_index("ix_predictions_input_sha256", "predictions", ["input_sha256"])
    op.create_index("ix_predictions_model_time", "predictions", ["model_name", "created_ms"])
    labelled = sa.text("truth IS NOT NULL")
    op.create_index(
        "ix_predictions_labelled",
        "predictions",
        ["model_name", "created_ms"],
        sqlite_where=labelled,
        postgresql_where=labelled,
    )
    op.create_table(
        "feedback",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("patient", sa.String(128), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("request_id", "source", name="uq_feedback_request_source"),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("architecture", sa.String(64), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("first_seen", _TIME, nullable=False),
        sa.UniqueConstraint("model_name", "version", name="uq_model_versions_name_version"),
    )
    _counts = [
        sa.Column(name, sa.BigInteger(), nullable=False) for name in ("n", "positive", "flagged", "uncertain")
    ]
    op.create_table(
        "prediction_hours",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("champion_version", sa.String(32), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        *_counts,
        sa.Column("sum_p", sa.Float(), nullable=False),
        sa.Column("latency_n", sa.BigInteger(), nullable=False),
        sa.Column("sum_latency", sa.Float(), nullable=False),
        sa.Column("agreed", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint(
            "model_name", "version", "kind", "champion_version", "hour", name="uq_prediction_hours"
        ),
    )
    op.create_table(
        "drift_hours",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("score", sa.String(16), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("model_name", "version", "score", "hour", "bin", name="uq_drift_hours"),
    )


def downgrade() -> None:
    op.drop_table("drift_hours")
    op.drop_table("prediction_hours")
    op.drop_table("model_versions")
    op.drop_table("feedback")
    op.drop_table("predictions")
