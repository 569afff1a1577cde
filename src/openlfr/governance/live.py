"""What ``openlfr run --deployment ID`` needs from governance: the snapshot and the alert sink.

::

    run = open_deployment_run(db_url, deployment_id, actor=operator)   # refuses unless active
    run.watchlist_templates   # (M, 128) float32, the frozen snapshot
    run.second_templates      # (M, 128) float32 second-model features (NaN rows: none), or None
    run.template_subject_ids  # (M,) int64: subject id of each template
    run.subjects              # [RunSubject(id, name, category)]
    run.threshold, run.cameras, run.ends_at
    run.watchlist()           # the same as an ``openlfr.watchlist.model.Watchlist``
    run.sink                  # a DeploymentSink: this deployment, as this actor
    alert_id = run.sink.record(AlertRecord(...))   # committed (on disk) when it returns
    run.sink.count_faces_seen(camera, n)
    run.sink.maintain()       # purge + schedule; False once the deployment is over: stop

``run.sink`` is the live run's ``live.sink.AlertSink``, bound to (governance, actor,
deployment). ``record`` takes a ``live.sink.AlertRecord`` (camera, track, subject id, distance,
distances, frame, media time or time of day, the probe crop as JPEG bytes, the template as 128
float32, and optional ``alert_id``: an id ``record`` returned, to update that alert). The same
(camera, track, subject) updates its alert instead of adding one. An alert is *acknowledged*
when ``record`` returns: the transaction has committed (SQLite ``synchronous=FULL``;
PostgreSQL's default ``synchronous_commit=on``), so a crash after that loses nothing. Notify the
operator only after it returns. Raises ``DeploymentNotActive`` once the deployment has ended
(stop then) and ``GovernanceError`` for a bad record (not a JPEG, not 128 values), an unknown
camera or a subject no longer in the snapshot (erased). Nothing here logs a template or a crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..live.sink import AlertRecord, AlertSink
from ..store import repository as repo
from ..store.types import utc
from .clock import Clock
from .errors import GovernanceError
from .roles import Actor

JPEG_MAGIC = b"\xff\xd8"


@dataclass
class RunSubject:
    id: int
    name: str
    category: str


class DeploymentSink:
    """A live run's alert sink: one deployment, as one actor (``live.sink.AlertSink``; see the
    module docstring)."""

    def __init__(self, gov, actor: Actor, deployment_id: int):
        self.gov = gov
        self.actor = actor
        self.deployment_id = int(deployment_id)

    def record(self, record: AlertRecord) -> int:
        return self.gov.record_alert(self.actor, self.deployment_id, record)

    def count_faces_seen(self, camera: str, n: int = 1, too_poor: int = 0) -> None:
        if n or too_poor:
            self.gov.count_faces_seen(self.actor, self.deployment_id, camera, n, too_poor=too_poor)

    def maintain(self) -> bool:
        """Run the automatic purge and schedule; True while the deployment may go on."""
        self.gov.housekeeping()
        return self.gov.is_running(self.deployment_id)

    def report_cameras(self, cameras: list[dict]) -> None:
        """Camera health (``openlfr.governance.cameras``), as this host and actor."""
        import socket

        from .cameras import report

        report(self.gov, self.actor, self.deployment_id, f"{socket.gethostname()} (local run as {self.actor.name})", cameras)

    def close(self) -> int:
        """Nothing waits: every alert and count was committed when it was handed over."""
        return 0

    def __repr__(self) -> str:
        return f"DeploymentSink(deployment={self.deployment_id}, actor={self.actor.name!r})"


@dataclass
class DeploymentRun:
    deployment_id: int
    name: str
    watchlist_templates: np.ndarray = field(repr=False)
    template_subject_ids: np.ndarray = field(repr=False)
    subjects: list[RunSubject] = field(repr=False)
    threshold: float
    cameras: list[str]
    starts_at: datetime
    ends_at: datetime
    sink: AlertSink  # governance's DeploymentSink, or a camera worker's RemoteAlertSink
    threshold_evidence: dict | None = None  # how the threshold was chosen (a scoring model decides per band)
    template_low_quality_band: list = field(default_factory=list)  # per template: band name of an override, or None
    # (M, 128) float32 second-model (SFace) features row-aligned with ``watchlist_templates``, a row
    # of NaN where a template has none; None when none has one (``Watchlist.second_templates``)
    second_templates: np.ndarray | None = field(default=None, repr=False)

    def reference_bands(self) -> np.ndarray | None:
        """(subjects,) worst quality band index of each subject's references enrolled below the gate
        (0 where none was), in the order of ``watchlist()``; None when there is no override."""
        if not any(self.template_low_quality_band):
            return None
        from ..scoring import load_scoring_model

        names = load_scoring_model().band_names()
        index = {s.id: i for i, s in enumerate(self.subjects)}
        out = np.zeros(len(self.subjects), np.int64)
        for sid, band in zip(self.template_subject_ids, self.template_low_quality_band):
            if band:
                b = names.index(band) if band in names else len(names) - 1
                out[index[int(sid)]] = max(out[index[int(sid)]], b)
        return out

    def watchlist(self):
        """The snapshot as an ``openlfr.watchlist.model.Watchlist`` (subject ids as strings)."""
        from ..watchlist.model import Subject, Watchlist

        index = {s.id: i for i, s in enumerate(self.subjects)}
        return Watchlist(
            subjects=[Subject(str(s.id), s.name, s.category) for s in self.subjects],
            templates=self.watchlist_templates,
            template_subject=np.array([index[int(i)] for i in self.template_subject_ids], np.int64),
            template_quality=np.zeros(len(self.template_subject_ids), np.float32),
            second_templates=self.second_templates,
        )


def open_deployment_run(db_url: str | None, deployment_id: int, actor: Actor | None = None, clock: Clock | None = None) -> DeploymentRun:
    """Everything ``openlfr run --deployment ID`` needs; refuses unless the deployment is active.

    ``actor``: who runs it (an operator's ``Actor`` from ``Governance.login``; a camera worker's
    is its token's). Required: a run is never anonymous, its alerts are recorded in that name.
    """
    from .service import Governance

    if actor is None:
        raise GovernanceError("a deployment run acts as someone: pass the operator's Actor (Governance.login), "
                              "or run as a camera worker with its token")
    gov = Governance(db_url, clock)
    gov.housekeeping()
    return gov.open_run(actor, int(deployment_id))


def alert_fields(record: AlertRecord) -> dict:
    """The record's fields as the store keeps them (crop and template as bytes, the track as
    text, the time in UTC); ``GovernanceError`` for a bad record."""
    if not isinstance(record, AlertRecord):
        raise GovernanceError(f"an alert is an openlfr.live.sink.AlertRecord, not {type(record).__name__}")
    try:
        subject_id = int(record.subject_id)
    except (TypeError, ValueError):
        raise GovernanceError(f"subject id {record.subject_id!r} is not a stored subject's id") from None
    if not isinstance(record.crop, (bytes, bytearray)) or not bytes(record.crop).startswith(JPEG_MAGIC):
        raise GovernanceError("the probe crop is not a JPEG")
    if not isinstance(record.template, np.ndarray):
        raise GovernanceError(f"alert template: a (128,) float32 array, not {type(record.template).__name__}")
    try:
        template = repo.vector_bytes(record.template)
    except ValueError as e:
        raise GovernanceError(f"alert template: {e}") from None
    if record.occurred_at is not None and not isinstance(record.occurred_at, datetime):
        raise GovernanceError("an alert's occurred_at is a datetime")
    decision = {k: _finite(getattr(record, k), k) for k in ("threshold", "score", "score_threshold")}
    decision |= {k: _short(getattr(record, k), k, n) for k, n in (("band", 8), ("second_model", 16))}
    return {
        "camera": str(record.camera), "track": str(record.track), "subject_id": subject_id, "distance": float(record.distance),
        "distances": [float(x) for x in record.distances] or [float(record.distance)],
        "frame": None if record.frame is None else int(record.frame),
        "media_time": None if record.media_time is None else float(record.media_time),
        "occurred_at": None if record.occurred_at is None else utc(record.occurred_at),
        "crop": bytes(record.crop), "template": template,
        "alert_id": None if record.alert_id is None else int(record.alert_id),
        **decision,
    }


DECISION_FIELDS = ("threshold", "score", "score_threshold", "band", "second_model")  # how an alert was decided


def _finite(v, what: str) -> float | None:
    """None, or a finite number (an alert's threshold or score)."""
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise GovernanceError(f"an alert's {what} is a number, not {type(v).__name__}") from None
    if not np.isfinite(x):
        raise GovernanceError(f"an alert's {what} is a finite number")
    return x


def _short(v, what: str, n: int) -> str | None:
    """None, or a short name (an alert's band, its second model)."""
    if v is None:
        return None
    if not isinstance(v, str) or not v or len(v) > n or not all(c.isalnum() or c in "-_." for c in v):
        raise GovernanceError(f"an alert's {what} is a name of at most {n} letters, digits, '-', '_' or '.'")
    return v
