"""SQLAlchemy models: the records openlfr keeps (and nothing else).

Faces that match nobody never reach these tables (the privacy invariant): the only face data
stored are reference images and templates of enrolled subjects, their frozen copies in a
deployment's snapshot (deleted when it ends), and alerts (probe crop and template), which are
purged after the retention period.

Every foreign key to a subject cascades, so erasing a subject removes its images, templates,
snapshot entries and alerts (with their adjudications and outcomes) in the database itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# -- people -----------------------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(100))  # actor name (audit style)


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(40), primary_key=True)


# -- watchlists -------------------------------------------------------------------------------


class WatchlistRow(Base):
    __tablename__ = "watchlists"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class SubjectRow(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("watchlist_id", "ref", name="uq_subjects_watchlist_ref"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watchlist_id: Mapped[int] = mapped_column(ForeignKey("watchlists.id"), index=True)
    ref: Mapped[str] = mapped_column(String(200))  # the enrolling force's own reference
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(60))
    reason: Mapped[str] = mapped_column(Text)  # reason for inclusion
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # A volunteer of a test deployment (a "blue" watchlist entry): their alerts measure TPIR in the
    # field and are kept out of operational figures (outcomes, arrests). Migration 0003.
    volunteer: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ReferenceImage(Base):
    __tablename__ = "reference_images"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)  # where the image came from (custody image, ...)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    media_type: Mapped[str] = mapped_column(String(60), default="application/octet-stream")
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("reference_images.id", ondelete="CASCADE"), index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # 128 float32, little endian
    quality: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Quality band of a reference enrolled below the quality gate (audited override); NULL: it passed. Migration 0006.
    low_quality_band: Mapped[str | None] = mapped_column(String(8))
    # The second model's (SFace's) feature of the same face: 128 float32, little endian; NULL:
    # none (no second model, no RetinaFace landmarks, enrolled before it). Migration 0008.
    second_vector: Mapped[bytes | None] = mapped_column(LargeBinary)


# -- deployments ------------------------------------------------------------------------------


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    use_case: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(Text)
    zone: Mapped[str] = mapped_column(Text)  # zone of recognition
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cameras: Mapped[str] = mapped_column(Text)  # JSON list of camera names
    threshold: Mapped[float] = mapped_column(Float)
    watchlist_id: Mapped[int] = mapped_column(ForeignKey("watchlists.id"))
    signage_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    notices_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    dpia_ref: Mapped[str] = mapped_column(String(200), default="")
    authorising_officer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20), index=True)  # planned/authorised/active/ended/cancelled
    planned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(Text)
    # How the threshold was chosen: a calibration's evidence (JSON), when one was stored. Migration 0003.
    threshold_evidence: Mapped[str | None] = mapped_column(Text)


class Authorisation(Base):
    __tablename__ = "authorisations"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(20))  # authorised
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), unique=True)
    watchlist_id: Mapped[int] = mapped_column(ForeignKey("watchlists.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delete_by: Mapped[datetime] = mapped_column(UTCDateTime)  # the deployment's end
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    n_subjects: Mapped[int] = mapped_column(Integer, default=0)
    n_templates: Mapped[int] = mapped_column(Integer, default=0)
    # What the snapshot held, kept after its templates are deleted (JSON: subjects per category,
    # volunteer subject ids; no names). Migration 0003.
    composition: Mapped[str | None] = mapped_column(Text)


class SnapshotTemplate(Base):
    """A frozen copy of one template (and its subject's name and category) in a snapshot."""

    __tablename__ = "snapshot_templates"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    subject_name: Mapped[str] = mapped_column(String(200))
    subject_category: Mapped[str] = mapped_column(String(60))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    low_quality_band: Mapped[str | None] = mapped_column(String(8))  # copied from the template (migration 0006)
    second_vector: Mapped[bytes | None] = mapped_column(LargeBinary)  # copied from the template (migration 0008)


class VolunteerPass(Base):
    """How many times a volunteer of a test deployment walked past its cameras (for field TPIR)."""

    __tablename__ = "volunteer_passes"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True)
    passes: Mapped[int] = mapped_column(Integer, default=0)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class FacesSeen(Base):
    __tablename__ = "faces_seen"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), primary_key=True)
    camera: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    # of which too poor to search (below the lowest quality band; never searched). Migration 0006.
    too_poor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


# -- alerts -----------------------------------------------------------------------------------


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("deployment_id", "camera", "track", "subject_id", "sighting", name="uq_alerts_track_subject"),
        Index("ix_alerts_recorded_at", "recorded_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    camera: Mapped[str] = mapped_column(String(200))
    track: Mapped[str] = mapped_column(String(100))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    distance: Mapped[float] = mapped_column(Float)
    distances: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    frame: Mapped[int | None] = mapped_column(BigInteger)
    media_time: Mapped[float | None] = mapped_column(Float)  # seconds into the source
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updates: Mapped[int] = mapped_column(Integer, default=0)
    probe_crop: Mapped[bytes] = mapped_column(LargeBinary)  # JPEG
    template: Mapped[bytes] = mapped_column(LargeBinary)  # 128 float32
    # A sighting of a (camera, track, subject) after its alert was adjudicated never changes that
    # alert: it becomes a new alert with the next sighting number. Migration 0004.
    sighting: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # How it was decided (of the stored shot; NULL: not known, an alert stored before 0009 or sent
    # by an older camera worker): the distance threshold of this face, the scoring model's score
    # and the band's Z threshold it was compared with (fused with ``second_model``'s score when
    # named, else dlib's Z; NULL for a fixed threshold), the probe's quality band used. Migration 0009.
    threshold: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    score_threshold: Mapped[float | None] = mapped_column(Float)
    band: Mapped[str | None] = mapped_column(String(8))
    second_model: Mapped[str | None] = mapped_column(String(16))


class Adjudication(Base):
    __tablename__ = "adjudications"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(20))  # true_alert / false_alert
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
    # Why an earlier decision was changed (empty for a first decision). Rows are never updated:
    # a revision is a new row, so the history stays in time order. Migration 0004.
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class Engagement(Base):
    __tablename__ = "engagements"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    result: Mapped[str] = mapped_column(String(20))  # confirmed / unconfirmed
    outcome: Mapped[str] = mapped_column(String(40))  # arrest / other_action / no_further_action / no_engagement
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")


# -- settings and audit -----------------------------------------------------------------------


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AuditEvent(Base):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # True: ``hash`` is an HMAC-SHA256 under the audit key (governance/audit_key.py); False: an
    # entry written before migration 0004 (plain SHA-256), anchored by the first keyed entry.
    keyed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=false())


class AuditHead(Base):
    """One row: the latest audit entry's seq and hash. Locked to append; catches a cut-off tail."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    # HMAC of (seq, hash) under the audit key: without the key the head cannot be moved back
    # after trimming the tail. ``key_id`` names the key (not the key). Migration 0004.
    mac: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(16))


GENESIS_HASH = "0" * 64


# -- API and console (openlfr.web, openlfr.api, openlfr.console) --------------------------------


class ApiToken(Base):
    """A console session, an API bearer token or a camera worker's token; only its SHA-256 is kept.

    ``kind``: ``session`` (console cookie), ``api`` (a user's bearer token: acts with the user's
    current roles), ``worker`` (bound to one deployment; may only post that deployment's alerts
    and faces seen). Revoked tokens stay (revoked_at set) so the list shows what was revoked.
    """

    __tablename__ = "api_tokens"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused (they name records in the audit log)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200), default="")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    deployment_id: Mapped[int | None] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerDelivery(Base):
    """Idempotency keys of what camera workers delivered (alerts, faces seen): a re-delivery is a no-op.

    Holds no face data: the key, the worker token and the alert id the delivery produced.
    """

    __tablename__ = "worker_deliveries"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    alert_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: purge and erasure delete alerts freely
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


# -- camera health and public records (migration 0007) ------------------------------------------


class CameraStatus(Base):
    """The latest health report of one camera of a deployment (no frame, no face: counts and times).

    Overwritten by each report of the worker that runs the camera; ``down_since`` is when it last
    stopped delivering frames and ``warned_at`` when its "down for too long" warning was raised
    (and audited), cleared (and audited) when it comes back.
    """

    __tablename__ = "camera_status"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    camera: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # up / reconnecting / down / ended
    worker: Mapped[str] = mapped_column(String(300), default="")
    fps: Mapped[float] = mapped_column(Float, default=0.0)
    frames: Mapped[int] = mapped_column(BigInteger, default=0)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    faces_seen: Mapped[int] = mapped_column(BigInteger, default=0)
    last_frame_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message: Mapped[str] = mapped_column(Text, default="")


class Publication(Base):
    """An ended deployment an administrator chose to publish on the public transparency pages."""

    __tablename__ = "publications"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    authorising_rank: Mapped[str] = mapped_column(String(100))  # the authorising officer's rank (never a name)
