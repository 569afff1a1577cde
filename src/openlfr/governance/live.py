"""What ``openlfr run --deployment ID`` needs from governance: the snapshot and the alert sink.

::

    run = open_deployment_run(db_url, deployment_id, actor=operator)   # refuses unless active
    run.watchlist_templates   # (M, 128) float32, the frozen snapshot
    run.template_subject_ids  # (M,) int64: subject id of each template
    run.subjects              # [RunSubject(id, name, category)]
    run.threshold, run.cameras, run.ends_at
    run.watchlist()           # the same as an ``openlfr.watchlist.model.Watchlist``
    alert_id = run.sink.record(deployment_id, {...})   # committed (on disk) when it returns
    run.sink.count_faces_seen(deployment_id, camera, n)
    run.maintain()            # purge + schedule; False once the deployment is over: stop

``record`` takes a dict (or an object with the same attributes, e.g. ``live.alerts.Alert``):
``camera``, ``track``, ``subject_id`` (or ``subject``: the subject's id from ``run.subjects``),
``distance``, optional ``distances`` (list), ``frame``, ``time`` (a datetime, epoch seconds, or
seconds into the source), the probe crop as JPEG bytes (``crop``/``probe_crop``) or as an RGB
array (``chip``, encoded to JPEG here), ``template`` (128 floats or 512 bytes), and optional
``alert_id`` (an id ``record`` returned) to update that alert. The same (camera, track,
subject) updates its alert instead of adding one. An alert is *acknowledged* when ``record``
returns: the transaction has committed (SQLite ``synchronous=FULL``; PostgreSQL's default
``synchronous_commit=on``), so a crash after that loses nothing. Notify the operator only
after it returns. Raises ``DeploymentNotActive`` once the deployment has ended (stop then) and
``GovernanceError`` for an unknown camera or a subject no longer in the snapshot (erased).
Nothing here logs a template or a crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..store import repository as repo
from ..store.types import utc
from .clock import Clock
from .errors import GovernanceError
from .roles import Actor

JPEG_MAGIC = b"\xff\xd8"
EPOCH_MIN = 1e9  # a number this large is epoch seconds, a smaller one seconds into the source


@dataclass
class RunSubject:
    id: int
    name: str
    category: str


class AlertStore:
    """The live pipeline's alert sink for one actor (see the module docstring)."""

    def __init__(self, gov, actor: Actor):
        self._gov = gov
        self.actor = actor

    def record(self, deployment_id: int, alert) -> int:
        return self._gov.record_alert(self.actor, deployment_id, alert)

    def count_faces_seen(self, deployment_id: int, camera: str, n: int = 1, too_poor: int = 0) -> None:
        self._gov.count_faces_seen(self.actor, deployment_id, camera, n, too_poor=too_poor)

    def report_cameras(self, deployment_id: int, cameras: list[dict]) -> None:
        """Camera health (``openlfr.governance.cameras``), as this host and actor."""
        import socket

        from .cameras import report

        report(self._gov, self.actor, deployment_id, f"{socket.gethostname()} (local run as {self.actor.name})", cameras)

    def __repr__(self) -> str:
        return f"AlertStore(actor={self.actor.name!r})"


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
    sink: AlertStore
    threshold_evidence: dict | None = None  # how the threshold was chosen (a scoring model decides per band)
    template_low_quality_band: list = field(default_factory=list)  # per template: band name of an override, or None

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
        )

    def is_active(self) -> bool:
        return self.sink._gov.is_running(self.deployment_id)

    def maintain(self) -> bool:
        """Run the automatic purge and schedule; True while the deployment may go on."""
        self.sink._gov.housekeeping()
        return self.is_active()


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


def _get(alert, *names, default=None):
    for n in names:
        if isinstance(alert, dict):
            if n in alert and alert[n] is not None:
                return alert[n]
        elif getattr(alert, n, None) is not None:
            return getattr(alert, n)
    return default


def _jpeg(chip: np.ndarray) -> bytes:
    import cv2

    a = np.ascontiguousarray(np.asarray(chip, dtype=np.uint8))
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise GovernanceError("could not encode the probe crop")
    return buf.tobytes()


def normalise_alert(alert: Any) -> dict:
    """The alert's fields as the store keeps them; raises ``GovernanceError`` for a bad alert."""
    camera, track = _get(alert, "camera"), _get(alert, "track")
    subject = _get(alert, "subject_id", "subject")
    distance = _get(alert, "distance")
    if camera is None or track is None or subject is None or distance is None:
        raise GovernanceError("an alert needs camera, track, subject_id and distance")
    try:
        subject_id = int(subject)
    except (TypeError, ValueError):
        raise GovernanceError(f"subject id {subject!r} is not a stored subject's id") from None
    crop = _get(alert, "crop", "probe_crop")
    if crop is None:
        chip = _get(alert, "chip")
        if chip is None:
            raise GovernanceError("an alert needs its probe crop (crop: JPEG bytes, or chip: an RGB array)")
        crop = _jpeg(chip)
    crop = bytes(crop)
    if not crop.startswith(JPEG_MAGIC):
        raise GovernanceError("the probe crop is not a JPEG")
    template = _get(alert, "template")
    if template is None:
        raise GovernanceError("an alert needs its probe template")
    try:
        template = repo.vector_bytes(template)
    except ValueError as e:
        raise GovernanceError(f"alert template: {e}") from None
    t = _get(alert, "time")
    occurred_at, media_time = None, _get(alert, "media_time")
    if isinstance(t, datetime):
        occurred_at = utc(t)
    elif isinstance(t, (int, float, np.floating, np.integer)):
        if float(t) >= EPOCH_MIN:
            occurred_at = datetime.fromtimestamp(float(t), timezone.utc)
        elif media_time is None:
            media_time = float(t)
    distances = _get(alert, "distances")
    distances = [float(x) for x in (distances if distances is not None else [distance])]
    frame = _get(alert, "frame")
    alert_id = alert.get("alert_id") if isinstance(alert, dict) else None
    return {
        "camera": str(camera), "track": str(track), "subject_id": subject_id, "distance": float(distance),
        "distances": distances, "frame": None if frame is None else int(frame),
        "media_time": None if media_time is None else float(media_time), "occurred_at": occurred_at,
        "crop": crop, "template": template, "alert_id": None if alert_id is None else int(alert_id),
    }
