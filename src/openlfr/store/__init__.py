"""Storage: SQLAlchemy models, the engine and sessions, Alembic migrations (SQLite or PostgreSQL).

``open_db(url)`` resolves ``--db``/``$OPENLFR_DB``/the data directory and upgrades the schema to
head on first use. See ``store.db`` for the connection settings.
"""

from .db import Database, StoreError, data_dir, downgrade, open_db, resolve_db_url, upgrade

__all__ = ["Database", "StoreError", "data_dir", "downgrade", "open_db", "resolve_db_url", "upgrade"]
