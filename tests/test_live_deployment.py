"""`openlfr run --deployment`: alerts stored before anyone hears of them, faces seen counted,
the deployment's snapshot and threshold used; ad-hoc runs store nothing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.engine.images import load_image
from openlfr.engine.pipeline import FaceEngine
from openlfr.governance.clock import TestClock
from openlfr.governance.live import open_deployment_run
from openlfr.governance.service import NewImage
from openlfr.governance.testing import PASSWORD, make_world
from openlfr.live.config import RunConfig
from openlfr.live.demo import SUBJECT_ID, build_demo
from openlfr.live.runner import LiveRunner
from openlfr.live.sink import split_source_name


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def _world_with_collins(db_url, scenario, start_in=timedelta(minutes=1)):
    clock = TestClock(datetime.now(timezone.utc).replace(microsecond=0))
    world = make_world(db_url, clock, subjects=1)
    ref = scenario.watchlist / f"{SUBJECT_ID}.jpg"
    face = FaceEngine().analyze(load_image(ref))[0]
    collins = world.gov.enrol_subject(
        world["watchlist_manager"], world.watchlist, SUBJECT_ID, "Eileen Collins", "wanted_by_courts", "warrant issued",
        clock.now() + timedelta(days=30),
        [NewImage(data=ref.read_bytes(), template=face.descriptor, quality=face.quality.score, source="demo reference")],
    )
    dep = world.active_deployment(start_in=start_in, cameras=["walkway"], threshold=0.5)
    return world, dep, collins.id


def test_alerts_are_stored_before_they_are_announced(tmp_path, scenario):
    db = f"sqlite:///{tmp_path / 'openlfr.db'}"
    world, dep, collins = _world_with_collins(db, scenario)
    run = open_deployment_run(db, dep, actor=world["operator"], clock=world.clock)
    assert run.threshold == 0.5 and run.cameras == ["walkway"]
    seen_in_store = []

    def on_event(ev):
        if ev.get("event") == "alert":  # at announcement time the alert must already be in the store
            stored = world.gov.list_alerts(world["auditor"], dep)
            seen_in_store.append([a for a in stored if str(a["track"]) == str(ev["track"]) and a["camera"] == ev["camera"]])

    cfg = RunConfig(sources=[f"walkway={scenario.video}"])
    runner = LiveRunner(cfg, on_event=on_event, watchlist=run.watchlist(), threshold=run.threshold, sink=run.sink)
    runner.prepare()
    summary = runner.run()
    assert summary["alerts"] == 1 and summary["threshold"] == 0.5
    assert len(seen_in_store) == 1 and len(seen_in_store[0]) == 1
    alerts = world.gov.list_alerts(world["auditor"], dep)
    assert [a["subject_id"] for a in alerts] == [collins]
    # decided against the deployment's fixed threshold: that is kept, and no score (no scoring model)
    assert alerts[0]["threshold"] == pytest.approx(0.5) and alerts[0]["score"] is None and alerts[0]["second_model"] is None
    crop, template = world.gov.alert_media(world["operator"], alerts[0]["id"])
    assert crop[:2] == b"\xff\xd8" and len(template) == 128 * 4
    assert world.gov.faces_seen(world["auditor"], dep) == {"walkway": summary["faces_seen"]}
    assert summary["faces_seen"] >= 2  # Collins and Hopper both passed


def test_cli_refuses_inactive_deployment_and_unknown_camera(tmp_path, scenario):
    db = f"sqlite:///{tmp_path / 'openlfr.db'}"
    world = make_world(db, TestClock(datetime.now(timezone.utc)), subjects=1)
    planned = world.plan(cameras=["walkway"])  # planned, not authorised
    runner = CliRunner()
    res = runner.invoke(app, ["run", "--deployment", str(planned), "--db", db, "--source", str(scenario.video), "--json",
                              "--as", "operator"], env={"OPENLFR_ACTOR_PASSWORD": PASSWORD})
    assert res.exit_code == 2
    assert "not" in res.stderr and "active" in res.stderr or "authoris" in res.stderr
    assert world.gov.list_alerts(world["auditor"], planned) == []
    res = runner.invoke(app, ["run", "--source", str(scenario.video), "--json"])
    assert res.exit_code == 2 and "--watchlist" in res.stderr


def test_ad_hoc_run_stores_nothing(tmp_path, scenario, monkeypatch):
    monkeypatch.setenv("OPENLFR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OPENLFR_DB", raising=False)
    res = CliRunner().invoke(app, ["run", "--source", str(scenario.video), "--watchlist", str(scenario.watchlist), "--json"])
    assert res.exit_code == 0, res.output
    assert '"event": "alert"' in res.stdout
    assert not (tmp_path / "data").exists()  # no database, no file


def test_source_names():
    assert split_source_name("cam-a=rtsp://host/s?x=1") == ("cam-a", "rtsp://host/s?x=1")
    assert split_source_name("rtsp://host/s?x=1") == (None, "rtsp://host/s?x=1")
    assert split_source_name("0") == (None, "0")
    assert split_source_name("/videos/a.mp4") == (None, "/videos/a.mp4")


def test_cli_run_acts_as_its_operator_and_names_the_stored_alert(tmp_path, scenario):
    """Issue 11, item 2: a camera run is never anonymous; its JSON names the database's alert id."""
    import json

    from openlfr.governance import audit

    db = f"sqlite:///{tmp_path / 'openlfr.db'}"
    world, dep, collins = _world_with_collins(db, scenario, start_in=timedelta(0))  # the real time is inside the window
    args = ["run", "--deployment", str(dep), "--db", db, "--source", str(scenario.video), "--json"]
    runner = CliRunner()
    res = runner.invoke(app, args, env={"OPENLFR_USER": None})
    assert res.exit_code == 2 and "--as" in res.stderr
    res = runner.invoke(app, args + ["--as", "auditor"], env={"OPENLFR_ACTOR_PASSWORD": PASSWORD})
    assert res.exit_code == 4  # not an operator
    res = runner.invoke(app, args + ["--as", "operator"], env={"OPENLFR_ACTOR_PASSWORD": PASSWORD})
    assert res.exit_code == 0, res.output
    events = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    alerts = [e for e in events if e["event"] == "alert"]
    stored = world.gov.list_alerts(world["auditor"], dep)
    assert len(alerts) == 1 and alerts[0]["alert_id"] == stored[0]["id"] and stored[0]["subject_id"] == collins
    with world.gov.db.transaction() as s:
        log = [audit.record_of(e) for e in s.execute(__import__("sqlalchemy").select(audit.AuditEvent)).scalars()]
    run_entries = [e for e in log if e["action"] in ("deployment.run", "alert.create", "faces_seen.count")]
    assert {e["actor"] for e in run_entries} == {"operator"} and len(run_entries) >= 3
    assert not any(e["actor"] == "system:live" for e in log)
