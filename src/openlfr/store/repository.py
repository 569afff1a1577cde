"""Queries the services share: the layer between the domain rules and SQL."""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import (
    AlertRow,
    Deployment,
    ReferenceImage,
    Snapshot,
    SnapshotTemplate,
    SubjectRow,
    Template,
    User,
    UserRole,
    WatchlistRow,
)

DIM = 128


def vector_bytes(v) -> bytes:
    """A 128-D template as 512 little-endian float32 bytes."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        if len(b) != DIM * 4:
            raise ValueError(f"a template is {DIM * 4} bytes, got {len(b)}")
        return b
    a = np.asarray(v, dtype="<f4").reshape(-1)
    if a.shape != (DIM,):
        raise ValueError(f"a template has {DIM} values, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError("a template has non-finite values")
    return a.tobytes()


def vector_array(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<f4").astype(np.float32)


def second_vector_bytes(v) -> bytes | None:
    """The second model's feature of a reference as ``vector_bytes`` stores it, or None (NULL)
    when it has none: None, or a row of NaN as in ``Watchlist.second_templates``. A row that is
    partly NaN is a ``ValueError``, as any other non-finite template."""
    if v is None:
        return None
    if not isinstance(v, (bytes, bytearray, memoryview)):
        a = np.asarray(v, dtype="<f4").reshape(-1)
        if a.size and np.isnan(a).all():
            return None
    return vector_bytes(v)


def vector_rows(rows) -> np.ndarray | None:
    """(M, 128) float32 of stored optional vectors (bytes or None), a row of NaN for None; None
    when no row has one (``Watchlist.second_templates``)."""
    rows = list(rows)
    if not any(b is not None for b in rows):
        return None
    out = np.full((len(rows), DIM), np.nan, np.float32)
    for i, b in enumerate(rows):
        if b is not None:
            out[i] = vector_array(b)
    return out


def user_by_name(s: Session, name: str) -> User | None:
    return s.execute(select(User).where(User.name == name)).scalar_one_or_none()


def roles_of(s: Session, user_id: int) -> frozenset[str]:
    return frozenset(s.execute(select(UserRole.role).where(UserRole.user_id == user_id)).scalars())


def user_count(s: Session) -> int:
    return s.execute(select(func.count()).select_from(User)).scalar_one()


def user_name(s: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    return s.execute(select(User.name).where(User.id == user_id)).scalar_one_or_none()


def watchlist_by_ref(s: Session, ref: int | str) -> WatchlistRow | None:
    """A watchlist by id (an int or a string of digits) or by name."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        w = s.get(WatchlistRow, int(ref))
        if w is not None:
            return w
    return s.execute(select(WatchlistRow).where(WatchlistRow.name == str(ref))).scalar_one_or_none()


def subject_in(s: Session, watchlist_id: int, ref: str) -> SubjectRow | None:
    return s.execute(select(SubjectRow).where(SubjectRow.watchlist_id == watchlist_id, SubjectRow.ref == ref)).scalar_one_or_none()


def count(s: Session, model, *where) -> int:
    return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def subject_counts(s: Session, subject_id: int) -> dict[str, int]:
    return {
        "images": count(s, ReferenceImage, ReferenceImage.subject_id == subject_id),
        "templates": count(s, Template, Template.subject_id == subject_id),
        "alerts": count(s, AlertRow, AlertRow.subject_id == subject_id),
        "snapshot_templates": count(s, SnapshotTemplate, SnapshotTemplate.subject_id == subject_id),
    }


def live_snapshot(s: Session, deployment_id: int) -> Snapshot | None:
    return s.execute(
        select(Snapshot).where(Snapshot.deployment_id == deployment_id, Snapshot.deleted_at.is_(None))
    ).scalar_one_or_none()


def cameras_of(d: Deployment) -> list[str]:
    return list(json.loads(d.cameras))
