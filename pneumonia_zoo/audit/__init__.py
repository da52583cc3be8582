"""The audit layer: every answer recorded in a database (SQLAlchemy, Alembic migrations), labels fed
back, live figures and drift per version, the export of labelled inputs. Between workflows and serving:
serving records through it; it never imports serving (nor knows HTTP or asyncio)."""
