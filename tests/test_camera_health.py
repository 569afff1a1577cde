"""Camera health (governance/cameras.py) on SQLite and PostgreSQL: states as reported, a worker that
goes silent shown down, the "down too long" warning raised and cleared once each (audited),
cameras ended with their deployment; a local ``run --deployment`` reports its cameras; the worker
endpoint accepts only its deployment's cameras."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from openlfr.governance import cameras as health
from openlfr.governance.errors import GovernanceError, PermissionDenied
from openlfr.governance.testing import make_world
from openlfr.server import create_app
from openlfr.web.security import Tokens
from openlfr.web.testing import fake_enroller
from dbtesting import db_url, fast_passwords  # noqa: F401


def camera_events(w, d) -> list[tuple[str, str]]:
    return [(e["action"], e["details"]["camera"]) for e in w.gov.deployment_history(w["auditor"], d)["events"]
            if e["action"].startswith("camera.")]


def test_states_warning_and_audit(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url)
    d = w.active_deployment()
    op = w["operator"]
    assert [c["state"] for c in health.cameras(w.gov, w["auditor"], d)] == ["waiting", "waiting"]
    with pytest.raises(PermissionDenied):
        health.report(w.gov, w["auditor"], d, "host", [{"camera": "cam-a", "state": "up"}])
    with pytest.raises(GovernanceError, match="not one of"):
        health.report(w.gov, op, d, "host", [{"camera": "cam-z", "state": "up"}])
    with pytest.raises(GovernanceError, match="state"):
        health.report(w.gov, op, d, "host", [{"camera": "cam-a", "state": "sleeping"}])

    v = health.report(w.gov, op, d, "host-1", [{"camera": "cam-a", "state": "up", "fps": 24.5, "frames": 500, "dropped": 4,
                                                "faces_seen": 7, "last_frame_at": w.clock.now().isoformat()}])
    a = v[0]
    assert (a["state"], a["fps"], a["frames"], a["dropped"], a["faces_seen"], a["worker"]) == ("up", 24.5, 500, 4, 7, "host-1")
    assert a["last_frame_at"] is not None and not a["warning"]

    # the stream dies: down, then reconnecting; no warning before the delay, one audit entry after it
    w.clock.advance(seconds=2)
    health.report(w.gov, op, d, "host-1", [{"camera": "cam-a", "state": "down", "message": "no frame"}])
    w.clock.advance(seconds=10)
    a = health.report(w.gov, op, d, "host-1", [{"camera": "cam-a", "state": "reconnecting"}])[0]
    assert a["state"] == "reconnecting" and a["down_for_s"] == 10 and not a["warning"]
    assert camera_events(w, d) == []
    w.clock.advance(seconds=25)
    a = health.report(w.gov, op, d, "host-1", [{"camera": "cam-a", "state": "reconnecting"}])[0]
    assert a["warning"] and a["down_for_s"] == 35
    health.cameras(w.gov, w["auditor"], d)  # seen again: no second entry
    assert camera_events(w, d) == [("camera.down", "cam-a")]
    # it comes back: the warning ends, audited once, with how long it was down
    w.clock.advance(seconds=5)
    a = health.report(w.gov, op, d, "host-1", [{"camera": "cam-a", "state": "up", "frames": 900}])[0]
    assert a["state"] == "up" and not a["warning"] and a["down_since"] is None
    restored = [e for e in w.gov.deployment_history(w["auditor"], d)["events"] if e["action"] == "camera.restored"]
    assert len(restored) == 1 and restored[0]["details"]["down_for_s"] == 40

    # a worker that goes silent: down (its last report is too old), and warned after the delay
    w.clock.advance(seconds=health.STALE_S + 1)
    a = health.cameras(w.gov, w["auditor"], d)[0]
    assert a["state"] == "down" and "no report" in a["message"] and not a["warning"]
    w.clock.advance(seconds=health.DOWN_WARNING_S)
    assert health.sweep(w.gov)[0]["warning"]
    assert camera_events(w, d)[-1] == ("camera.down", "cam-a")
    # the deployment ends: every camera ended, the open warning closed
    w.gov.stop_deployment(op, d, "done")
    health.sweep(w.gov)
    assert {c["state"] for c in health.cameras(w.gov, w["auditor"], d)} == {"ended"}
    assert camera_events(w, d)[-1] == ("camera.restored", "cam-a")
    assert w.gov.verify_audit(w["auditor"]).ok


def test_warning_delay_is_the_administrators(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url)
    with pytest.raises(PermissionDenied):
        health.set_warning_after_s(w.gov, w["operator"], 5)
    with pytest.raises(GovernanceError):
        health.set_warning_after_s(w.gov, w["administrator"], 0)
    health.set_warning_after_s(w.gov, w["administrator"], 5)
    assert health.warning_after_s(w.gov) == 5


def test_local_deployment_run_reports_its_cameras(tmp_path, fast_passwords):  # noqa: F811
    from test_live_sources import write_video

    from openlfr.governance.live import open_deployment_run
    from openlfr.live.config import RunConfig
    from openlfr.live.runner import LiveRunner

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    w = make_world(url)
    d = w.active_deployment(cameras=("cam-a",))
    run = open_deployment_run(url, d, actor=w["operator"], clock=w.clock)
    video = write_video(tmp_path / "clip.mp4", n=30)
    cfg = RunConfig(sources=[f"cam-a={video}"], watchlist=None)
    runner = LiveRunner(cfg, watchlist=run.watchlist(), threshold=run.threshold, sink=run.sink)
    runner.prepare()
    summary = runner.run()
    assert summary["frames"] == 30
    cam = health.cameras(w.gov, w["auditor"], d)[0]
    assert cam["state"] == "ended" and cam["frames"] == 30 and "local run as operator" in cam["worker"]
    assert cam["last_frame_at"] is not None


def test_worker_endpoint(tmp_path, fast_passwords):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    w = make_world(url)
    d = w.active_deployment()
    other = w.plan(start_in=timedelta(0), name="other", cameras=("cam-x",))
    token = Tokens(w.gov).create(w["operator"], "worker", "box 1", deployment_id=d)[0]
    with TestClient(create_app(url, w.clock, enroller=fake_enroller)) as c:
        h = {"Authorization": f"Bearer {token}"}
        r = c.post("/api/worker/cameras", headers=h, json={"host": "box-1", "cameras": [
            {"camera": "cam-a", "state": "up", "fps": 12, "frames": 40, "dropped": 1, "faces_seen": 2,
             "last_frame_at": w.clock.now().isoformat()}]})
        assert r.status_code == 200 and r.json()[0]["worker"].startswith("box-1 (worker token ")
        assert c.post("/api/worker/cameras", headers=h, json={"cameras": [{"camera": "cam-x", "state": "up"}]}).status_code == 409
        assert c.post("/api/worker/cameras", headers=h, json={"cameras": [{"camera": "cam-a", "state": "odd"}]}).status_code == 422
        assert c.post("/api/worker/cameras", headers=h, json={"cameras": [{"camera": "cam-a", "state": "up", "fps": -1}]}).status_code == 422
        assert other  # a worker's token reports only its own deployment (the id comes from the token)
