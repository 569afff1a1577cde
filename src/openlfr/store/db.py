"""Where the database is, how to connect to it, and keeping its schema at head.

Resolution, for every command: ``--db URL``, else ``$OPENLFR_DB``, else SQLite in the data
directory (``$OPENLFR_DATA_DIR``, else ``$XDG_DATA_HOME/openlfr``, else
``~/.local/share/openlfr``), created on first use (mode 0700, the file 0600).

SQLite runs in WAL mode with foreign keys on, a busy timeout, ``synchronous=FULL`` (a commit
is on disk when it returns: alerts are acknowledged only then) and ``BEGIN IMMEDIATE``
transactions, so two writer processes queue instead of failing half way through.
PostgreSQL is used through psycopg 3 (``postgresql+psycopg://...``).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

DB_ENV = "OPENLFR_DB"
DATA_DIR_ENV = "OPENLFR_DATA_DIR"
DB_FILE = "openlfr.db"
BUSY_TIMEOUT_MS = 30_000
MIGRATIONS = Path(__file__).with_name("migrations")
PG_MIGRATION_LOCK = 0x6F6C6672  # "olfr": serialises concurrent first-use migrations


class StoreError(RuntimeError):
    """The database cannot be reached or is at an unknown schema."""


def data_dir() -> Path:
    """The data directory (not created here)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "openlfr"


def resolve_db_url(db: str | None = None) -> str:
    """``db`` (a URL or a path to a SQLite file), else ``$OPENLFR_DB``, else the data directory's SQLite."""
    url = db or os.environ.get(DB_ENV)
    if not url:
        d = data_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return f"sqlite:///{d / DB_FILE}"
    if "://" not in url:  # a plain path
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<database>"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA secure_delete=ON")  # deleted rows (erasure, purge) are overwritten, not left in free pages
    cur.close()


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            path = Path(u.database)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                path.touch(mode=0o600)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(connection=None, url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _migration_connection(engine: Engine):
    """A connection in one transaction for migrations.

    SQLite: foreign keys off for the transaction (``PRAGMA foreign_keys`` cannot change inside
    one), as SQLite's table-rebuild procedure requires: dropping the old copy of a referenced
    table must not cascade to its children. ``PRAGMA foreign_key_check`` must then find nothing
    before the commit. PostgreSQL: serialised against concurrent first use by an advisory lock.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            yield conn
        return
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
                bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise StoreError(f"migration left rows with broken foreign keys: {bad[:5]}")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction (serialised against concurrent first use)."""
    from alembic import command

    with _migration_connection(engine) as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    with _migration_connection(engine) as conn:
        command.downgrade(alembic_config(conn), revision)


class Database:
    """An engine, a session factory, and the schema kept at head."""

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.ensure_schema()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ensure_schema(self) -> None:
        try:
            head = head_revision()
            if current_revision(self.engine) != head:
                upgrade(self.engine, "head")
        except Exception as e:  # noqa: BLE001
            if isinstance(e, StoreError):
                raise
            from sqlalchemy.exc import OperationalError

            if isinstance(e, OperationalError):
                raise StoreError(f"cannot open the database {redact(self.url)}: {e.orig}") from e
            raise

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed (durably) on success, rolled back on error."""
        with self.sessions() as s:
            with s.begin():
                yield s

    def dispose(self) -> None:
        self.engine.dispose()


_open: dict[str, Database] = {}
_lock = threading.Lock()


def open_db(db: str | None = None, migrate: bool = True) -> Database:
    """The ``Database`` for ``db`` (resolved as documented above); one per URL per process."""
    url = resolve_db_url(db)
    with _lock:
        d = _open.get(url)
        if d is None or os.getpid() != getattr(d, "_pid", os.getpid()):
            d = Database(url, migrate=migrate)
            d._pid = os.getpid()  # type: ignore[attr-defined]
            _open[url] = d
        return d


def close_all() -> None:
    with _lock:
        for d in _open.values():
            d.dispose()
        _open.clear()
