"""Test helpers: one database per test, on SQLite and (when reachable) on PostgreSQL.

``OPENLFR_TEST_PG`` names a PostgreSQL server (``postgresql+psycopg://user@host:port/db``);
each test gets a fresh schema there (via ``search_path``), dropped afterwards. Without the
variable, or when the server does not answer, the PostgreSQL cases skip.

Test modules import the fixtures: ``from openlfr.store.testing import db_url, fast_passwords``.
"""

from __future__ import annotations

import functools
import os
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest

PG_ENV = "OPENLFR_TEST_PG"
BACKENDS = ("sqlite", "postgresql")


def pg_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@functools.lru_cache(maxsize=None)
def _pg_reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(url)
        with psycopg.connect(host=u.host or "localhost", port=u.port or 5432, user=u.username, password=u.password,
                             dbname=u.database, connect_timeout=3):
            return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def require_pg() -> str:
    url = pg_base_url()
    if not url:
        pytest.skip(f"{PG_ENV} is not set (no PostgreSQL server to test against)")
    why = _pg_reachable(url)
    if why:
        pytest.skip(f"PostgreSQL at {PG_ENV} does not answer: {why}")
    return url


def _pg_admin(url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(host=u.host or "localhost", port=u.port or 5432, user=u.username, password=u.password,
                           dbname=u.database, autocommit=True, connect_timeout=5)


@contextmanager
def pg_schema_url(base: str) -> Iterator[str]:
    """A URL whose connections live in a new, empty schema; the schema is dropped afterwards."""
    schema = "t_" + uuid.uuid4().hex[:16]
    with _pg_admin(base) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        from .db import close_all

        close_all()
        with _pg_admin(base) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def backend_url(backend: str, tmp_path) -> Iterator[str]:
    from .db import close_all

    if backend == "sqlite":
        try:
            yield f"sqlite:///{tmp_path / 'openlfr-test.db'}"
        finally:
            close_all()
    else:
        with pg_schema_url(require_pg()) as url:
            yield url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in tmp_path, and PostgreSQL in a fresh schema."""
    with backend_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def fast_passwords(monkeypatch):
    """argon2id with test-sized costs (production keeps argon2-cffi's defaults)."""
    from argon2 import PasswordHasher

    from ..governance import passwords

    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(passwords, "_DUMMY", None)
