"""Governance services: every action goes through here, checked against its role and audited.

``Governance(db, clock)`` is the one entry point for the CLI, the API/console and the live
pipeline. Each public method that acts for someone takes an ``Actor`` and starts with
``require(actor, PERMISSION)``; a refusal is itself audited (``permission.denied``). The change
and its audit entry are committed in one transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

from sqlalchemy.orm import Session

from ..store.db import Database, open_db
from ..store.types import utc
from . import audit
from .adjudication import DECISIONS  # noqa: F401  (re-exported)
from .audit_key import AuditKey, load_key
from .auditing import AuditAccess
from .clock import Clock, SystemClock
from .common import (  # noqa: F401  (re-exported: the front door's names)
    CATEGORIES,
    DEFAULT_RETENTION_DAYS,
    OUTCOMES,
    RESULTS,
    RETENTION_KEY,
    STATUSES,
    USER_NAME,
    VOLUNTEER,
    AutoPurged,
    Exported,
    NewImage,
    PurgeReport,
    _iso,
)
from .deployments import DeploymentAdmin
from .errors import PermissionDenied
from .history import DeploymentRecords
from .retention import Retention
from .review import AlertReview
from .roles import Actor, require
from .runs import LiveRuns
from .users import UserAdmin
from .watchlists import WatchlistAdmin


class Governance(UserAdmin, WatchlistAdmin, DeploymentAdmin, LiveRuns, AlertReview, DeploymentRecords, Retention, AuditAccess):
    """Users, watchlists, deployments, alerts, retention and the audit log.

    The front door: each concern is a module of its own (``users.py``, ``watchlists.py``,
    ``deployments.py``, ``runs.py``, ``review.py``, ``history.py``, ``retention.py``,
    ``auditing.py``), joined here over the plumbing they share (``_tx``, ``_audit``, ``now``)."""

    def __init__(self, db: Database | str | None = None, clock: Clock | None = None, key: AuditKey | None = None):
        self.db = db if isinstance(db, Database) else open_db(db)
        self.clock = clock or SystemClock()
        self.key = key or load_key()  # the audit chain's key: outside the database (audit_key.py)

    # -- plumbing ---------------------------------------------------------------------------

    def now(self) -> datetime:
        return utc(self.clock.now())

    def _require(self, actor: Actor, permission: str) -> None:
        """``require``, with the refusal audited (``permission.denied``)."""
        try:
            require(actor, permission)
        except PermissionDenied:
            with self.db.transaction() as s:
                audit.append(s, self.now(), actor.name, "permission.denied", permission, {}, self.key)
            raise

    @contextmanager
    def _tx(self, actor: Actor, permission: str) -> Iterator[Session]:
        self._require(actor, permission)
        with self.db.transaction() as s:
            yield s

    def _audit(self, s: Session, actor: Actor | str, action: str, target: str = "", details: dict | None = None) -> None:
        audit.append(s, self.now(), actor if isinstance(actor, str) else actor.name, action, target, details, self.key)
