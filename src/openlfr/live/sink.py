"""Where a live run's alerts go besides the screen: nowhere (ad hoc) or a deployment's sink.

What crosses from live to the sink is one typed record, ``AlertRecord``, made from the run's
``live.alerts.Alert`` by ``AlertRecord.from_alert`` (the probe chip is encoded to JPEG there).
A sink is bound to one deployment (and, on the database, to the actor running it): governance's
``DeploymentSink`` on the database, the camera worker's ``RemoteAlertSink`` over HTTP. Both
implement ``AlertSink``:

- ``record(record)`` persists the alert and returns its stored id (None while a worker's alert
  waits in its disk buffer). The runner calls it *before* it notifies anyone (the JSON line,
  the display, the console's stream): an alert the operator sees is already durable;
- ``count_faces_seen(camera, n, too_poor)`` adds to the per-camera count;
- ``maintain()`` runs the deployment's upkeep and returns False once the deployment has ended
  (the run then stops itself);
- ``report_cameras(cameras)`` reports each camera's health;
- ``close()`` ends the sink's work, returning what is left undelivered (on disk).

``DeploymentEnded`` is raised once the deployment is no longer active.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class DeploymentEnded(Exception):
    """The sink's deployment is no longer active (ended, stopped, or past its end time): the run
    stops. Governance's ``DeploymentNotActive`` is one."""


@dataclass(frozen=True, eq=False)
class AlertRecord:
    """One alert as it crosses from the live run to a deployment's store.

    ``crop``: the probe crop as JPEG bytes; ``template``: the probe template, (128,) float32.
    ``media_time``: seconds into the source; ``occurred_at``: when it happened (UTC), None for
    "when it is recorded". ``distances``: the track's distances to the subject (empty: just
    ``distance``). ``alert_id``: a stored alert's id, to update that alert. How it was decided
    (None where not known: an older camera worker): ``threshold``, the distance threshold of this
    face (the subject's, for this probe); ``score`` and ``score_threshold``, the scoring model's
    score compared and the band's Z threshold (fused with ``second_model``'s when named, else
    dlib's Z; None for a fixed threshold); ``band``, the probe's quality band used. The sink's
    store checks the record (a JPEG, 128 values, a camera and a subject of the deployment)."""

    camera: str
    track: str | int
    subject_id: int
    distance: float
    crop: bytes
    template: np.ndarray
    distances: tuple[float, ...] = ()
    frame: int | None = None
    media_time: float | None = None
    occurred_at: datetime | None = None
    alert_id: int | None = None
    threshold: float | None = None
    score: float | None = None
    score_threshold: float | None = None
    band: str | None = None
    second_model: str | None = None

    @classmethod
    def from_alert(cls, alert) -> AlertRecord:
        """The record of a run's ``live.alerts.Alert`` (its chip encoded to JPEG); ValueError when
        the alert cannot be stored (no chip or template, a subject that is not a stored one)."""
        if alert.chip is None or alert.template is None:
            raise ValueError(f"alert {alert.id} has no probe crop or template: nothing to store")
        try:
            subject_id = int(alert.subject)
        except (TypeError, ValueError):
            raise ValueError(f"subject id {alert.subject!r} is not a stored subject's id") from None
        return cls(
            camera=str(alert.camera), track=alert.track, subject_id=subject_id, distance=float(alert.distance),
            crop=jpeg(alert.chip), template=np.asarray(alert.template, np.float32).reshape(-1),
            distances=(float(alert.distance),), frame=int(alert.frame), media_time=float(alert.time),
            threshold=_float(getattr(alert, "threshold", None)), score=_float(getattr(alert, "score", None)),
            score_threshold=_float(getattr(alert, "score_threshold", None)), band=getattr(alert, "band", None),
            second_model=getattr(alert, "second_model", None),
        )


def _float(v) -> float | None:
    return None if v is None else float(v)


def jpeg(chip: np.ndarray) -> bytes:
    """An RGB (or grey) uint8 chip as JPEG bytes (quality 92)."""
    import cv2

    a = np.ascontiguousarray(np.asarray(chip, dtype=np.uint8))
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ValueError("could not encode the probe crop")
    return buf.tobytes()


class AlertSink(Protocol):
    """A deployment's sink (see the module docstring)."""

    def record(self, record: AlertRecord) -> int | None: ...

    def count_faces_seen(self, camera: str, n: int = 1, too_poor: int = 0) -> None: ...

    def maintain(self) -> bool: ...

    def report_cameras(self, cameras: list[dict]) -> None: ...

    def close(self) -> int: ...


def split_source_name(spec: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` names a camera (``cam-a=rtsp://...``); a URL's own '=' is left alone."""
    name, sep, rest = str(spec).partition("=")
    if sep and name and rest and all(c.isalnum() or c in "-_." for c in name):
        return name, rest
    return None, str(spec)
