"""Scratch databases for tests and benchmarks: a fresh PostgreSQL schema, dropped afterwards.

``OPENLFR_TEST_PG`` names a PostgreSQL server (``postgresql+psycopg://user@host:port/db``);
``pg_schema_url`` gives a URL whose connections live in a new schema (via ``search_path``).

The pytest fixtures built on it live in ``tests/dbtesting.py``.
"""

from __future__ import annotations

import functools
import os
import uuid
from contextlib import contextmanager
from typing import Iterator

PG_ENV = "OPENLFR_TEST_PG"


def pg_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


@functools.lru_cache(maxsize=None)
def pg_reachable(url: str) -> str | None:
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
