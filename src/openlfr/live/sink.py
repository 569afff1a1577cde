"""Where a live run's alerts go besides the screen: nowhere (ad hoc) or a deployment's store.

The runner calls ``record(alert)`` *before* it notifies anyone (the JSON line, the display, the
console's stream): an alert the operator sees is already durable. ``count_faces_seen`` adds
to the per-camera count, and ``maintain()`` runs the deployment's purge and schedule,
returning False once the deployment has ended (the run then stops itself).
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class DeploymentEnded(Exception):
    """The sink's deployment is no longer active (ended, stopped, or past its end time): the run
    stops. Governance's ``DeploymentNotActive`` is one."""


class AlertSink(Protocol):
    def record(self, alert) -> object: ...

    def count_faces_seen(self, camera: str, n: int, too_poor: int = 0) -> None: ...

    def maintain(self) -> bool: ...


class DeploymentSink:
    """Persists a deployment's alerts and faces-seen counts through governance's AlertStore."""

    def __init__(self, run):
        self.run = run  # openlfr.governance.live.DeploymentRun
        self.ids: dict[int, object] = {}  # live alert id -> stored alert id

    def record(self, alert) -> object:
        stored = self.run.sink.record(self.run.deployment_id, alert)
        self.ids[alert.id] = stored
        return stored

    def count_faces_seen(self, camera: str, n: int, too_poor: int = 0) -> None:
        if n or too_poor:
            self.run.sink.count_faces_seen(self.run.deployment_id, camera, n, **({"too_poor": too_poor} if too_poor else {}))

    def maintain(self) -> bool:
        return self.run.maintain()

    def report_cameras(self, cameras: list[dict]) -> None:
        """Each camera's health (state, frames/s, dropped frames, faces seen, last frame) to the deployment."""
        report = getattr(self.run.sink, "report_cameras", None)
        if report is not None:
            report(self.run.deployment_id, cameras)


def split_source_name(spec: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` names a camera (``cam-a=rtsp://...``); a URL's own '=' is left alone."""
    name, sep, rest = str(spec).partition("=")
    if sep and name and rest and all(c.isalnum() or c in "-_." for c in name):
        return name, rest
    return None, str(spec)
