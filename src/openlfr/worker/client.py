"""The camera worker's side: a deployment run whose alerts go to an ``openlfr serve`` server.

::

    run = open_remote_run("http://console:8000", token, deployment_id)   # GET /api/worker/run
    run.watchlist_templates, run.template_subject_ids, run.subjects, run.threshold, run.cameras
    alert_id = run.sink.record(AlertRecord(...))   # as governance's DeploymentSink.record
    run.sink.count_faces_seen("cam-a", 1)
    keep_going = run.sink.maintain()               # flush; ask the server; False: stop
    left = run.sink.close()                        # what still waits on disk

The same run as ``openlfr.governance.open_deployment_run``, and a sink with the same interface
(``openlfr.live.sink.AlertSink``), bound to the token's deployment, so a live run does not care
whether its alerts go to the database or to a server.

**Delivery.** Each alert gets an idempotency key (a UUID) when it is raised. ``record`` posts
it at once; the server answers with the alert id once the alert is committed. When the server
cannot be reached (or answers 5xx/429), the alert is appended to a buffer file on disk
(``<data dir>/worker-buffer/deployment-<id>.jsonl``, mode 0600; alerts (probe crop,
template, scores, time, camera) with its key, and ``record`` returns None. A background thread
delivers the buffer in order, with back-off, as soon as the server answers again; later alerts
queue behind it. Re-delivering a key the server has seen changes nothing (it answers with the
same alert id), so a reply lost on the way never makes a duplicate. Delivered entries leave the
file, which is removed when empty. An alert the server refuses for good (the deployment has
ended, the subject was erased) is dropped from the buffer and counted in ``refused``.

Faces seen (counts, no personal data) go the same way, in the same buffer and in order with
the alerts: each count gets its own idempotency key when it is counted, and waits on disk
(``{"faces_seen": {...}}`` lines) while the server is away, so a worker that exits (or is
killed) before the server is back loses no count, and a re-delivered count is never counted
twice (the server commits the count and its key together). They are the denominator of the
published false alert rate.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..governance.errors import DeploymentNotActive, GovernanceError, NotFound, PermissionDenied
from ..governance.live import DECISION_FIELDS, DeploymentRun, RunSubject, alert_fields
from ..live.sink import AlertRecord

log = logging.getLogger(__name__)
TOKEN_ENV = "OPENLFR_WORKER_TOKEN"


class ServerUnavailable(Exception):
    """No answer, or a temporary error (5xx, 429): keep the alert and try again later."""


class Refused(GovernanceError):
    """The server refused the request for good (4xx)."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(f"{detail} (HTTP {status})")
        self.status, self.error, self.detail = status, error, detail


class WorkerClient:
    """HTTP calls to the server's worker endpoints (standard library only)."""

    def __init__(self, server: str, token: str, timeout: float = 5.0):
        if not server.startswith(("http://", "https://")):
            raise ValueError("the server is a URL: http://host:port or https://host")
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read().decode("utf-8") or "{}")
        except urllib.error.HTTPError as e:
            try:
                payload = json.loads(e.read().decode("utf-8") or "{}")
            except Exception:  # noqa: BLE001
                payload = {}
            detail, error = str(payload.get("detail") or e.reason), str(payload.get("error") or "")
            if e.code >= 500 or e.code in (408, 429):
                raise ServerUnavailable(f"{e.code}: {detail}") from None
            raise Refused(e.code, error, detail) from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise ServerUnavailable(str(getattr(e, "reason", e))) from None


def _refusal(e: Refused) -> GovernanceError:
    if e.error == "not_active":
        return DeploymentNotActive(e.detail)
    if e.status == 404:
        return NotFound(e.detail)
    if e.status in (401, 403):
        return PermissionDenied(e.detail)
    return GovernanceError(e.detail)


def alert_payload(record: AlertRecord) -> dict:
    """The JSON body of ``POST /api/worker/alerts`` for an alert, with a new key; ``GovernanceError``
    for a bad record (checked here as the server checks it, so it never waits in the buffer)."""
    a = alert_fields(record)
    body = {
        "idempotency_key": str(uuid.uuid4()), "camera": a["camera"], "track": a["track"], "subject_id": a["subject_id"],
        "distance": a["distance"], "distances": a["distances"][:64], "frame": a["frame"], "media_time": a["media_time"],
        "crop": base64.b64encode(a["crop"]).decode("ascii"), "template": base64.b64encode(a["template"]).decode("ascii"),
    }
    # how it was decided, where known (left out when not: what an older server accepts)
    body |= {k: a[k] for k in DECISION_FIELDS if a[k] is not None}
    if a["occurred_at"] is not None:
        body["occurred_at"] = a["occurred_at"].isoformat()
    elif a["media_time"] is None:
        body["occurred_at"] = datetime.now(timezone.utc).isoformat()
    return body


class AlertBuffer:
    """Alerts not yet delivered, one JSON line each, fsync'd: survives a crash or a restart."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.items: list[dict] = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    self.items.append(json.loads(line))
                except ValueError:  # a line cut by a crash mid-write
                    continue

    def __len__(self) -> int:
        return len(self.items)

    def append(self, item: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(item, separators=(",", ":")) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.items.append(item)

    def drop_first(self, n: int = 1) -> None:
        self.items = self.items[n:]
        if not self.items:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in self.items).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def default_buffer_dir() -> Path:
    from ..governance.storage import data_dir

    return data_dir() / "worker-buffer"


class RemoteAlertSink:
    """``record`` / ``count_faces_seen`` over HTTP, with the disk buffer (see the module docstring)."""

    def __init__(self, client: WorkerClient, deployment_id: int, buffer_dir: Path | None = None,
                 retry_s: float = 1.0, max_retry_s: float = 30.0, ends_at: datetime | None = None):
        self.client = client
        self.deployment_id = int(deployment_id)  # the token's deployment
        self.ends_at = ends_at  # while the server is away, the run stops at this time all the same
        self.buffer = AlertBuffer(Path(buffer_dir or default_buffer_dir()) / f"deployment-{self.deployment_id}.jsonl")
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.delivered = 0
        self.refused = 0
        self.ended = False
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()  # one delivery pass at a time, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if len(self.buffer):
            self._start()

    # -- alerts -------------------------------------------------------------------------------

    def record(self, record: AlertRecord) -> int | None:
        """The server's alert id once it is committed there; None when buffered for later delivery."""
        if self.ended:
            raise DeploymentNotActive(f"deployment {self.deployment_id} is over")
        body = alert_payload(record)
        with self._lock:
            if len(self.buffer):
                self.buffer.append(body)  # keep the order: behind what waits already
                self._start()
                return None
            try:
                return int(self.client.call("POST", "/api/worker/alerts", body)["alert_id"])
            except ServerUnavailable as e:
                log.warning("server unavailable (%s): alert buffered on disk", e)
                self.buffer.append(body)
                self._start()
                return None
            except Refused as e:
                raise _refusal(e) from None

    def pending(self) -> int:
        with self._lock:
            return len(self.buffer)

    def flush(self) -> int:
        """Deliver what waits, in order, until the server fails again; returns how many alerts went.

        The HTTP calls run without holding the lock ``record`` takes, so a camera never waits
        on a slow or unreachable server while the buffer drains (new alerts queue behind it)."""
        sent = 0
        with self._flush_lock:
            while True:
                with self._lock:
                    if not len(self.buffer):
                        break
                    item = self.buffer.items[0]
                faces = item.get("faces_seen")
                try:
                    if faces is not None:
                        self.client.call("POST", "/api/worker/faces-seen", faces)
                    else:
                        self.client.call("POST", "/api/worker/alerts", item)
                        sent += 1
                        self.delivered += 1
                except ServerUnavailable:
                    return sent
                except Refused as e:
                    if faces is None:
                        self.refused += 1
                    log.warning("buffered %s refused by the server, dropped: %s", "faces seen" if faces is not None else "alert", e.detail)
                    if e.error == "not_active":
                        self.ended = True
                with self._lock:
                    self.buffer.drop_first()
        return sent

    # -- faces seen ---------------------------------------------------------------------------

    def count_faces_seen(self, camera: str, n: int = 1, too_poor: int = 0) -> None:
        if not (n or too_poor):
            return
        with self._lock:
            batch = {"idempotency_key": str(uuid.uuid4()), "camera": str(camera), "count": int(n), "too_poor": int(too_poor)}
            if len(self.buffer):
                self.buffer.append({"faces_seen": batch})  # in order, behind what waits already
                self._start()
                return
            try:
                self.client.call("POST", "/api/worker/faces-seen", batch)
            except ServerUnavailable as e:
                log.warning("server unavailable (%s): faces seen buffered on disk", e)
                self.buffer.append({"faces_seen": batch})
                self._start()
            except Refused as e:
                raise _refusal(e) from None

    # -- camera health -----------------------------------------------------------------------------

    def report_cameras(self, cameras: list[dict]) -> None:
        """Post the cameras' health; dropped when the server is away (the next report replaces it)."""
        import socket

        body = {"host": socket.gethostname()[:200], "cameras": [
            {**c, "last_frame_at": datetime.fromtimestamp(c["last_frame_at"], timezone.utc).isoformat()
             if isinstance(c.get("last_frame_at"), (int, float)) else c.get("last_frame_at")} for c in cameras]}
        try:
            self.client.call("POST", "/api/worker/cameras", body)
        except ServerUnavailable as e:
            log.info("camera health not reported (server away: %s)", e)
        except Refused as e:
            log.warning("camera health refused by the server: %s", e.detail)

    # -- the deployment's state ------------------------------------------------------------------

    def maintain(self) -> bool:
        """Deliver what waits, then ask the server whether the deployment goes on (offline: until
        its end time); False: stop."""
        self.flush()
        if self.ended:
            return False
        try:
            return bool(self.client.call("GET", "/api/worker/status").get("active"))
        except ServerUnavailable:
            return self.ends_at is None or datetime.now(timezone.utc) < self.ends_at
        except Refused:
            return False

    # -- the background delivery ------------------------------------------------------------------

    def _start(self) -> None:
        self._wake.set()
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="openlfr-alert-delivery", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        wait = self.retry_s
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep trying; the buffer is on disk
                log.exception("alert delivery failed")
            if not self.pending():
                wait = self.retry_s
                if not self._wake.is_set():
                    break
                continue
            wait = min(self.max_retry_s, wait * 2)

    def close(self, flush_timeout_s: float = 5.0) -> int:
        """Try to deliver what waits (up to ``flush_timeout_s``), stop the thread; returns what is left on disk."""
        deadline = time.monotonic() + flush_timeout_s
        while self.pending() and time.monotonic() < deadline:
            if not self.flush():
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        return len(self.buffer)


def open_remote_run(server: str, token: str | None, deployment_id: int, buffer_dir: Path | None = None,
                    timeout: float = 5.0) -> DeploymentRun:
    """The snapshot, threshold and a buffered alert sink of an active deployment, from the server."""
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise GovernanceError(f"a worker token is needed (--token or ${TOKEN_ENV}): create one on the deployment's page")
    client = WorkerClient(server, token, timeout)
    try:
        r = client.call("GET", "/api/worker/run")
    except Refused as e:
        raise _refusal(e) from None
    except ServerUnavailable as e:
        raise GovernanceError(f"the server {server} does not answer: {e}") from None
    if int(r["deployment_id"]) != int(deployment_id):
        raise GovernanceError(f"the worker token is for deployment {r['deployment_id']}, not {deployment_id}")
    templates = np.frombuffer(base64.b64decode(r["templates"]), dtype="<f4").astype(np.float32).reshape(-1, 128)
    second = r.get("second_templates")  # absent from a server before the second model: none
    second_templates = None if not second else np.frombuffer(base64.b64decode(second), dtype="<f4").astype(np.float32).reshape(-1, 128)
    if second_templates is not None and len(second_templates) != len(templates):
        raise GovernanceError(f"the server sent {len(second_templates)} second templates for {len(templates)} templates")
    ends_at = datetime.fromisoformat(r["ends_at"])
    return DeploymentRun(
        deployment_id=int(r["deployment_id"]), name=r["name"], watchlist_templates=templates,
        template_subject_ids=np.array(r["template_subject_ids"], np.int64),
        subjects=[RunSubject(int(s["id"]), s["name"], s["category"]) for s in r["subjects"]],
        threshold=float(r["threshold"]), cameras=list(r["cameras"]),
        starts_at=datetime.fromisoformat(r["starts_at"]), ends_at=ends_at,
        sink=RemoteAlertSink(client, int(r["deployment_id"]), buffer_dir, ends_at=ends_at),
        threshold_evidence=r.get("threshold_evidence"),
        template_low_quality_band=list(r.get("template_low_quality_band") or []),
        second_templates=second_templates,
    )
