"""`openlfr run --server URL --deployment ID`: a camera worker in its own process posts its
alerts and faces seen to `openlfr serve` with a worker token (end to end on the demo video)."""

from __future__ import annotations

import re

from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.engine.images import load_image
from openlfr.engine.pipeline import FaceEngine
from openlfr.governance.clock import TestClock
from openlfr.governance.service import NewImage
from openlfr.governance.testing import make_world
from openlfr.live.demo import SUBJECT_ID, build_demo
from openlfr.server import create_app
from openlfr.web.security import Tokens
from openlfr.web.testing import live_server


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def test_run_posts_to_the_server(tmp_path, scenario, monkeypatch):
    db = f"sqlite:///{tmp_path / 'openlfr.db'}"
    clock = TestClock(datetime.now(timezone.utc).replace(microsecond=0))
    w = make_world(db, clock, subjects=1)
    ref = scenario.watchlist / f"{SUBJECT_ID}.jpg"
    face = FaceEngine().analyze(load_image(ref))[0]
    collins = w.gov.enrol_subject(w["watchlist_manager"], w.watchlist, SUBJECT_ID, "Eileen Collins", "wanted_by_courts", "warrant",
                                  clock.now() + timedelta(days=30),
                                  [NewImage(data=ref.read_bytes(), template=face.descriptor, quality=face.quality.score)])
    dep = w.active_deployment(start_in=timedelta(minutes=1), cameras=["walkway"], threshold=0.5)
    token = Tokens(w.gov).create(w["operator"], "worker", "walkway host", deployment_id=dep)[0]
    monkeypatch.setenv("OPENLFR_DATA_DIR", str(tmp_path / "worker-data"))
    monkeypatch.setenv("OPENLFR_WORKER_TOKEN", token)
    with live_server(create_app(db, clock)) as url:
        res = CliRunner().invoke(app, ["run", "--server", url, "--deployment", str(dep), "--source", str(scenario.video), "--json"])
        assert res.exit_code == 0, res.output
    assert '"event": "alert"' in res.stdout
    alerts = w.gov.list_alerts(w["auditor"], dep)
    assert [a["subject_id"] for a in alerts] == [collins.id] and alerts[0]["camera"] == "walkway"
    assert w.gov.faces_seen(w["auditor"], dep)["walkway"] >= 2
    assert not (tmp_path / "worker-data" / "worker-buffer" / f"deployment-{dep}.jsonl").exists()
    # the worker's actor is in the audit log; no worker token without --deployment
    # (the entries name the token and the operator it acts for)
    operator = w["operator"].name
    assert any(re.fullmatch(rf"system:worker:\d+:{re.escape(operator)}", e["actor"]) for e in _audit(w))
    res = CliRunner().invoke(app, ["run", "--server", "http://127.0.0.1:9", "--source", str(scenario.video)])
    assert res.exit_code == 2


def _audit(w):
    from openlfr.governance.queries import audit_page

    return audit_page(w.gov, w["auditor"], limit=500)["entries"]
