"""Governance services: every action goes through here, checked against its role and audited.

``Governance(db, clock)`` is the one entry point for the CLI, the API/console and the live
pipeline. Each public method that acts for someone takes an ``Actor`` and starts with
``require(actor, PERMISSION)``; a refusal is itself audited (``permission.denied``). The change
and its audit entry are committed in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Iterator, Sequence

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..store import repository as repo
from ..store.db import Database, open_db
from ..store.models import (
    Adjudication,
    AlertRow,
    AuditHead,
    Authorisation,
    Deployment,
    Engagement,
    FacesSeen,
    AuditEvent,
    ReferenceImage,
    Setting,
    Snapshot,
    SnapshotTemplate,
    SubjectRow,
    Template,
    User,
    UserRole,
    VolunteerPass,
    WatchlistRow,
)
from ..store.types import utc
from ..store.scrub import scrub
from . import audit, credentials
from .adjudication import DECISIONS, decide  # noqa: F401  (DECISIONS: re-exported)
from .audit_key import AuditKey, load_key
from .clock import Clock, SystemClock
from .errors import AuthenticationError, DeploymentNotActive, GovernanceError, NotFound, PermissionDenied
from .passwords import check_strength, dummy_verify, hash_password, needs_rehash, verify_password
from .roles import ADMINISTRATOR, Actor, check_roles, require

# Reasons for inclusion on a watchlist (the categories police forces publish).
CATEGORIES = ("wanted_by_courts", "wanted_on_suspicion", "missing_or_vulnerable", "risk_of_harm")
# A volunteer of a test deployment (a "blue" watchlist entry) has this category and no other.
VOLUNTEER = "volunteer"
RESULTS = ("confirmed", "unconfirmed")
OUTCOMES = ("arrest", "other_action", "no_further_action", "no_engagement")
STATUSES = ("planned", "authorised", "active", "ended", "cancelled")

DEFAULT_RETENTION_DAYS = 31
RETENTION_KEY = "alert_retention_days"
USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")


@dataclass
class NewImage:
    """A reference image to enrol: its bytes, its template (128 floats) and where it came from."""

    data: bytes
    template: np.ndarray | bytes
    quality: float = 0.0
    source: str = ""
    taken_at: datetime | None = None
    media_type: str = "image/jpeg"
    low_quality_band: str | None = None  # enrolled below the quality gate (override): its band
    low_quality_reason: str = ""  # why (required with the band; audited)


@dataclass
class AutoPurged:
    """What the automatic purge (``system:purge``, ``system:schedule``) did since the last purge a
    person ran: ``openlfr purge`` reports it, so its output is true even when nothing is left to do."""

    alerts: int = 0
    snapshots: int = 0
    deployments_ended: list[int] = field(default_factory=list)
    entries: int = 0  # the audit entries they wrote (purges that deleted something, stops, snapshot deletions)
    first_at: str | None = None
    last_at: str | None = None
    since: str | None = None  # the previous purge report (None: since the log began)

    def to_json(self) -> dict:
        return {"alerts": self.alerts, "snapshots": self.snapshots, "deployments_ended": self.deployments_ended,
                "entries": self.entries, "first_at": self.first_at, "last_at": self.last_at, "since": self.since}


@dataclass
class PurgeReport:
    alerts: int = 0
    snapshots: int = 0
    deployments_ended: list[int] = field(default_factory=list)
    retention_days: int = DEFAULT_RETENTION_DAYS
    automatic: AutoPurged | None = None  # a person's purge: what the automatic purge did before it

    @property
    def anything(self) -> bool:
        return bool(self.alerts or self.snapshots or self.deployments_ended)

    def to_json(self) -> dict:
        out = {"alerts": self.alerts, "snapshots": self.snapshots, "deployments_ended": self.deployments_ended,
               "retention_days": self.retention_days}
        if self.automatic is not None:
            out["automatic_since_last_report"] = self.automatic.to_json()
        return out


class Exported(int):
    """How many entries an export wrote, and the anchor of the last one."""

    def __new__(cls, n: int, anchor: audit.Anchor | None):
        obj = super().__new__(cls, n)
        obj.anchor = anchor
        return obj


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat()


class Governance:
    """Users, watchlists, deployments, alerts, retention and the audit log."""

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

    # -- users ------------------------------------------------------------------------------

    def user_count(self) -> int:
        with self.db.transaction() as s:
            return repo.user_count(s)

    def bootstrap_admin(self, name: str, password: str, roles: Sequence[str] = (ADMINISTRATOR,)) -> User:
        """The first user of an empty database: an administrator, created without credentials."""
        roles = check_roles(roles)
        if ADMINISTRATOR not in roles:
            raise GovernanceError("the first user must be an administrator (--role administrator)")
        self._check_new_user(name, password)
        with self.db.transaction() as s:
            s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update())  # one bootstrap at a time
            if repo.user_count(s):
                raise GovernanceError("users exist already: log in as an administrator (--as NAME) to add one")
            u = self._insert_user(s, name, roles, password, "bootstrap")
            self._audit(s, "bootstrap", "user.create", f"user:{u.id}", {"name": name, "roles": sorted(roles), "bootstrap": True})
            return u

    def _check_new_user(self, name: str, password: str) -> None:
        if not USER_NAME.match(name or ""):
            raise GovernanceError("a user name is 1-100 characters: letters, digits, . _ @ -")
        try:
            check_strength(password)
        except ValueError as e:
            raise GovernanceError(str(e)) from None

    def _insert_user(self, s: Session, name: str, roles, password: str, created_by: str) -> User:
        if repo.user_by_name(s, name) is not None:
            raise GovernanceError(f"user {name} exists already")
        u = User(name=name, password_hash=hash_password(password), active=True, created_at=self.now(), created_by=created_by)
        s.add(u)
        s.flush()
        for r in sorted(roles):
            s.add(UserRole(user_id=u.id, role=r))
        s.flush()
        return u

    def create_user(self, actor: Actor, name: str, roles: Sequence[str], password: str) -> User:
        try:
            roles = check_roles(roles)
        except ValueError as e:
            raise GovernanceError(str(e)) from None
        self._check_new_user(name, password)
        with self._tx(actor, "user.create") as s:
            u = self._insert_user(s, name, roles, password, actor.name)
            self._audit(s, actor, "user.create", f"user:{u.id}", {"name": name, "roles": sorted(roles)})
            return u

    def set_roles(self, actor: Actor, name: str, roles: Sequence[str]) -> None:
        try:
            roles = check_roles(roles)
        except ValueError as e:
            raise GovernanceError(str(e)) from None
        with self._tx(actor, "user.change") as s:
            u = self._user(s, name)
            before = repo.roles_of(s, u.id)
            if ADMINISTRATOR in before and ADMINISTRATOR not in roles:
                self._keep_an_admin(s, u.id)
            s.execute(delete(UserRole).where(UserRole.user_id == u.id))
            for r in sorted(roles):
                s.add(UserRole(user_id=u.id, role=r))
            self._audit(s, actor, "user.change", f"user:{u.id}", {"roles": sorted(roles), "was": sorted(before)})
            credentials.revoke_unallowed_worker_tokens(s, self.now(), actor.name, u.id, roles, key=self.key)

    def set_active(self, actor: Actor, name: str, active: bool) -> None:
        with self._tx(actor, "user.change") as s:
            u = self._user(s, name)
            if not active and ADMINISTRATOR in repo.roles_of(s, u.id):
                self._keep_an_admin(s, u.id)
            u.active = active
            self._audit(s, actor, "user.change", f"user:{u.id}", {"active": active})

    def set_password(self, actor: Actor, name: str, password: str, old_password: str | None = None,
                     keep_token_id: int | None = None) -> list[int]:
        """A user changes their own (with the current one), or an administrator resets one; the
        user's other sessions and tokens are revoked (``credentials.change_password``)."""
        return credentials.change_password(self, actor, name, password, old_password, keep_token_id)

    def _keep_an_admin(self, s: Session, user_id: int) -> None:
        others = s.execute(
            select(User.id).join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == ADMINISTRATOR, User.active.is_(True), User.id != user_id)
        ).first()
        if others is None:
            raise GovernanceError("this is the last active administrator")

    def _user(self, s: Session, name: str) -> User:
        u = repo.user_by_name(s, name)
        if u is None:
            raise NotFound(f"no user {name}")
        return u

    def list_users(self, actor: Actor) -> list[dict]:
        with self._tx(actor, "user.list") as s:
            return [
                {"id": u.id, "name": u.name, "roles": sorted(repo.roles_of(s, u.id)), "active": u.active,
                 "created_at": _iso(u.created_at), "created_by": u.created_by}
                for u in s.execute(select(User).order_by(User.id)).scalars()
            ]

    def authenticate(self, name: str, password: str) -> Actor:
        """Check credentials without writing anything (for ``audit verify``, which reads first);
        a failure is audited (``login.failed``) as in ``login``. Call ``record_login`` after."""
        with self.db.transaction() as s:
            u = repo.user_by_name(s, name)
            if u is None:
                dummy_verify(password)
            elif verify_password(u.password_hash, password) and u.active:
                return Actor(name=u.name, roles=repo.roles_of(s, u.id), user_id=u.id)
        self.login(name, password)  # audits the failure and raises
        raise AuthenticationError(f"login failed for {name}")  # pragma: no cover (login raised)

    def record_login(self, user: Actor) -> None:
        """The ``login`` entry of an ``authenticate``d user (part of logging in: no permission)."""
        with self.db.transaction() as s:
            self._audit(s, user.name, "login", f"user:{user.user_id}", {})

    def login(self, name: str, password: str) -> Actor:
        """Check credentials; audited either way (``login`` / ``login.failed``)."""
        with self.db.transaction() as s:
            u = repo.user_by_name(s, name)
            if u is None:
                dummy_verify(password)
                ok = False
            else:
                ok = verify_password(u.password_hash, password) and u.active
            if not ok:
                why = "unknown user" if u is None else ("disabled" if not u.active else "wrong password")
                self._audit(s, name if u is not None else "unknown", "login.failed", f"user:{u.id}" if u else "", {"reason": why})
        if not ok:
            raise AuthenticationError(f"login failed for {name}")
        with self.db.transaction() as s:
            u = repo.user_by_name(s, name)
            if needs_rehash(u.password_hash):
                u.password_hash = hash_password(password)
            roles = repo.roles_of(s, u.id)
            self._audit(s, u.name, "login", f"user:{u.id}", {})
            return Actor(name=u.name, roles=roles, user_id=u.id)

    # -- watchlists and subjects -----------------------------------------------------------

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
                vectors.append(repo.vector_bytes(im.template))
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
            for im, vec in zip(images, vectors):
                row = ReferenceImage(subject_id=subj.id, source=im.source or "", taken_at=utc(im.taken_at) if im.taken_at else None,
                                     added_at=now, added_by_id=actor.user_id, media_type=im.media_type,
                                     sha256=hashlib.sha256(im.data).hexdigest(), data=im.data)
                s.add(row)
                s.flush()
                s.add(Template(subject_id=subj.id, image_id=row.id, vector=vec, quality=float(im.quality), created_at=now,
                               low_quality_band=im.low_quality_band))
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

    # -- deployments ------------------------------------------------------------------------

    def plan_deployment(
        self,
        actor: Actor,
        *,
        name: str,
        use_case: str,
        location: str,
        zone: str,
        starts_at: datetime,
        ends_at: datetime,
        cameras: Sequence[str],
        threshold: float | None = None,
        watchlist: int | str,
        signage_confirmed: bool = False,
        notices_confirmed: bool = False,
        dpia_ref: str = "",
        authorising_officer: str | None = None,
        threshold_reason: str = "",
        target_fpir: float = 0.001,
    ) -> Deployment:
        """Without ``threshold`` the calibrated scoring model for the watchlist's size and
        ``target_fpir`` is stored; a manual threshold needs ``threshold_reason`` (``thresholds.py``)."""
        from .thresholds import plan_evidence

        starts_at, ends_at = utc(starts_at), utc(ends_at)
        cams = [str(c) for c in cameras]
        if not name or not use_case or not location or not zone:
            raise GovernanceError("a deployment needs a name, a use case, a location and a zone of recognition")
        if ends_at <= starts_at:
            raise GovernanceError("the end must be after the start")
        if not cams or len(set(cams)) != len(cams) or any(not c for c in cams):
            raise GovernanceError("a deployment needs one or more cameras, each named once")
        if threshold is not None and not (0.0 < float(threshold) < 2.0):
            raise GovernanceError("the threshold is a descriptor distance in (0, 2)")
        with self._tx(actor, "deployment.plan") as s:
            if ends_at <= self.now():
                raise GovernanceError("the deployment would end in the past")
            w = self._watchlist(s, watchlist)
            threshold, evidence = plan_evidence(repo.count(s, SubjectRow, SubjectRow.watchlist_id == w.id, SubjectRow.expires_at > self.now()), threshold, threshold_reason, target_fpir)
            officer_id = None
            if authorising_officer:
                officer = self._user(s, authorising_officer)
                if "authorising_officer" not in repo.roles_of(s, officer.id):
                    raise GovernanceError(f"{authorising_officer} is not an authorising officer")
                officer_id = officer.id
            d = Deployment(
                name=name, use_case=use_case, location=location, zone=zone, starts_at=starts_at, ends_at=ends_at,
                cameras=json.dumps(cams), threshold=float(threshold), watchlist_id=w.id,
                threshold_evidence=json.dumps(evidence, sort_keys=True), signage_confirmed=bool(signage_confirmed), notices_confirmed=bool(notices_confirmed), dpia_ref=dpia_ref or "",
                authorising_officer_id=officer_id, status="planned", planned_by_id=actor.user_id, planned_at=self.now(),
            )
            s.add(d)
            s.flush()
            self._audit(s, actor, "deployment.create", f"deployment:{d.id}", {
                "name": name, "use_case": use_case, "location": location, "zone": zone,
                "starts_at": _iso(starts_at), "ends_at": _iso(ends_at), "cameras": cams, "threshold": float(threshold),
                "watchlist_id": w.id, "signage_confirmed": bool(signage_confirmed), "notices_confirmed": bool(notices_confirmed),
                "dpia_ref": dpia_ref or "", "authorising_officer_id": officer_id,
                "threshold_kind": evidence["kind"], "threshold_reason": evidence["reason"], "target_fpir": float(target_fpir),
                "expected_fpir": evidence["expected_fpir"],
            })
            return d

    def _deployment(self, s: Session, deployment_id: int, lock: bool = False) -> Deployment:
        q = select(Deployment).where(Deployment.id == int(deployment_id))
        if lock:
            q = q.with_for_update()
        d = s.execute(q).scalar_one_or_none()
        if d is None:
            raise NotFound(f"no deployment {deployment_id}")
        return d

    def authorise_deployment(self, actor: Actor, deployment_id: int, note: str = "") -> Authorisation:
        with self._tx(actor, "deployment.authorise") as s:
            d = self._deployment(s, deployment_id, lock=True)
            if d.status != "planned":
                raise GovernanceError(f"deployment {d.id} is {d.status}; only a planned deployment can be authorised")
            if d.planned_by_id is not None and d.planned_by_id == actor.user_id:
                raise GovernanceError("a deployment cannot be authorised by the person who planned it")
            if d.authorising_officer_id is not None and d.authorising_officer_id != actor.user_id:
                raise GovernanceError(f"deployment {d.id} names another authorising officer")
            missing = [what for what, ok in (("a DPIA reference", bool(d.dpia_ref.strip())),
                                             ("signage confirmed", d.signage_confirmed),
                                             ("notices confirmed", d.notices_confirmed)) if not ok]
            if missing:
                raise GovernanceError(f"deployment {d.id} lacks {', '.join(missing)}")
            if d.ends_at <= self.now():
                raise GovernanceError(f"deployment {d.id} ends in the past")
            a = Authorisation(deployment_id=d.id, officer_id=actor.user_id, decision="authorised", decided_at=self.now(), note=note or "")
            s.add(a)
            d.status = "authorised"
            if d.authorising_officer_id is None:
                d.authorising_officer_id = actor.user_id
            s.flush()
            self._audit(s, actor, "deployment.authorise", f"deployment:{d.id}", {"authorisation_id": a.id, "note": note or "",
                                                                                 "officer_id": actor.user_id})
            return a

    def start_deployment(self, actor: Actor, deployment_id: int) -> Deployment:
        """Start an authorised deployment inside its window, against a new frozen snapshot."""
        self.enforce_schedule()
        with self._tx(actor, "deployment.start") as s:
            d = self._deployment(s, deployment_id, lock=True)
            now = self.now()
            if d.status != "authorised":
                raise GovernanceError(f"deployment {d.id} is {d.status}; only an authorised deployment can start")
            auth = s.execute(select(Authorisation).where(Authorisation.deployment_id == d.id, Authorisation.decision == "authorised")).first()
            if auth is None:
                raise GovernanceError(f"deployment {d.id} has no authorisation")
            if now < d.starts_at:
                raise GovernanceError(f"deployment {d.id} may not start before {_iso(d.starts_at)}")
            if now >= d.ends_at:
                raise GovernanceError(f"deployment {d.id} ended at {_iso(d.ends_at)}")
            snap = self._make_snapshot(s, d, now)
            d.status, d.started_at = "active", now
            self._audit(s, actor, "deployment.start", f"deployment:{d.id}", {"snapshot_id": snap.id})
            self._audit(s, actor, "snapshot.create", f"snapshot:{snap.id}",
                        {"deployment_id": d.id, "watchlist_id": d.watchlist_id, "subjects": snap.n_subjects, "templates": snap.n_templates})
            return d

    def _make_snapshot(self, s: Session, d: Deployment, now: datetime) -> Snapshot:
        if s.execute(select(Snapshot).where(Snapshot.deployment_id == d.id)).first() is not None:
            raise GovernanceError(f"deployment {d.id} already had a snapshot")
        rows = s.execute(
            select(SubjectRow.id, SubjectRow.name, SubjectRow.category, Template.vector, SubjectRow.volunteer, Template.low_quality_band)
            .join(Template, Template.subject_id == SubjectRow.id)
            .where(SubjectRow.watchlist_id == d.watchlist_id, SubjectRow.expires_at > now)
            .order_by(SubjectRow.id, Template.id)
        ).all()
        if not rows:
            raise GovernanceError(f"watchlist {d.watchlist_id} has no unexpired subject with a template")
        # What it held, kept after the templates are deleted (for the deployment report): subjects
        # per category and the volunteers' ids; no names.
        cats: dict[str, int] = {}
        for sid, cat in {(r[0], r[2]) for r in rows}:
            cats[cat] = cats.get(cat, 0) + 1
        composition = {"categories": dict(sorted(cats.items())), "volunteers": sorted({r[0] for r in rows if r[4]})}
        snap = Snapshot(deployment_id=d.id, watchlist_id=d.watchlist_id, created_at=now, delete_by=d.ends_at,
                        n_subjects=len({r[0] for r in rows}), n_templates=len(rows), composition=json.dumps(composition))
        s.add(snap)
        s.flush()
        s.add_all(SnapshotTemplate(snapshot_id=snap.id, subject_id=sid, subject_name=nm, subject_category=cat, vector=vec,
                                   low_quality_band=band) for sid, nm, cat, vec, _, band in rows)
        s.flush()
        return snap

    def _delete_snapshot(self, s: Session, actor: Actor | str, d: Deployment, why: str) -> bool:
        snap = repo.live_snapshot(s, d.id)
        if snap is None:
            return False
        s.execute(delete(SnapshotTemplate).where(SnapshotTemplate.snapshot_id == snap.id))
        snap.deleted_at = self.now()
        self._audit(s, actor, "snapshot.delete", f"snapshot:{snap.id}", {"deployment_id": d.id, "reason": why})
        return True

    def stop_deployment(self, actor: Actor, deployment_id: int, reason: str = "stopped") -> Deployment:
        """End an active deployment (its snapshot is deleted), or cancel one not yet started."""
        with self._tx(actor, "deployment.stop") as s:
            d = self._deployment(s, deployment_id, lock=True)
            now = self.now()
            if d.status == "active":
                d.status, d.ended_at, d.end_reason = "ended", now, reason
                self._audit(s, actor, "deployment.stop", f"deployment:{d.id}", {"reason": reason})
                self._delete_snapshot(s, actor, d, "deployment ended")
            elif d.status in ("planned", "authorised"):
                d.status, d.ended_at, d.end_reason = "cancelled", now, reason
                self._audit(s, actor, "deployment.cancel", f"deployment:{d.id}", {"reason": reason})
            else:
                raise GovernanceError(f"deployment {d.id} is {d.status} already")
            return d

    def enforce_schedule(self, now: datetime | None = None) -> list[int]:
        """End every active deployment past its end time and delete its snapshot; returns their ids.

        Also deletes any snapshot left behind by a deployment that is no longer active.
        """
        system = Actor.system("schedule")
        now = utc(now) if now is not None else self.now()
        ended: list[int] = []
        with self.db.transaction() as s:
            due = s.execute(select(Deployment).where(Deployment.status == "active", Deployment.ends_at <= now)
                            .with_for_update()).scalars().all()
            for d in due:
                d.status, d.ended_at, d.end_reason = "ended", now, "end time reached"
                self._audit(s, system, "deployment.stop", f"deployment:{d.id}", {"reason": "end time reached"})
                self._delete_snapshot(s, system, d, "deployment ended")
                ended.append(d.id)
            left = s.execute(
                select(Deployment).join(Snapshot, Snapshot.deployment_id == Deployment.id)
                .where(Snapshot.deleted_at.is_(None), (Deployment.status != "active") | (Snapshot.delete_by <= now))
            ).scalars().all()
            for d in left:
                if d.status == "active":  # cannot happen after the loop above; kept as a safety net
                    d.status, d.ended_at, d.end_reason = "ended", now, "snapshot expired"
                    self._audit(s, system, "deployment.stop", f"deployment:{d.id}", {"reason": "snapshot expired"})
                self._delete_snapshot(s, system, d, "deployment not active")
        return ended

    def get_deployment(self, actor: Actor, deployment_id: int) -> dict:
        with self._tx(actor, "deployment.read") as s:
            return self._deployment_view(s, self._deployment(s, deployment_id), full=True)

    def list_deployments(self, actor: Actor) -> list[dict]:
        with self._tx(actor, "deployment.read") as s:
            return [self._deployment_view(s, d, full=False) for d in s.execute(select(Deployment).order_by(Deployment.id)).scalars()]

    def _deployment_view(self, s: Session, d: Deployment, full: bool) -> dict:
        w = s.get(WatchlistRow, d.watchlist_id)
        v = {
            "id": d.id, "name": d.name, "status": d.status, "use_case": d.use_case, "location": d.location, "zone": d.zone,
            "starts_at": _iso(d.starts_at), "ends_at": _iso(d.ends_at), "cameras": repo.cameras_of(d), "threshold": d.threshold,
            "watchlist": {"id": w.id, "name": w.name},
        }
        if not full:
            return v
        seen = {cam: n for cam, n in s.execute(select(FacesSeen.camera, FacesSeen.count).where(FacesSeen.deployment_id == d.id))}
        # Alerts against volunteers of a test deployment measure TPIR in the field: they stay out of
        # the operational figures (true alerts, precision, outcomes). A false alert against a
        # volunteer still wrongly flagged a passer-by: it counts in the false alert rate.
        vol_of = dict(s.execute(select(AlertRow.id, SubjectRow.volunteer).join(SubjectRow, SubjectRow.id == AlertRow.subject_id)
                                .where(AlertRow.deployment_id == d.id)).all())
        alerts = [a for a, vol in vol_of.items() if not vol]
        decided: dict[int, str] = {}
        for aid, dec in s.execute(select(Adjudication.alert_id, Adjudication.decision)
                                  .join(AlertRow, AlertRow.id == Adjudication.alert_id)
                                  .where(AlertRow.deployment_id == d.id).order_by(Adjudication.id)):
            decided[aid] = dec  # the latest adjudication counts
        outcomes: dict[str, int] = {}
        results: dict[str, int] = {}
        for aid, res, out in s.execute(select(Engagement.alert_id, Engagement.result, Engagement.outcome)
                                       .join(AlertRow, AlertRow.id == Engagement.alert_id).where(AlertRow.deployment_id == d.id)):
            if vol_of.get(aid):
                continue
            results[res] = results.get(res, 0) + 1
            outcomes[out] = outcomes.get(out, 0) + 1
        true_alerts = sum(1 for a, v_ in decided.items() if v_ == "true_alert" and not vol_of.get(a))
        false_alerts = sum(1 for a, v_ in decided.items() if v_ == "false_alert" and not vol_of.get(a))
        vol_alerts = [a for a, vol in vol_of.items() if vol]
        vol_true = sum(1 for a in vol_alerts if decided.get(a) == "true_alert")
        vol_false = sum(1 for a in vol_alerts if decided.get(a) == "false_alert")
        passes = sum(s.execute(select(VolunteerPass.passes).where(VolunteerPass.deployment_id == d.id)).scalars().all())
        faces = sum(seen.values())
        snap = s.execute(select(Snapshot).where(Snapshot.deployment_id == d.id)).scalar_one_or_none()
        v |= {
            "signage_confirmed": d.signage_confirmed, "notices_confirmed": d.notices_confirmed, "dpia_ref": d.dpia_ref,
            "authorising_officer": repo.user_name(s, d.authorising_officer_id), "planned_by": repo.user_name(s, d.planned_by_id),
            "planned_at": _iso(d.planned_at), "started_at": _iso(d.started_at), "ended_at": _iso(d.ended_at), "end_reason": d.end_reason,
            "authorisations": [
                {"officer": repo.user_name(s, a.officer_id), "decision": a.decision, "decided_at": _iso(a.decided_at), "note": a.note}
                for a in s.execute(select(Authorisation).where(Authorisation.deployment_id == d.id).order_by(Authorisation.id)).scalars()
            ],
            "snapshot": None if snap is None else {
                "id": snap.id, "created_at": _iso(snap.created_at), "delete_by": _iso(snap.delete_by), "deleted_at": _iso(snap.deleted_at),
                "subjects": snap.n_subjects, "templates": snap.n_templates,
                "composition": json.loads(snap.composition) if snap.composition else None,
            },
            "threshold_evidence": json.loads(d.threshold_evidence) if d.threshold_evidence else None,
            "faces_seen": {"total": faces, "by_camera": seen, "too_poor_to_search": int(sum(
                n for (n,) in s.execute(select(FacesSeen.too_poor).where(FacesSeen.deployment_id == d.id))))},
            "alerts": {"total": len(alerts), "true_alerts": true_alerts, "false_alerts": false_alerts,
                       "unadjudicated": sum(1 for a in alerts if a not in decided), "engagements": results, "outcomes": outcomes},
            "volunteers": {"alerts": len(vol_alerts), "true_alerts": vol_true, "false_alerts": vol_false,
                           "unadjudicated": sum(1 for a in vol_alerts if a not in decided), "passes": passes,
                           "field_tpir": (min(vol_true, passes) / passes) if passes else None},
            # The Met's figure and the independent review's figure; both, since they differ.
            "false_alert_rate": ((false_alerts + vol_false) / faces) if faces else None,
            "alert_precision": (true_alerts / (true_alerts + false_alerts)) if (true_alerts + false_alerts) else None,
        }
        return v

    # -- the live pipeline ------------------------------------------------------------------

    def _running(self, s: Session, deployment_id: int, lock: bool = False) -> Deployment:
        q = select(Deployment).where(Deployment.id == int(deployment_id))
        if lock:
            q = q.with_for_update(read=True)  # a concurrent stop waits for this alert's commit
        d = s.execute(q).scalar_one_or_none()
        if d is None:
            raise NotFound(f"no deployment {deployment_id}")
        if d.status != "active":
            raise DeploymentNotActive(f"deployment {d.id} is {d.status}, not active")
        if self.now() >= d.ends_at:
            raise DeploymentNotActive(f"deployment {d.id} ended at {_iso(d.ends_at)}")
        return d

    def open_run(self, actor: Actor, deployment_id: int):
        """The snapshot, threshold and alert sink of an active deployment (see ``governance.live``)."""
        from .live import AlertStore, DeploymentRun, RunSubject

        self.enforce_schedule()
        with self._tx(actor, "deployment.run") as s:
            d = self._running(s, deployment_id)
            snap = repo.live_snapshot(s, d.id)
            if snap is None:
                raise DeploymentNotActive(f"deployment {d.id} has no snapshot")
            rows = s.execute(select(SnapshotTemplate.subject_id, SnapshotTemplate.subject_name, SnapshotTemplate.subject_category,
                                    SnapshotTemplate.vector, SnapshotTemplate.low_quality_band).where(SnapshotTemplate.snapshot_id == snap.id)
                             .order_by(SnapshotTemplate.subject_id, SnapshotTemplate.id)).all()
            subjects: dict[int, RunSubject] = {}
            for sid, nm, cat, *_ in rows:
                subjects.setdefault(sid, RunSubject(sid, nm, cat))
            templates = np.stack([repo.vector_array(r[3]) for r in rows]) if rows else np.zeros((0, repo.DIM), np.float32)
            self._audit(s, actor, "deployment.run", f"deployment:{d.id}", {"snapshot_id": snap.id, "templates": len(rows)})
            return DeploymentRun(
                deployment_id=d.id, name=d.name, watchlist_templates=templates,
                template_subject_ids=np.array([r[0] for r in rows], np.int64), subjects=list(subjects.values()),
                threshold=d.threshold, cameras=repo.cameras_of(d), starts_at=d.starts_at, ends_at=d.ends_at,
                sink=AlertStore(self, actor),
                threshold_evidence=json.loads(d.threshold_evidence) if d.threshold_evidence else None,
                template_low_quality_band=[r[4] for r in rows],
            )

    def is_running(self, deployment_id: int) -> bool:
        with self.db.transaction() as s:
            try:
                self._running(s, deployment_id)
                return True
            except (DeploymentNotActive, NotFound):
                return False

    def record_alert(self, actor: Actor, deployment_id: int, alert, delivery: tuple[str, int] | None = None) -> int:
        """Persist one alert (a new one, or a better shot of an unadjudicated one) and commit
        before returning its id.

        A sighting never changes an adjudicated alert: the same (camera, track, subject) after a
        decision, or an ``alert_id`` update of an adjudicated alert, becomes a new alert (the next
        ``sighting``; its entry names the alert it ``follows``). ``delivery``: a worker's
        (idempotency key, token id), stored in the same transaction (exactly once)."""
        from .live import normalise_alert

        a = normalise_alert(alert)
        try:
            with self._tx(actor, "alert.record") as s:
                d = self._running(s, deployment_id, lock=True)
                if a["camera"] not in repo.cameras_of(d):
                    raise GovernanceError(f"camera {a['camera']!r} is not one of deployment {d.id}'s cameras")
                snap = repo.live_snapshot(s, d.id)
                if snap is None or s.execute(select(SnapshotTemplate.id).where(
                        SnapshotTemplate.snapshot_id == snap.id, SnapshotTemplate.subject_id == a["subject_id"]).limit(1)).first() is None:
                    raise GovernanceError(f"subject {a['subject_id']} is not in deployment {d.id}'s snapshot (erased?)")
                now = self.now()
                row = None
                if a["alert_id"] is not None:
                    row = s.get(AlertRow, a["alert_id"])
                    if row is None or row.deployment_id != d.id:
                        raise NotFound(f"no alert {a['alert_id']} in deployment {d.id}")
                    if self._adjudicated(s, row.id):
                        row = None  # decided: the sighting goes to its own alert (below)
                if row is None:
                    row = s.execute(select(AlertRow).where(
                        AlertRow.deployment_id == d.id, AlertRow.camera == a["camera"], AlertRow.track == a["track"],
                        AlertRow.subject_id == a["subject_id"]).order_by(AlertRow.sighting.desc()).limit(1)).scalar_one_or_none()
                follows = None
                if row is not None and self._adjudicated(s, row.id):
                    follows, sighting, row = row.id, row.sighting + 1, None
                elif row is None:
                    sighting = 0
                if row is None:
                    row = AlertRow(deployment_id=d.id, camera=a["camera"], track=a["track"], subject_id=a["subject_id"],
                                   distance=a["distance"], distances=json.dumps(a["distances"]), frame=a["frame"],
                                   media_time=a["media_time"], occurred_at=a["occurred_at"] or now, recorded_at=now,
                                   updated_at=now, updates=0, probe_crop=a["crop"], template=a["template"], sighting=sighting)
                    s.add(row)
                    s.flush()
                    action = "alert.create"
                else:
                    row.updates += 1
                    row.updated_at = now
                    if a["distance"] < row.distance:  # a better shot replaces crop and template
                        row.distance, row.distances, row.probe_crop, row.template = (
                            a["distance"], json.dumps(a["distances"]), a["crop"], a["template"])
                        row.frame, row.media_time = a["frame"], a["media_time"]
                    action = "alert.update"
                details = {"deployment_id": d.id, "camera": a["camera"], "track": a["track"], "subject_id": a["subject_id"],
                           "distance": round(a["distance"], 6)}
                if follows is not None:
                    details["follows"] = follows
                self._audit(s, actor, action, f"alert:{row.id}", details)
                if delivery is not None:
                    self._delivered(s, delivery, row.id)
                return row.id
        except DeploymentNotActive:
            self.enforce_schedule()
            raise

    @staticmethod
    def _adjudicated(s: Session, alert_id: int) -> bool:
        return s.execute(select(Adjudication.id).where(Adjudication.alert_id == alert_id).limit(1)).first() is not None

    def _delivered(self, s: Session, delivery: tuple[str, int], alert_id: int | None) -> None:
        from ..store.models import WorkerDelivery

        key, token_id = delivery
        s.add(WorkerDelivery(key=key, token_id=token_id, alert_id=alert_id, received_at=self.now()))
        s.flush()

    def count_faces_seen(self, actor: Actor, deployment_id: int, camera: str, n: int = 1,
                         delivery: tuple[str, int] | None = None, too_poor: int = 0) -> int:
        """Add ``n`` faces seen (tracks) to a deployment's camera, ``too_poor`` of them too poor to search
        (below the lowest quality band); returns the camera's new total.

        Each count is an audit entry with the running total (the published false alert rate's
        denominator is covered by the chain). ``delivery``: as in ``record_alert``."""
        if n < 0 or too_poor < 0:
            raise GovernanceError("faces seen only grow")
        with self._tx(actor, "alert.record") as s:
            d = self._running(s, deployment_id, lock=True)
            camera = str(camera)
            if camera not in repo.cameras_of(d):
                raise GovernanceError(f"camera {camera!r} is not one of deployment {d.id}'s cameras")
            if s.bind.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = insert(FacesSeen).values(deployment_id=d.id, camera=camera, count=int(n), too_poor=int(too_poor))
            s.execute(stmt.on_conflict_do_update(index_elements=["deployment_id", "camera"],
                                                 set_={"count": FacesSeen.count + stmt.excluded.count,
                                                       "too_poor": FacesSeen.too_poor + stmt.excluded.too_poor}))
            total = int(s.execute(select(FacesSeen.count).where(FacesSeen.deployment_id == d.id, FacesSeen.camera == camera)).scalar_one())
            self._audit(s, actor, "faces_seen.count", f"deployment:{d.id}", {"deployment_id": d.id, "camera": camera, "n": int(n),
                                                                             "total": total, "too_poor": int(too_poor)})
            if delivery is not None:
                self._delivered(s, delivery, None)
            return total

    def faces_seen(self, actor: Actor, deployment_id: int) -> dict[str, int]:
        with self._tx(actor, "deployment.read") as s:
            return {c: n for c, n in s.execute(select(FacesSeen.camera, FacesSeen.count).where(FacesSeen.deployment_id == int(deployment_id)))}

    # -- alerts: review ---------------------------------------------------------------------

    def list_alerts(self, actor: Actor, deployment_id: int | None = None, limit: int = 1000) -> list[dict]:
        """Alerts without their crops and templates (newest first)."""
        with self._tx(actor, "alert.read") as s:
            q = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
            if deployment_id is not None:
                q = q.where(AlertRow.deployment_id == int(deployment_id))
            out = []
            for a in s.execute(q).scalars():
                adj = s.execute(select(Adjudication).where(Adjudication.alert_id == a.id).order_by(Adjudication.id.desc()).limit(1)).scalar_one_or_none()
                eng = s.execute(select(Engagement).where(Engagement.alert_id == a.id).order_by(Engagement.id.desc()).limit(1)).scalar_one_or_none()
                subj = s.get(SubjectRow, a.subject_id)
                out.append({
                    "id": a.id, "deployment_id": a.deployment_id, "camera": a.camera, "track": a.track,
                    "subject_id": a.subject_id, "subject_name": subj.name if subj else None, "category": subj.category if subj else None,
                    "distance": a.distance, "distances": json.loads(a.distances), "frame": a.frame, "media_time": a.media_time,
                    "occurred_at": _iso(a.occurred_at), "recorded_at": _iso(a.recorded_at), "updates": a.updates,
                    "adjudication": adj.decision if adj else None, "engagement": (eng.result, eng.outcome) if eng else None,
                })
            return out

    def alert_media(self, actor: Actor, alert_id: int) -> tuple[bytes, bytes]:
        """(probe crop JPEG, template bytes) of one alert, for the operator's console."""
        with self._tx(actor, "alert.read") as s:
            a = s.get(AlertRow, int(alert_id))
            if a is None:
                raise NotFound(f"no alert {alert_id}")
            return a.probe_crop, a.template

    def adjudicate(self, actor: Actor, alert_id: int, decision: str, note: str = "", reason: str = "") -> Adjudication:
        """Record a decision (true or false alert); changing one needs a ``reason`` and the rule
        of ``governance/adjudication.py`` (a supervisor after an outcome or the deployment's end).
        The history is kept: a change is a new row and a new entry."""
        if not (actor.can("alert.adjudicate") or actor.can("alert.revise")):
            self._require(actor, "alert.adjudicate")
        try:
            with self.db.transaction() as s:
                j, new = decide(s, actor, alert_id, decision, note, reason, self.now())
                if new:
                    self._audit(s, actor, "alert.adjudicate", f"alert:{j.alert_id}", {
                        "decision": j.decision, "note": j.note, "reason": j.reason, "adjudication_id": j.id})
                return j
        except PermissionDenied:
            with self.db.transaction() as s:
                self._audit(s, actor, "permission.denied", "alert.revise" if actor.can("alert.adjudicate") else "alert.adjudicate", {})
            raise

    def adjudications(self, actor: Actor, alert_id: int) -> list[dict]:
        """An alert's decisions in time order (the history: first decision and every revision)."""
        with self._tx(actor, "alert.read") as s:
            return [{"id": j.id, "decision": j.decision, "by": repo.user_name(s, j.user_id), "at": _iso(j.decided_at),
                     "note": j.note, "reason": j.reason}
                    for j in s.execute(select(Adjudication).where(Adjudication.alert_id == int(alert_id)).order_by(Adjudication.id)).scalars()]

    def record_outcome(self, actor: Actor, alert_id: int, result: str, outcome: str, note: str = "") -> Engagement:
        if result not in RESULTS:
            raise GovernanceError(f"an engagement result is one of {', '.join(RESULTS)}")
        if outcome not in OUTCOMES:
            raise GovernanceError(f"an outcome is one of {', '.join(OUTCOMES)}")
        with self._tx(actor, "alert.outcome") as s:
            a = s.get(AlertRow, int(alert_id))
            if a is None:
                raise NotFound(f"no alert {alert_id}")
            last = s.execute(select(Adjudication.decision).where(Adjudication.alert_id == a.id).order_by(Adjudication.id.desc()).limit(1)).scalar_one_or_none()
            if last != "true_alert":
                raise GovernanceError(f"alert {a.id} has not been adjudicated a true alert")
            subj = s.get(SubjectRow, a.subject_id)
            if subj is not None and subj.volunteer and outcome == "arrest":
                raise GovernanceError(f"alert {a.id} is for a volunteer of a test deployment: no arrest can be recorded")
            e = Engagement(alert_id=a.id, user_id=actor.user_id, result=result, outcome=outcome, recorded_at=self.now(), note=note or "")
            s.add(e)
            s.flush()
            self._audit(s, actor, "alert.outcome", f"alert:{a.id}", {"result": result, "outcome": outcome, "note": note or "",
                                                                    "engagement_id": e.id})
            return e

    # -- transparency: calibrated thresholds, volunteers, a deployment's history -------------

    def store_threshold_evidence(self, actor: Actor, deployment_id: int, evidence: dict) -> Deployment:
        """Set a planned deployment's threshold from a calibration and keep the evidence with it.

        Only before authorisation, so that the authorising officer sees the threshold and how it
        was chosen. ``evidence`` is the calibration's summary (``openlfr calibrate --json``): it
        must hold ``threshold``, ``watchlist_size`` and ``target_fpir``.
        """
        try:
            threshold = float(evidence["threshold"])
            size, target = int(evidence["watchlist_size"]), float(evidence["target_fpir"])
        except (KeyError, TypeError, ValueError):
            raise GovernanceError("threshold evidence must hold threshold, watchlist_size and target_fpir") from None
        if not (0.0 < threshold < 2.0):
            raise GovernanceError("the threshold is a descriptor distance in (0, 2)")
        text = json.dumps(evidence, sort_keys=True, default=str)
        with self._tx(actor, "deployment.plan") as s:
            d = self._deployment(s, deployment_id, lock=True)
            if d.status != "planned":
                raise GovernanceError(f"deployment {d.id} is {d.status}; the threshold can change only while it is planned")
            was = d.threshold
            d.threshold, d.threshold_evidence = threshold, text
            self._audit(s, actor, "deployment.threshold", f"deployment:{d.id}", {
                "threshold": threshold, "was": was, "watchlist_size": size, "target_fpir": target,
                "tpir": evidence.get("tpir"), "tpir_ci95": evidence.get("tpir_ci95"),
                "evidence_sha256": hashlib.sha256(text.encode()).hexdigest()})
            return d

    def record_volunteer_passes(self, actor: Actor, deployment_id: int, subject_id: int, passes: int) -> None:
        """How many times a volunteer walked past the cameras (sets the count; for field TPIR)."""
        if int(passes) < 0:
            raise GovernanceError("passes cannot be negative")
        with self._tx(actor, "volunteer.record") as s:
            d = self._deployment(s, deployment_id)
            if d.status not in ("active", "ended"):
                raise GovernanceError(f"deployment {d.id} is {d.status}: passes are recorded once it has run")
            subj = s.get(SubjectRow, int(subject_id))
            if subj is None or subj.watchlist_id != d.watchlist_id or not subj.volunteer:
                raise GovernanceError(f"subject {subject_id} is not a volunteer on deployment {d.id}'s watchlist")
            row = s.get(VolunteerPass, (d.id, subj.id))
            if row is None:
                s.add(VolunteerPass(deployment_id=d.id, subject_id=subj.id, passes=int(passes), recorded_at=self.now(),
                                    recorded_by_id=actor.user_id))
            else:
                row.passes, row.recorded_at, row.recorded_by_id = int(passes), self.now(), actor.user_id
            self._audit(s, actor, "volunteer.passes", f"deployment:{d.id}", {"subject_id": subj.id, "passes": int(passes)})

    def deployment_history(self, actor: Actor, deployment_id: int) -> dict:
        """The audit entries about one deployment, for its report, and whether the chain is intact.

        ``events``: entries whose target is the deployment, that name it (``deployment_id``: alerts,
        snapshots), adjudications and outcomes of its alerts, erasures of subjects it alerted on,
        and every purge (retention is global). ``subjects``: the volunteer flag of each subject
        still on record that it alerted on. Reading is not audited.
        """
        with self._tx(actor, "audit.read") as s:
            self._deployment(s, deployment_id)
            ok = audit.verify(s, self.key)
            key = f'"deployment_id":{int(deployment_id)}'
            q = select(AuditEvent).where(
                (AuditEvent.target == f"deployment:{int(deployment_id)}")
                | AuditEvent.details.like(f"%{key},%") | AuditEvent.details.like(f"%{key}}}%")
                | AuditEvent.action.in_(("alert.adjudicate", "alert.outcome", "purge", "subject.erase"))
            ).where(AuditEvent.action != "faces_seen.count").order_by(AuditEvent.seq)
            events, alert_ids, subject_ids = [], set(), set()
            for ev in s.execute(q).scalars():
                r = audit.record_of(ev)
                det = r["details"]
                if r["action"] in ("alert.create", "alert.update") and det.get("deployment_id") == int(deployment_id):
                    alert_ids.add(r["target"])
                    subject_ids.add(det.get("subject_id"))
                elif r["action"] in ("alert.adjudicate", "alert.outcome"):
                    if r["target"] not in alert_ids:
                        continue
                elif r["action"] == "subject.erase":
                    if int(r["target"].split(":")[1]) not in subject_ids:
                        continue
                elif r["action"] != "purge" and det.get("deployment_id", int(deployment_id)) != int(deployment_id) \
                        and r["target"] != f"deployment:{int(deployment_id)}":
                    continue
                events.append({k: r[k] for k in ("seq", "time", "actor", "action", "target", "details")})
            flags = dict(s.execute(select(SubjectRow.id, SubjectRow.volunteer).where(SubjectRow.id.in_(
                [i for i in subject_ids if i is not None]))).all()) if subject_ids else {}
            return {"audit": {"ok": ok.ok, "entries": ok.entries, "first_broken": ok.first_broken, "reason": ok.reason},
                    "events": events, "subjects": {int(k): {"volunteer": bool(v)} for k, v in flags.items()}}

    # -- retention --------------------------------------------------------------------------

    def retention_days(self) -> int:
        with self.db.transaction() as s:
            row = s.get(Setting, RETENTION_KEY)
            return int(row.value) if row else DEFAULT_RETENTION_DAYS

    def set_retention_days(self, actor: Actor, days: int) -> None:
        if not (1 <= int(days) <= 3650):
            raise GovernanceError("the alert retention is 1 to 3650 days")
        with self._tx(actor, "retention.configure") as s:
            row = s.get(Setting, RETENTION_KEY)
            before = int(row.value) if row else DEFAULT_RETENTION_DAYS
            if row is None:
                s.add(Setting(key=RETENTION_KEY, value=str(int(days))))
            else:
                row.value = str(int(days))
            self._audit(s, actor, "setting.change", RETENTION_KEY, {"value": int(days), "was": before})

    def purge(self, actor: Actor, quiet: bool = False) -> PurgeReport:
        """Stop overdue deployments, delete their snapshots, delete alerts past the retention period.

        ``quiet``: audit only when something was deleted (the automatic purge at every command).
        """
        self._require(actor, "purge.run")
        report = PurgeReport(deployments_ended=self.enforce_schedule())
        with self.db.transaction() as s:
            row = s.get(Setting, RETENTION_KEY)
            report.retention_days = int(row.value) if row else DEFAULT_RETENTION_DAYS
            cutoff = self.now() - timedelta(days=report.retention_days)
            old = select(AlertRow.id).where(AlertRow.recorded_at < cutoff)
            s.execute(delete(Adjudication).where(Adjudication.alert_id.in_(old)))
            s.execute(delete(Engagement).where(Engagement.alert_id.in_(old)))
            report.alerts = s.execute(delete(AlertRow).where(AlertRow.recorded_at < cutoff)).rowcount or 0
            # Snapshots: deleted with their deployment (enforce_schedule); this is the backstop.
            stale = s.execute(select(Snapshot).where(Snapshot.deleted_at.is_(None), Snapshot.delete_by <= self.now())).scalars().all()
            for snap in stale:
                s.execute(delete(SnapshotTemplate).where(SnapshotTemplate.snapshot_id == snap.id))
                snap.deleted_at = self.now()
                report.snapshots += 1
            details = {"alerts": report.alerts, "snapshots": report.snapshots, "retention_days": report.retention_days,
                       "cutoff": _iso(cutoff)}
            if not actor.is_system:
                report.automatic = self._automatic_purges(s)
                details["automatic_since_last_report"] = report.automatic.to_json()
            if report.anything or not quiet:
                self._audit(s, actor, "purge", "", details)
        if report.anything:
            scrub(self.db, ("alerts", "adjudications", "engagements", "snapshot_templates"))
        return report

    def _automatic_purges(self, s: Session) -> AutoPurged:
        """What system purges and schedule stops did since the last purge by a person (audit log)."""
        last = s.execute(select(AuditEvent.seq, AuditEvent.time).where(AuditEvent.action == "purge", ~AuditEvent.actor.like("system%"))
                         .order_by(AuditEvent.seq.desc()).limit(1)).first()
        after = last[0] if last else 0
        out = AutoPurged(since=_iso(last[1]) if last else None)
        q = select(AuditEvent).where(AuditEvent.seq > after, AuditEvent.actor.like("system%"),
                                     AuditEvent.action.in_(("purge", "deployment.stop", "snapshot.delete"))).order_by(AuditEvent.seq)
        for ev in s.execute(q).scalars():
            det = json.loads(ev.details)
            if ev.action == "purge":
                out.alerts += int(det.get("alerts", 0))
                out.snapshots += int(det.get("snapshots", 0))
            elif ev.action == "snapshot.delete":
                out.snapshots += 1
            else:
                out.deployments_ended.append(int(ev.target.split(":")[1]))
            out.entries += 1
            out.first_at = out.first_at or _iso(ev.time)
            out.last_at = _iso(ev.time)
        return out

    def housekeeping(self) -> PurgeReport:
        """The automatic purge: run at the start of every command and periodically by live runs."""
        return self.purge(Actor.system("purge"), quiet=True)

    # -- audit ------------------------------------------------------------------------------

    def verify_audit(self, actor: Actor, anchor: audit.Anchor | str | None = None) -> audit.VerifyResult:
        """Walk the keyed chain, its head, an ``anchor`` (``HASH@SEQ``) and the records it covers.

        Reads only (a refusal for the role is audited, as everywhere)."""
        if isinstance(anchor, str):
            anchor = audit.Anchor.parse(anchor)
        with self._tx(actor, "audit.read") as s:
            return audit.verify(s, self.key, anchor)

    def export_audit(self, actor: Actor, out: IO[str]) -> "Exported":
        """Write the log as JSON lines; returns the count, with ``.anchor`` (the last entry's
        ``HASH@SEQ``: keep it elsewhere, and ``audit verify --anchor`` detects any rewrite up to it)."""
        with self._tx(actor, "audit.read") as s:
            n, anchor = audit.export(s, out)
        with self.db.transaction() as s:
            self._audit(s, actor, "audit.export", "", {"entries": n, "anchor": str(anchor) if anchor else None})
        return Exported(n, anchor)
