"""The audit database: which one, opening it, and bringing its schema up to date.

Any SQLAlchemy URL works. SQLite (the default, a file beside a sqlite MLflow store) is opened in WAL
mode, so readers (the monitor) never block the writer, with `synchronous=NORMAL` by default: a committed
record is in the operating system's hands and survives the process being killed (issue 19's contract);
`synchronous=FULL` (PNEUMONIA_ZOO_AUDIT_SYNC=full) also syncs the WAL at every commit, so it survives the
machine losing power, for one fsync per commit (about 4 ms on the build machine's disk, which an answer
alone at a time waits for). PostgreSQL is used as given; a missing
database is created once when the user may (the compose stack's second database of its postgres).
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_FILE = "audit.db"
OFF = ("off", "none", "false", "0")
_MIGRATE_TRIES = 3  # several workers may start together: the loser of a race finds the schema made


def audit_url(configured: str | None, tracking_uri: str) -> str | None:
    """The database to record into: the configured URL, else audit.db beside a sqlite MLflow store (in
    the working folder for any other store); None when recording is off."""
    if configured is not None and configured.strip():
        return None if configured.strip().lower() in OFF else configured.strip()
    try:
        tracking = make_url(tracking_uri)
    except Exception:
        return f"sqlite:///{DEFAULT_FILE}"
    if tracking.get_backend_name() == "sqlite" and tracking.database not in (None, "", ":memory:"):
        return f"sqlite:///{Path(tracking.database).parent / DEFAULT_FILE}"
    return f"sqlite:///{DEFAULT_FILE}"


def safe_url(url: str) -> str:
    """The URL without its password: for log lines and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unparsable URL)"


SQLITE_SYNC = {"normal": "NORMAL", "full": "FULL"}


def _sqlite_pragmas(sync: str) -> Callable[..., None]:
    def on_connect(connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNC[sync]}")
        cursor.execute("PRAGMA busy_timeout=10000")  # another process writing: wait, do not fail
        cursor.close()

    return on_connect


def open_engine(url: str, sync: str = "normal") -> Engine:
    """An engine for `url`; SQLite gets its folder made and its pragmas on every connection (`sync`:
    normal or full, the module's docstring says what each survives)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas(sync))
        return engine
    # pre_ping: a connection the server dropped (a restart) is replaced instead of failing a commit.
    return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _create_postgres_database(url: URL) -> None:
    """CREATE DATABASE for `url`'s database, connected to the server's `postgres` database."""
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if not exists:
                name = str(url.database).replace('"', '""')
                connection.execute(text(f'CREATE DATABASE "{name}"'))
                log.info("created the audit database %s", safe_url(url.render_as_string(hide_password=False)))
    finally:
        admin.dispose()


def ensure_database(engine: Engine) -> None:
    """Connect once; a PostgreSQL database that does not exist yet is created (if the user may)."""
    try:
        with engine.connect():
            return
    except OperationalError as exc:
        if engine.dialect.name != "postgresql" or "does not exist" not in str(exc):
            raise
    _create_postgres_database(engine.url)


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest revision (idempotent: nothing happens when it is there); returns
    the revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    ensure_database(engine)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return str(head)  # the usual case: nothing to do, and alembic's global context untouched
    # command.upgrade runs env.py through alembic's process-wide context, which MLflow's own store
    # migrations use too: the service runs this before its model holder first opens the registry.
    for attempt in range(_MIGRATE_TRIES):
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            break
        except (OperationalError, ProgrammingError):
            # Another process created the same table a moment ago (a race of workers starting): the
            # next try sees its work and has nothing left to do.
            if attempt == _MIGRATE_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    with engine.connect() as connection:
        return str(MigrationContext.configure(connection).get_current_revision())
