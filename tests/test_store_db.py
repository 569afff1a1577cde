"""The store: where the database is, SQLite's settings, and migrations from empty to head and back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from openlfr.store import db as store_db
from openlfr.store.db import Database, current_revision, downgrade, head_revision, open_db, resolve_db_url, upgrade
from openlfr.store.models import Base
from dbtesting import db_url  # noqa: F401  (fixture)

TABLES = {t.name for t in Base.metadata.sorted_tables}


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENLFR_DB", raising=False)
    monkeypatch.setenv("OPENLFR_DATA_DIR", str(tmp_path / "data"))
    # 3. SQLite in the data directory, created on first use
    url = resolve_db_url(None)
    assert url == f"sqlite:///{tmp_path / 'data' / 'openlfr.db'}"
    assert (tmp_path / "data").is_dir() and oct((tmp_path / "data").stat().st_mode & 0o777) == "0o700"
    # 2. the environment variable
    monkeypatch.setenv("OPENLFR_DB", "sqlite:////elsewhere/x.db")
    assert resolve_db_url(None) == "sqlite:////elsewhere/x.db"
    # 1. --db wins; a plain path means SQLite; postgresql:// means psycopg 3
    assert resolve_db_url("sqlite:///a.db") == "sqlite:///a.db"
    assert resolve_db_url(str(tmp_path / "b.db")) == f"sqlite:///{tmp_path / 'b.db'}"
    assert resolve_db_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"


def test_default_location_without_env(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENLFR_DB", raising=False)
    monkeypatch.delenv("OPENLFR_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store_db.data_dir() == tmp_path / ".local" / "share" / "openlfr"


def test_first_use_creates_and_migrates(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENLFR_DB", raising=False)
    monkeypatch.setenv("OPENLFR_DATA_DIR", str(tmp_path / "d"))
    try:
        d = open_db()
        path = tmp_path / "d" / "openlfr.db"
        assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
        assert current_revision(d.engine) == head_revision()
        assert TABLES <= set(inspect(d.engine).get_table_names())
        assert open_db() is d  # one per URL per process
    finally:
        store_db.close_all()


def test_sqlite_settings(tmp_path):
    d = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with d.engine.connect() as c:
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert c.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
            assert c.execute(text("PRAGMA busy_timeout")).scalar() == store_db.BUSY_TIMEOUT_MS
    finally:
        d.dispose()


def test_migration_empty_to_head_and_back(db_url):  # noqa: F811
    d = Database(db_url, migrate=False)
    try:
        assert current_revision(d.engine) is None
        assert not (TABLES & set(inspect(d.engine).get_table_names()))
        upgrade(d.engine, "head")
        assert current_revision(d.engine) == head_revision()
        assert TABLES <= set(inspect(d.engine).get_table_names())
        # the models and the migrations agree
        from alembic.autogenerate import compare_metadata
        from alembic.runtime.migration import MigrationContext

        with d.engine.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            assert c.execute(text("SELECT seq, hash FROM audit_head")).one() == (0, "0" * 64)
        downgrade(d.engine, "base")
        assert current_revision(d.engine) is None
        assert not (TABLES & set(inspect(d.engine).get_table_names()))
        upgrade(d.engine, "head")  # and up again
        assert current_revision(d.engine) == head_revision()
    finally:
        d.dispose()


def test_foreign_keys_enforced(db_url):  # noqa: F811
    from sqlalchemy.exc import IntegrityError

    d = Database(db_url)
    try:
        with pytest.raises(IntegrityError):
            with d.transaction() as s:
                s.execute(text("INSERT INTO user_roles (user_id, role) VALUES (999, 'auditor')"))
    finally:
        d.dispose()


def test_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(store_db.StoreError, match="cannot open"):
        Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")


def test_migrations_ship_in_the_package():
    here = Path(store_db.__file__).parent / "migrations"
    assert (here / "env.py").exists() and any(p.name.startswith("0001") for p in (here / "versions").iterdir())
    assert not os.path.exists(Path.cwd() / "alembic.ini")
