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
from openlfr.live.sink import DeploymentSink, split_source_name


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def _world_with_collins(db_url, scenario):
    clock = TestClock(datetime.now(timezone.utc).replace(microsecond=0))
    world = make_world(db_url, clock, subjects=1)
    ref = scenario.watchlist / f"{SUBJECT_ID}.jpg"
    face = FaceEngine().analyze(load_image(ref))[0]
    collins = world.gov.enrol_subject(
        world["watchlist_manager"], world.watchlist, SUBJECT_ID, "Eileen Collins", "wanted_by_courts", "warrant issued",
        clock.now() + timedelta(days=30),
        [NewImage(data=ref.read_bytes(), template=face.descriptor, quality=face.quality.score, source="demo reference")],
    )
    dep = world.active_deployment(start_in=timedelta(minutes=1), cameras=["walkway"], threshold=0.5)
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
    runner = LiveRunner(cfg, on_event=on_event, watchlist=run.watchlist(), threshold=run.threshold, sink=DeploymentSink(run))
    runner.prepare()
    summary = runner.run()
    assert summary["alerts"] == 1 and summary["threshold"] == 0.5
    assert len(seen_in_store) == 1 and len(seen_in_store[0]) == 1
    alerts = world.gov.list_alerts(world["auditor"], dep)
    assert [a["subject_id"] for a in alerts] == [collins]
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
