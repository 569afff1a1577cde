"""What the entry points may know of where the data lives, without reaching into the store.

The database URL (``--db``, ``$OPENLFR_DB``, or SQLite in the data folder), its printable form
(password hidden), and the data folder itself (also home to a worker's disk buffer).
"""

from __future__ import annotations

from ..store.db import data_dir, redact, resolve_db_url

__all__ = ["data_dir", "redact", "resolve_db_url"]
