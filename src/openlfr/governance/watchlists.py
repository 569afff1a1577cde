"""Watchlists and their subjects: creation, enrolment, expiry and erasure."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..store import repository as repo
from ..store.models import (
    Adjudication,
    AlertRow,
    Engagement,
    ReferenceImage,
    SnapshotTemplate,
    SubjectRow,
    Template,
    WatchlistRow,
)
from ..store.scrub import scrub
from ..store.types import utc
from .common import CATEGORIES, VOLUNTEER, NewImage, _iso
from .errors import GovernanceError, NotFound
from .roles import Actor


class WatchlistAdmin:
    """Watchlists and subjects. (a part of ``Governance``)"""

    def create_watchlist(self, actor: Actor, name: str, description: str = "") -> WatchlistRow:
        if not name.strip():
            raise GovernanceError("a watchlist needs a name")
        if name.isdigit():
            raise GovernanceError("a watchlist name cannot be only digits (those are ids)")
        with self._tx(actor, "watchlist.create") as s:
            if repo.watchlist_by_ref(s, name) is not None:
                raise GovernanceError(f"watchlist {name} exists already")
            w = WatchlistRow(name=name, description=description, created_at=self.now(), created_by_id=actor.user_id)
            s.add(w)
            s.flush()
            self._audit(s, actor, "watchlist.create", f"watchlist:{w.id}", {"name": name})
            return w

    def _watchlist(self, s: Session, ref: int | str) -> WatchlistRow:
        w = repo.watchlist_by_ref(s, ref)
        if w is None:
            raise NotFound(f"no watchlist {ref}")
        return w

    def enrol_subject(
        self,
        actor: Actor,
        watchlist: int | str,
        ref: str,
        name: str,
        category: str,
        reason: str,
        expires_at: datetime,
        images: Sequence[NewImage],
        volunteer: bool = False,
    ) -> SubjectRow:
        """Add a subject with reference images and templates (or add images to an existing one).

        ``volunteer``: a volunteer of a test deployment (category ``volunteer``): their alerts
        measure TPIR in the field and stay out of operational figures.
        """
        if volunteer:
            category = category or VOLUNTEER
            if category != VOLUNTEER:
                raise GovernanceError(f"a volunteer's category is {VOLUNTEER!r}, not {category!r}")
        elif category not in CATEGORIES:
            raise GovernanceError(f"category {category!r} is not one of {', '.join(CATEGORIES)}"
                                  + (" (volunteers: enrol with volunteer=True)" if category == VOLUNTEER else ""))
        if not (reason or "").strip():
            raise GovernanceError("a reason for inclusion is required")
        if not ref or not name:
            raise GovernanceError("a subject needs a reference and a name")
        if not images:
            raise GovernanceError(f"subject {ref}: no reference image with a template")
        vectors = []
        for im in images:
            if im.low_quality_band is not None and not (im.low_quality_reason or "").strip():
                raise GovernanceError(f"subject {ref}: a reference below the quality gate needs a reason")
            try:
                vectors.append((repo.vector_bytes(im.template), repo.second_vector_bytes(im.second_template)))
            except ValueError as e:
                raise GovernanceError(f"subject {ref}: {e}") from None
        with self._tx(actor, "watchlist.enrol") as s:
            now = self.now()
            if utc(expires_at) <= now:
                raise GovernanceError("the expiry must be in the future")
            w = self._watchlist(s, watchlist)
            subj = repo.subject_in(s, w.id, ref)
            created = subj is None
            if created:
                subj = SubjectRow(watchlist_id=w.id, ref=ref, name=name, category=category, reason=reason,
                                  expires_at=utc(expires_at), added_at=now, added_by_id=actor.user_id,
                                  volunteer=bool(volunteer))
                s.add(subj)
                s.flush()
            elif subj.name != name or subj.category != category:
                raise GovernanceError(f"subject {ref} is on {w.name} with another name or category")
            elif subj.expires_at <= now:
                raise GovernanceError(f"subject {ref} has expired; erase it and enrol again")
            for im, (vec, second) in zip(images, vectors):
                row = ReferenceImage(subject_id=subj.id, source=im.source or "", taken_at=utc(im.taken_at) if im.taken_at else None,
                                     added_at=now, added_by_id=actor.user_id, media_type=im.media_type,
                                     sha256=hashlib.sha256(im.data).hexdigest(), data=im.data)
                s.add(row)
                s.flush()
                s.add(Template(subject_id=subj.id, image_id=row.id, vector=vec, quality=float(im.quality), created_at=now,
                               low_quality_band=im.low_quality_band, second_vector=second))
                if im.low_quality_band is not None:
                    s.flush()
                    self._audit(s, actor, "subject.low_quality_override", f"subject:{subj.id}", {
                        "image_sha256": row.sha256, "band": im.low_quality_band, "quality": float(im.quality),
                        "reason": im.low_quality_reason.strip()})
            s.flush()
            details = {"watchlist_id": w.id, "images_added": len(images)}
            if created:
                details |= {"category": category, "expires_at": _iso(subj.expires_at)}
                if volunteer:
                    details["volunteer"] = True
            self._audit(s, actor, "subject.create" if created else "subject.change", f"subject:{subj.id}", details)
            return subj

    def list_watchlists(self, actor: Actor) -> list[dict]:
        with self._tx(actor, "watchlist.read") as s:
            now = self.now()
            out = []
            for w in s.execute(select(WatchlistRow).order_by(WatchlistRow.id)).scalars():
                out.append({
                    "id": w.id, "name": w.name, "description": w.description, "created_at": _iso(w.created_at),
                    "subjects": repo.count(s, SubjectRow, SubjectRow.watchlist_id == w.id),
                    "active_subjects": repo.count(s, SubjectRow, SubjectRow.watchlist_id == w.id, SubjectRow.expires_at > now),
                    "templates": repo.count(s, Template, Template.subject_id.in_(select(SubjectRow.id).where(SubjectRow.watchlist_id == w.id))),
                })
            return out

    def list_subjects(self, actor: Actor, watchlist: int | str) -> list[dict]:
        with self._tx(actor, "watchlist.read") as s:
            now = self.now()
            w = self._watchlist(s, watchlist)
            out = []
            for subj in s.execute(select(SubjectRow).where(SubjectRow.watchlist_id == w.id).order_by(SubjectRow.id)).scalars():
                out.append({
                    "id": subj.id, "ref": subj.ref, "name": subj.name, "category": subj.category, "reason": subj.reason,
                    "volunteer": bool(subj.volunteer),
                    "expires_at": _iso(subj.expires_at), "expired": subj.expires_at <= now,
                    "added_at": _iso(subj.added_at), "added_by": repo.user_name(s, subj.added_by_id),
                    "images": [
                        {"id": im.id, "source": im.source, "taken_at": _iso(im.taken_at), "added_at": _iso(im.added_at), "sha256": im.sha256}
                        for im in s.execute(select(ReferenceImage).where(ReferenceImage.subject_id == subj.id).order_by(ReferenceImage.id)).scalars()
                    ],
                    "templates": repo.count(s, Template, Template.subject_id == subj.id),
                })
            return out

    def _subject(self, s: Session, subject_id: int) -> SubjectRow:
        subj = s.get(SubjectRow, int(subject_id))
        if subj is None:
            raise NotFound(f"no subject {subject_id}")
        return subj

    def expire_subject(self, actor: Actor, subject_id: int, at: datetime | None = None) -> SubjectRow:
        """Bring a subject's expiry forward (to now by default): they join no new snapshot."""
        with self._tx(actor, "watchlist.expire") as s:
            subj = self._subject(s, subject_id)
            when = utc(at) if at is not None else self.now()
            if when < subj.expires_at:
                subj.expires_at = when
            self._audit(s, actor, "subject.change", f"subject:{subj.id}", {"expires_at": _iso(subj.expires_at)})
            return subj

    def erase_subject(self, actor: Actor, subject_id: int) -> dict[str, int]:
        """Delete every image, template, snapshot entry and alert of a subject, and the subject.

        The audit entry records that it happened (ids and counts), never who it was.
        """
        with self._tx(actor, "subject.erase") as s:
            subj = self._subject(s, subject_id)
            counts = repo.subject_counts(s, subj.id)
            alert_ids = select(AlertRow.id).where(AlertRow.subject_id == subj.id)
            s.execute(delete(Adjudication).where(Adjudication.alert_id.in_(alert_ids)))
            s.execute(delete(Engagement).where(Engagement.alert_id.in_(alert_ids)))
            s.execute(delete(AlertRow).where(AlertRow.subject_id == subj.id))
            s.execute(delete(SnapshotTemplate).where(SnapshotTemplate.subject_id == subj.id))
            s.execute(delete(Template).where(Template.subject_id == subj.id))
            s.execute(delete(ReferenceImage).where(ReferenceImage.subject_id == subj.id))
            watchlist_id = subj.watchlist_id
            s.delete(subj)
            s.flush()
            self._audit(s, actor, "subject.erase", f"subject:{subject_id}", {"watchlist_id": watchlist_id, **counts})
        scrub(self.db, ("reference_images", "templates", "snapshot_templates", "alerts", "adjudications", "engagements", "subjects"))
        return counts
