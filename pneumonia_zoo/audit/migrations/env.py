"""Alembic's environment for the audit database: always given an open connection by
`pneumonia_zoo.audit.database.migrate` (never a URL from an ini file)."""

from alembic import context

from pneumonia_zoo.audit.schema import Base

connection = context.config.attributes["connection"]
# Batch mode: SQLite cannot ALTER most things, so later migrations copy tables there (a no-op elsewhere).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
