"""Removing the bytes of erased and purged records, not only the rows.

SQLite: every connection runs with ``PRAGMA secure_delete=ON`` (``store.db``), so freed pages
are overwritten with zeros; after an erasure or a purge the write-ahead log, which still holds
the old page images, is checkpointed and truncated (``PRAGMA wal_checkpoint(TRUNCATE)``).

PostgreSQL: a deleted row stays in its page until ``VACUUM`` prunes it; after an erasure or a
purge the affected tables (and their TOAST tables, where images and crops live) are vacuumed,
outside any transaction. What VACUUM cannot reach (free space inside files, the WAL archive,
base backups, replicas) is the operator's to rotate: see docs/governance.md.

Best effort: a failure is logged, never raised (the erasure itself has committed).
"""

from __future__ import annotations

import logging

from sqlalchemy import text

log = logging.getLogger(__name__)


def scrub(db, tables: tuple[str, ...]) -> bool:
    """Remove what is left of deleted rows in ``tables``; True when it ran to completion."""
    try:
        if db.dialect == "sqlite":
            with db.engine.connect() as conn:
                busy, _, _ = conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy:
                    log.warning("the SQLite write-ahead log could not be truncated now (readers busy); it will be at the next checkpoint")
                return not busy
        if db.dialect == "postgresql":
            with db.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                for t in tables:
                    conn.execute(text(f'VACUUM "{t}"'))
            return True
    except Exception as e:  # noqa: BLE001 - the deletion has committed; this only tidies the bytes
        log.warning("could not scrub %s after deletion: %s", ", ".join(tables), e)
    return False
