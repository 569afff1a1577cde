"""Camera workers: alerts posted with a worker token, idempotent re-delivery, the disk buffer while
the server is away (delivered without duplicates when it is back), faces seen, the run's snapshot,
and the live stream (SSE) that carries the alerts to the console."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from openlfr.governance.errors import DeploymentNotActive
from openlfr.governance.testing import alert_record, make_world, template
from openlfr.live.sink import AlertRecord
from openlfr.server import create_app
from openlfr.web.security import Tokens
from openlfr.web.testing import fake_enroller, free_port, jpeg, live_server, role_tokens
from openlfr.worker.client import AlertBuffer, RemoteAlertSink, WorkerClient, open_remote_run
from dbtesting import backend_url, fast_passwords  # noqa: F401


@pytest.fixture
def setup(tmp_path, fast_passwords):  # noqa: F811
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        d = w.active_deployment()
        app = create_app(url, w.clock, enroller=fake_enroller, stream_poll_s=0.05)
        token = Tokens(w.gov).create(w["operator"], "worker", "cam host", deployment_id=d)[0]
        yield w, d, app, token


def alert(subject: int, track: int = 1, camera: str = "cam-a", distance: float = 0.4) -> AlertRecord:
    return alert_record(subject, track, camera, distance, distances=(distance, 0.5), crop=jpeg(track), template=template(100 + track))


def test_worker_posts_alerts_idempotently(setup):
    w, d, app, token = setup
    c = TestClient(app)
    h = {"Authorization": f"Bearer {token}"}
    from test_api_roles import worker_alert

    body = worker_alert(w.subjects[0], key="k-0000001")
    r1 = c.post("/api/worker/alerts", json=body, headers=h)
    assert r1.status_code == 200 and r1.json()["duplicate"] is False
    r2 = c.post("/api/worker/alerts", json=body, headers=h)
    assert r2.json() == {"alert_id": r1.json()["alert_id"], "duplicate": True}
    alerts = w.gov.list_alerts(w["auditor"], d)
    assert len(alerts) == 1 and alerts[0]["updates"] == 0  # the re-delivery changed nothing
    # a better shot of the same track under a new key updates the same alert
    better = worker_alert(w.subjects[0], key="k-0000002", distance=0.3)
    assert c.post("/api/worker/alerts", json=better, headers=h).json()["alert_id"] == r1.json()["alert_id"]
    assert w.gov.list_alerts(w["auditor"], d)[0]["distance"] == pytest.approx(0.3)
    # faces seen, once per key
    for _ in range(2):
        assert c.post("/api/worker/faces-seen", json={"idempotency_key": "faces-0001", "camera": "cam-a", "count": 5}, headers=h).status_code == 200
    assert w.gov.faces_seen(w["auditor"], d) == {"cam-a": 5}
    # a camera the deployment does not have, a malformed crop
    r = c.post("/api/worker/alerts", json={**body, "idempotency_key": "k-0000003", "camera": "cam-z"}, headers=h)
    assert r.status_code == 409 and "cam-z" in r.json()["detail"]
    r = c.post("/api/worker/alerts", json={**body, "idempotency_key": "k-0000004", "crop": "!!!"}, headers=h)
    assert r.status_code == 422
    # the run: snapshot templates and subjects
    run = c.get("/api/worker/run", headers=h).json()
    assert run["deployment_id"] == d and len(run["subjects"]) == 2 and run["cameras"] == ["cam-a", "cam-b"]
    assert run["second_templates"] is None  # no template has the second model's (test_governance_second_templates)
    # after a stop, alerts are refused (and the worker token cannot be reused for another deployment)
    w.gov.stop_deployment(w["operator"], d)
    r = c.post("/api/worker/alerts", json={**body, "idempotency_key": "k-0000005"}, headers=h)
    assert r.status_code == 409 and r.json()["error"] == "not_active"
    assert c.get("/api/worker/status", headers=h).json()["active"] is False


def test_buffered_while_server_away_then_delivered_once(setup, tmp_path):
    """The server goes away: alerts go to the disk buffer; it comes back: delivered in order, no duplicates."""
    w, d, app, token = setup
    port = free_port()
    buf = tmp_path / "buffer"
    with live_server(app, port) as url:
        run = open_remote_run(url, token, d, buffer_dir=buf, timeout=30)
        assert run.threshold == pytest.approx(0.6) and run.watchlist_templates.shape == (2, 128)
        assert [s.id for s in run.subjects] == w.subjects
        sink: RemoteAlertSink = run.sink
        sink.retry_s = 0.1
        first = sink.record(alert(w.subjects[0], track=1))
        assert isinstance(first, int)
        sink.count_faces_seen("cam-a", 2)
        assert sink.maintain() is True
    # the server is down
    assert sink.record(alert(w.subjects[1], track=2)) is None
    assert sink.record(alert(w.subjects[0], track=3, camera="cam-b")) is None
    sink.count_faces_seen("cam-b", 4)
    path = buf / f"deployment-{d}.jsonl"
    lines = [x for x in path.read_text().splitlines() if "faces_seen" not in json.loads(x)]  # alerts (counts wait beside them)
    assert len(lines) == 2 and path.stat().st_mode & 0o777 == 0o600
    assert all(set(json.loads(x)) >= {"idempotency_key", "crop", "template", "camera"} for x in lines)
    assert sink.maintain() is True  # offline: runs on until its end time
    # a restarted worker finds the buffer on disk
    again = AlertBuffer(path)
    assert [i["idempotency_key"] for i in again.items if "faces_seen" not in i] == [json.loads(x)["idempotency_key"] for x in lines]
    # simulate a reply lost on the way: the first buffered alert already reached the server once
    c = TestClient(app)
    r = c.post("/api/worker/alerts", json=again.items[0], headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["duplicate"] is False
    with live_server(app, port):
        assert sink.close(flush_timeout_s=60) == 0
    assert not path.exists()
    alerts = w.gov.list_alerts(w["auditor"], d)
    assert len(alerts) == 3 and sorted(a["track"] for a in alerts) == ["1", "2", "3"]
    assert all(a["updates"] == 0 for a in alerts)
    assert w.gov.faces_seen(w["auditor"], d) == {"cam-a": 2, "cam-b": 4}
    assert sink.delivered == 2 and sink.refused == 0


def test_buffered_alerts_after_the_end_are_refused_not_retried(setup, tmp_path):
    w, d, app, token = setup
    port = free_port()
    sink = RemoteAlertSink(WorkerClient(f"http://127.0.0.1:{port}", token, timeout=30), d, tmp_path / "b", retry_s=0.05)
    assert sink.record(alert(w.subjects[0])) is None  # nothing listens yet
    w.gov.stop_deployment(w["operator"], d)
    with live_server(app, port):
        assert sink.close(flush_timeout_s=60) == 0
    assert sink.refused == 1 and sink.ended
    with pytest.raises(DeploymentNotActive):
        sink.record(alert(w.subjects[0], track=2))
    assert w.gov.list_alerts(w["auditor"], d) == []


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        if name and data:
            out.append((name.group(1), json.loads(data.group(1))))
    return out


def test_stream_carries_alerts_to_alert_readers_only(setup):
    w, d, app, token = setup
    c = TestClient(app)
    tokens = role_tokens(w)
    a1 = w.alert(d, w.subjects[0], track=1)
    w.gov.adjudicate(w["operator"], a1, "false_alert")
    seq = 0
    r = c.get(f"/api/stream?after={seq}&max_s=0.3", headers={"Authorization": f"Bearer {tokens['operator']}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = _events(r.text)
    kinds = [k for k, _ in ev]
    assert "alert" in kinds and "alert_update" in kinds and "deployment" in kinds
    first = next(data for k, data in ev if k == "alert")
    assert first["id"] == a1 and first["subject_name"] == "Person S1" and "probe_crop" not in first
    # Last-Event-ID resumes after what was seen
    last = int(re.findall(r"^id: (\d+)$", r.text, re.M)[-1])
    r = c.get("/api/stream?max_s=0.2", headers={"Authorization": f"Bearer {tokens['operator']}", "Last-Event-ID": str(last)})
    assert _events(r.text) == []
    # an authorising officer sees deployment changes, never alerts
    r = c.get("/api/stream?after=0&max_s=0.2", headers={"Authorization": f"Bearer {tokens['authorising_officer']}"})
    assert {k for k, _ in _events(r.text)} == {"deployment"}
    # a revoked token ends the stream (and cannot open one)
    Tokens(w.gov).revoke(Tokens(w.gov).resolve(tokens["auditor"], ("api",)), Tokens(w.gov).resolve(tokens["auditor"], ("api",)).token_id)
    assert c.get("/api/stream?max_s=0.2", headers={"Authorization": f"Bearer {tokens['auditor']}"}).status_code == 401


def test_stream_is_live_over_http(setup):
    """A real server: an alert posted by a worker is pushed to an open stream."""
    import threading
    import time

    import httpx

    w, d, app, token = setup
    tokens = role_tokens(w)
    got: list = []
    with live_server(app) as url:
        def listen():
            with httpx.stream("GET", f"{url}/api/stream?max_s=60", headers={"Authorization": f"Bearer {tokens['operator']}"}, timeout=90) as r:
                buf = ""
                for chunk in r.iter_text():
                    buf += chunk
                    if "event: alert" in buf:
                        got.append(time.monotonic())
                        return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        time.sleep(0.5)
        sent = time.monotonic()
        run = open_remote_run(url, token, d, buffer_dir=None, timeout=30)
        assert isinstance(run.sink.record(alert(w.subjects[0], track=7)), int)
        t.join(timeout=90)
    assert got and got[0] > sent  # pushed while the stream was open (how fast is the benchmark's business)


def test_worker_client_rejects_bad_server_url():
    with pytest.raises(ValueError):
        WorkerClient("ftp://x", "t")


def test_remote_run_needs_a_token(monkeypatch):
    from openlfr.governance.errors import GovernanceError

    monkeypatch.delenv("OPENLFR_WORKER_TOKEN", raising=False)
    with pytest.raises(GovernanceError, match="worker token"):
        open_remote_run("http://127.0.0.1:9", None, 1)


def test_templates_round_trip(setup):
    w, d, app, token = setup
    with live_server(app) as url:
        run = open_remote_run(url, token, d)
    local = w.gov.open_run(w["operator"], d)
    assert np.array_equal(run.watchlist_templates, local.watchlist_templates)
    assert list(run.template_subject_ids) == list(local.template_subject_ids)
    assert run.second_templates is None and local.second_templates is None


def test_faces_seen_survive_a_worker_exit_while_the_server_is_down(setup, tmp_path):
    """Issue 11, item 3: 13 faces seen while the server is away, the worker exits; the server comes
    back and a restarted worker drains its buffer: exactly 13 in the database, and a second
    delivery of the same buffer (a lost reply) counts nothing twice."""
    import shutil

    w, d, app, token = setup
    port = free_port()
    buf = tmp_path / "buffer"
    with live_server(app, port) as url:
        run = open_remote_run(url, token, d, buffer_dir=buf, timeout=30)
        run.sink.count_faces_seen("cam-a", 1)  # delivered at once
    sink: RemoteAlertSink = run.sink
    sink.retry_s = 0.05
    for i in range(12):  # the server is down: every count waits on disk, in order with the alerts
        sink.count_faces_seen("cam-a" if i % 3 else "cam-b", 1)
    assert sink.record(alert(w.subjects[0], track=5)) is None
    assert sink.close(flush_timeout_s=0.2) == 13  # the worker exits: 12 counts and an alert left on disk
    path = buf / f"deployment-{d}.jsonl"
    copy = tmp_path / "copy.jsonl"
    shutil.copy(path, copy)
    assert w.gov.faces_seen(w["auditor"], d) == {"cam-a": 1}
    with live_server(app, port) as url:
        again = RemoteAlertSink(WorkerClient(url, token, timeout=30), d, buf, retry_s=0.05)  # the restarted worker
        assert again.close(flush_timeout_s=60) == 0
        assert w.gov.faces_seen(w["auditor"], d) == {"cam-a": 9, "cam-b": 4}
        shutil.copy(copy, path)  # delivered again: every key is known to the server
        third = RemoteAlertSink(WorkerClient(url, token, timeout=30), d, buf, retry_s=0.05)
        assert third.close(flush_timeout_s=60) == 0
    assert w.gov.faces_seen(w["auditor"], d) == {"cam-a": 9, "cam-b": 4}
    assert sum(w.gov.faces_seen(w["auditor"], d).values()) == 13
    assert len(w.gov.list_alerts(w["auditor"], d)) == 1
    assert w.gov.verify_audit(w["auditor"]).ok  # the counts are covered by the chain



def test_worker_alert_becomes_the_same_record_on_the_server(setup):
    """The server builds the governance record from the request: a template as 128 floats or as
    base64 bytes stores the same vector; media time and time of day are kept apart."""
    w, d, app, token = setup
    c = TestClient(app)
    h = {"Authorization": f"Bearer {token}"}
    from test_api_roles import worker_alert

    b64 = worker_alert(w.subjects[0], key="k-rec-0001", track="1")
    floats = {**worker_alert(w.subjects[1], key="k-rec-0002", track="2"), "media_time": None,
              "occurred_at": "2030-01-01T12:00:00+01:00",
              "template": np.frombuffer(base64.b64decode(b64["template"]), "<f4").tolist()}
    ids = [c.post("/api/worker/alerts", json=body, headers=h).json()["alert_id"] for body in (b64, floats)]
    assert w.gov.alert_media(w["operator"], ids[0])[1] == w.gov.alert_media(w["operator"], ids[1])[1]
    rows = {a["id"]: a for a in w.gov.list_alerts(w["auditor"], d)}
    assert rows[ids[0]]["media_time"] == 3.5 and rows[ids[0]]["distances"] == [pytest.approx(0.41)]
    assert rows[ids[1]]["media_time"] is None and rows[ids[1]]["occurred_at"].startswith("2030-01-01T11:00:00")
    short = {**b64, "idempotency_key": "k-rec-0003", "template": b64["template"][:-4] + "AA=="}  # 511 bytes
    r = c.post("/api/worker/alerts", json=short, headers=h)
    assert r.status_code == 422 and "512 bytes" in r.json()["detail"]


def test_both_sinks_have_the_live_sink_interface():
    """The runner holds one sink: governance's (database) and the worker's (HTTP) take the same calls."""
    import inspect

    from openlfr.governance.live import DeploymentSink
    from openlfr.live.sink import AlertSink

    for name in ("record", "count_faces_seen", "maintain", "report_cameras", "close"):
        want = list(inspect.signature(getattr(AlertSink, name)).parameters)
        for sink in (DeploymentSink, RemoteAlertSink):
            assert list(inspect.signature(getattr(sink, name)).parameters)[: len(want)] == want, (sink, name)
