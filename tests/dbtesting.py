"""Test fixtures: one database per test, on SQLite and (when reachable) on PostgreSQL.

``OPENLFR_TEST_PG`` names a PostgreSQL server (``postgresql+psycopg://user@host:port/db``);
each test gets a fresh schema there (``openlfr.store.testing.pg_schema_url``), dropped
afterwards. Without the variable, or when the server does not answer, the PostgreSQL cases skip.
``tests/conftest.py`` offers the fixtures (``db_url``, ``fast_passwords``) to every test; the
helpers are imported: ``from dbtesting import backend_url``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest

from openlfr.store.testing import PG_ENV, pg_base_url, pg_reachable, pg_schema_url

BACKENDS = ("sqlite", "postgresql")


def require_pg() -> str:
    url = pg_base_url()
    if not url:
        pytest.skip(f"{PG_ENV} is not set (no PostgreSQL server to test against)")
    why = pg_reachable(url)
    if why:
        pytest.skip(f"PostgreSQL at {PG_ENV} does not answer: {why}")
    return url


@contextmanager
def backend_url(backend: str, tmp_path) -> Iterator[str]:
    from openlfr.store.db import close_all

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

    from openlfr.governance import passwords

    monkeypatch.setattr(passwords, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(passwords, "_DUMMY", None)
