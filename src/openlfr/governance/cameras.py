"""Camera health: what each camera of a deployment is doing, as its worker reports it.

A control room must see at once that a camera stopped: a deployment that silently records
nothing on one camera under-reports its faces seen and misses the people it was authorised to
look for. Each worker (``openlfr run --deployment``, local or ``--server``) reports every few
seconds, and at once when a source changes state, for each of its cameras: the state, frames
per second, frames read and dropped, faces seen (tracks), the time of the last frame. Reports
hold counts and times only: no frame, no face.

States: ``up`` (frames arrive), ``reconnecting`` (the stream failed and the worker is reopening
it), ``down`` (no frames: the stream died, or the worker stopped reporting for ``STALE_S``
seconds), ``ended`` (a file or folder ended, or the deployment is over); ``waiting`` until a
worker first reports the camera.

A camera that is down or reconnecting for ``warning_after_s`` seconds (``DOWN_WARNING_S``
unless the administrator set ``camera_down_warning_s``) raises a warning on the dashboard and
an audit entry ``camera.down``; ``camera.restored`` is audited when it delivers frames again
(or the deployment ends). Reports themselves are not audited (they come every few seconds).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..store import repository as repo
from ..store.models import CameraStatus, Deployment
from ..store.types import utc
from .errors import GovernanceError
from .roles import Actor

STATES = ("up", "reconnecting", "down", "ended")
NOT_UP = ("reconnecting", "down")
DOWN_WARNING_S = 30.0  # default N: a camera down longer than this is flagged and audited
WARNING_KEY = "camera_down_warning_s"
STALE_S = 20.0  # no report for this long from a camera said to be up: its worker is gone
AUDIT_ACTOR = "system:cameras"
# What a worker's source events mean (openlfr.live.sources.SourceEvent.state).
FROM_SOURCE = {"opened": "up", "live": "up", "reconnected": "up", "up": "up", "down": "down", "reconnecting": "reconnecting",
               "ended": "ended", "error": "down", "skipped": "up", "starting": "up"}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat()


def warning_after_s(gov) -> float:
    return gov.setting(WARNING_KEY, DOWN_WARNING_S, float)


def set_warning_after_s(gov, actor: Actor, seconds: float) -> None:
    """The administrator's N: seconds a camera may be down before the warning (audited)."""
    if not (1 <= float(seconds) <= 86400):
        raise GovernanceError("the camera warning delay is 1 to 86400 seconds")
    gov.change_setting(actor, WARNING_KEY, float(seconds), DOWN_WARNING_S)


def _clean(report: dict) -> dict:
    """A camera report checked: numbers non-negative and bounded, state known, text short."""
    try:
        camera = str(report["camera"])[:200]
        state = FROM_SOURCE.get(str(report.get("state", "up")), None)
        if state is None:
            raise GovernanceError(f"camera {camera}: state {report.get('state')!r} is not one of {', '.join(STATES)}")
        out = {"camera": camera, "state": state,
               "fps": min(max(float(report.get("fps") or 0.0), 0.0), 1000.0),
               "frames": max(int(report.get("frames") or 0), 0), "dropped": max(int(report.get("dropped") or 0), 0),
               "faces_seen": max(int(report.get("faces_seen") or 0), 0),
               "message": str(report.get("message") or "")[:500]}
    except (KeyError, TypeError, ValueError):
        raise GovernanceError("a camera report needs camera, state and numeric fps, frames, dropped, faces_seen") from None
    last = report.get("last_frame_at")
    if isinstance(last, (int, float)) and last > 0:
        last = datetime.fromtimestamp(float(last)).astimezone()
    elif isinstance(last, str) and last:
        try:
            last = datetime.fromisoformat(last)
        except ValueError:
            raise GovernanceError(f"camera {camera}: last_frame_at is not an ISO time") from None
    out["last_frame_at"] = utc(last) if isinstance(last, datetime) else None
    return out


def report(gov, actor: Actor, deployment_id: int, worker: str, cameras: list[dict]) -> list[dict]:
    """Record a worker's report of its cameras (``deployment.run``); returns the cameras' views.

    Only the deployment's own cameras are accepted; the deployment need not be active (a report
    that comes after the end marks the camera ended)."""
    clean = [_clean(c) for c in cameras]
    with gov._tx(actor, "deployment.run") as s:
        d = s.get(Deployment, int(deployment_id))
        if d is None:
            from .errors import NotFound

            raise NotFound(f"no deployment {deployment_id}")
        names = repo.cameras_of(d)
        now = gov.now()
        for c in clean:
            if c["camera"] not in names:
                raise GovernanceError(f"camera {c['camera']!r} is not one of deployment {d.id}'s cameras")
            row = s.get(CameraStatus, (d.id, c["camera"]))
            if row is None:
                row = CameraStatus(deployment_id=d.id, camera=c["camera"], state=c["state"], reported_at=now, warned_at=None,
                                   down_since=None)
                s.add(row)
                was_up = True
            else:
                was_up = _effective(row, d, now)[0] not in NOT_UP
            if c["state"] in NOT_UP and (was_up or row.down_since is None):
                row.down_since = now
            elif c["state"] not in NOT_UP and row.warned_at is None:
                row.down_since = None  # (with a warning open, the sweep below closes it and clears this)
            row.state, row.worker = c["state"], str(worker)[:300]
            for k in ("fps", "frames", "dropped", "faces_seen", "message"):
                setattr(row, k, c[k])
            row.last_frame_at = c["last_frame_at"] or row.last_frame_at
            row.reported_at = now
        s.flush()
    return sweep(gov, deployment_id)


def _effective(row: CameraStatus, d: Deployment, now: datetime, stale_s: float = STALE_S) -> tuple[str, str, datetime | None]:
    """(state, message, down since) as a viewer should see it now."""
    if d.status != "active":
        return "ended", row.message if row.state == "ended" else f"deployment {d.status}", None
    if row.state in ("up", *NOT_UP) and (now - utc(row.reported_at)).total_seconds() > stale_s:
        since = row.down_since or row.reported_at
        return "down", f"no report from its worker for {int((now - utc(row.reported_at)).total_seconds())} s", utc(since)
    return row.state, row.message, utc(row.down_since) if row.down_since and row.state in NOT_UP else None


def _view(d: Deployment, camera: str, row: CameraStatus | None, now: datetime, warn_s: float) -> dict:
    if row is None:
        state = "waiting" if d.status == "active" else ("ended" if d.status in ("ended", "cancelled") else "waiting")
        return {"deployment_id": d.id, "camera": camera, "state": state, "worker": None, "fps": None, "frames": 0,
                "dropped": 0, "faces_seen": 0, "last_frame_at": None, "reported_at": None, "down_since": None,
                "down_for_s": None, "warning": False, "message": "no worker has reported this camera yet"}
    state, message, since = _effective(row, d, now)
    down_for = (now - since).total_seconds() if since is not None and state in NOT_UP else None
    return {"deployment_id": d.id, "camera": camera, "state": state, "worker": row.worker or None, "fps": round(row.fps, 2),
            "frames": int(row.frames), "dropped": int(row.dropped), "faces_seen": int(row.faces_seen),
            "last_frame_at": _iso(row.last_frame_at), "reported_at": _iso(row.reported_at), "down_since": _iso(since),
            "down_for_s": None if down_for is None else round(down_for, 1),
            "warning": down_for is not None and down_for >= warn_s, "message": message}


def sweep(gov, deployment_id: int | None = None) -> list[dict]:
    """The cameras' views (of one deployment, or of every active one), raising or clearing the
    "down too long" warnings on the way (each change audited once)."""
    warn_s = warning_after_s(gov)
    out: list[dict] = []
    with gov.db.transaction() as s:
        now = gov.now()
        q = select(Deployment)
        q = q.where(Deployment.id == int(deployment_id)) if deployment_id is not None else q.where(Deployment.status == "active")
        for d in s.execute(q.order_by(Deployment.id)).scalars():
            rows = {r.camera: r for r in s.execute(select(CameraStatus).where(CameraStatus.deployment_id == d.id)).scalars()}
            for cam in repo.cameras_of(d):
                v = _view(d, cam, rows.get(cam), now, warn_s)
                row = rows.get(cam)
                if row is not None:
                    _audit_change(s, gov, d, row, v, now)
                out.append(v)
        # Warnings still open on deployments that are no longer active: close them.
        if deployment_id is None:
            for row in s.execute(select(CameraStatus).where(CameraStatus.warned_at.is_not(None))).scalars():
                d = s.get(Deployment, row.deployment_id)
                if d is not None and d.status != "active":
                    _audit_change(s, gov, d, row, _view(d, row.camera, row, now, warn_s), now)
    return out


def _audit_change(s, gov, d: Deployment, row: CameraStatus, v: dict, now: datetime) -> None:
    if v["warning"] and row.warned_at is None:
        row.warned_at = now
        gov._audit(s, AUDIT_ACTOR, "camera.down", f"deployment:{d.id}", {
            "deployment_id": d.id, "camera": row.camera, "state": v["state"], "down_since": v["down_since"],
            "worker": row.worker, "message": v["message"]})
    elif not v["warning"] and row.warned_at is not None and v["state"] not in NOT_UP:
        down_s = (now - utc(row.down_since or row.warned_at)).total_seconds()
        row.warned_at = row.down_since = None
        gov._audit(s, AUDIT_ACTOR, "camera.restored", f"deployment:{d.id}", {
            "deployment_id": d.id, "camera": row.camera, "state": v["state"], "worker": row.worker,
            "down_for_s": round(down_s, 1)})


def cameras(gov, actor: Actor, deployment_id: int) -> list[dict]:
    """The cameras of one deployment (``deployment.read``)."""
    gov._require(actor, "deployment.read")
    with gov.db.transaction() as s:
        if s.get(Deployment, int(deployment_id)) is None:
            from .errors import NotFound

            raise NotFound(f"no deployment {deployment_id}")
    return sweep(gov, deployment_id)


class CameraWatch:
    """For a live stream: the cameras whose view changed since the last ``poll`` (first: all)."""

    KEYS = ("state", "worker", "frames", "dropped", "faces_seen", "warning", "message", "reported_at")

    def __init__(self, gov):
        self.gov = gov
        self.seen: dict[tuple[int, str], tuple] = {}

    def poll(self) -> list[dict[str, Any]]:
        changed = []
        for v in sweep(self.gov):
            key = (v["deployment_id"], v["camera"])
            sig = tuple(v[k] for k in self.KEYS)
            if self.seen.get(key) != sig:
                self.seen[key] = sig
                changed.append(v)
        return changed
