"""How each alert was decided, end to end: the live ``Alert``'s threshold, score, band Z threshold,
band and second model cross to the store in ``AlertRecord`` (directly, and over the camera
worker's wire), are kept by migration 0009's columns (NULL for an old worker's alert, and for
alerts stored before it), and are shown by the alert views, the console and the transparency
report."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from openlfr.governance import queries
from openlfr.governance.alert_queue import queue
from openlfr.governance.errors import GovernanceError
from openlfr.governance.roles import Actor
from openlfr.governance.testing import PASSWORD, alert_record, make_world
from openlfr.live.alerts import AlertDecision, AlertPolicy
from openlfr.live.sink import AlertRecord
from openlfr.server import create_app
from openlfr.store.db import current_revision, downgrade, head_revision, upgrade
from openlfr.transparency.report import collect, sections
from openlfr.web.security import Tokens
from openlfr.web.testing import fake_enroller, jpeg
from openlfr.worker.client import alert_payload
from dbtesting import backend_url, db_url, fast_passwords  # noqa: F401  (fixtures)

FUSED = dict(threshold=0.93, score=-3.1, score_threshold=-2.4, band="B", second_model="sface")
DECIDED = ("threshold", "score", "score_threshold", "band", "second_model")
COLUMNS = set(DECIDED)
LIVE = Actor.system("live")


def _decided(a: dict) -> tuple:
    return tuple(a[k] for k in DECIDED)


def test_record_from_a_live_alert_keeps_how_it_was_decided():
    p = AlertPolicy(0.5)
    chip = np.full((40, 40, 3), 120, np.uint8)
    (ev,) = p.consider("cam-a", 1, [(7, 0.52, 0.93, AlertDecision(-3.1, -2.4, "B", "sface"))], 3, 0.1, 0.0,
                       chip=chip, template=np.ones(128))
    ev.alert.subject = "7"
    r = AlertRecord.from_alert(ev.alert)
    assert (r.distance, r.threshold, r.score, r.score_threshold, r.band, r.second_model) == (0.52, 0.93, -3.1, -2.4, "B", "sface")
    (ev,) = p.consider("cam-a", 2, [(8, 0.3)], 4, 0.2, 0.0, chip=chip, template=np.ones(128))  # a fixed threshold
    ev.alert.subject = "8"
    r = AlertRecord.from_alert(ev.alert)
    assert r.threshold == 0.5 and r.score is r.score_threshold is r.band is r.second_model is None


def test_governed_alert_keeps_its_decision_and_an_old_one_has_none(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url)
    d = w.active_deployment()
    s1, s2 = w.subjects
    run = w.gov.open_run(w["operator"], d)
    fused = run.sink.record(alert_record(s1, 1, **FUSED))
    old = run.sink.record(alert_record(s2, 2))  # an older camera worker: no decision
    listed = {a["id"]: a for a in w.gov.list_alerts(w["auditor"], d)}
    assert _decided(listed[fused]) == (0.93, -3.1, -2.4, "B", "sface")
    assert listed[fused]["decided"] == "distance 0.400 (threshold 0.930 for this face); fused with SFace: score -3.10 against -2.40 (band B)"
    assert _decided(listed[old]) == (None,) * 5 and listed[old]["decided"] == "distance 0.400 (threshold not recorded)"
    detail = queries.alert_detail(w.gov, w["auditor"], fused)
    assert _decided(detail) == (0.93, -3.1, -2.4, "B", "sface") and detail["deployment_threshold"] == pytest.approx(0.6)
    q = {a["id"]: a for a in queue(w.gov, w["auditor"], deployment=d).alerts}
    assert _decided(q[fused]) == _decided(listed[fused]) and q[old]["threshold"] is None
    # a better shot brings its own decision (dlib's score alone, another band); a worse one changes nothing
    run.sink.record(alert_record(s1, 1, distance=0.35, threshold=0.6, score=-2.9, score_threshold=-2.7, band="C"))
    a = queries.alert_detail(w.gov, w["auditor"], fused)
    assert a["distance"] == pytest.approx(0.35) and _decided(a) == (0.6, -2.9, -2.7, "C", None) and a["updates"] == 1
    assert a["decided"].endswith("; dlib's score -2.90 against -2.70 (band C)")
    run.sink.record(alert_record(s1, 1, distance=0.38, **FUSED))
    a = queries.alert_detail(w.gov, w["auditor"], fused)
    assert a["distance"] == pytest.approx(0.35) and a["threshold"] == pytest.approx(0.6) and a["updates"] == 2
    # the report counts, from the alerts' audit entries, how many were decided with the fused score

    r = collect(w.gov, w["auditor"], d)
    assert r.data["alerts"]["decided_with"] == {"fused": 1, "second_models": ["sface"], "dlib_score": 0, "not_recorded": 1, "of": 2}
    lines = dict(sections(r))["Alerts and outcomes"]
    assert any(ln.startswith("Decided with the fused score (dlib's and SFace's") and ": 1 of 2 alerts" in ln for ln in lines), lines
    # bad values are refused before anything is stored
    for bad in ({"threshold": float("nan")}, {"score": "high"}, {"band": "B" * 9}, {"second_model": "sface v2!"}):
        with pytest.raises(GovernanceError):
            run.sink.record(alert_record(s2, 3, **bad))
    assert len(w.gov.list_alerts(w["auditor"], d)) == 2


def test_worker_wire_carries_the_decision_and_old_workers_are_accepted(tmp_path, fast_passwords):  # noqa: F811
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        d = w.active_deployment()
        app = create_app(url, w.clock, enroller=fake_enroller)
        token = Tokens(w.gov).create(w["operator"], "worker", "cam host", deployment_id=d)[0]
        c = TestClient(app)
        h = {"Authorization": f"Bearer {token}"}
        new = alert_payload(alert_record(w.subjects[0], 1, crop=jpeg(1), **FUSED))
        assert {k: new[k] for k in DECIDED} == FUSED
        old = alert_payload(alert_record(w.subjects[1], 2, crop=jpeg(2)))
        assert not set(DECIDED) & set(old)  # nothing said: left out (what an older server accepts)
        ids = {}
        for name, body in (("new", new), ("old", old)):
            r = c.post("/api/worker/alerts", json=body, headers=h)
            assert r.status_code == 200, r.text
            ids[name] = r.json()["alert_id"]
        listed = {a["id"]: a for a in w.gov.list_alerts(w["auditor"], d)}
        assert _decided(listed[ids["new"]]) == (0.93, -3.1, -2.4, "B", "sface")
        assert _decided(listed[ids["old"]]) == (None,) * 5
        for bad in ({"band": "B" * 9}, {"threshold": -1}, {"second_model": ""}, {"score": "x"}):
            r = c.post("/api/worker/alerts", json={**old, "idempotency_key": f"k-bad-{len(str(bad))}-{list(bad)[0]}", **bad}, headers=h)
            assert r.status_code == 422, (bad, r.text)


def _login(c: TestClient, user: str) -> None:
    page = c.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text


def test_console_and_api_show_the_threshold_for_this_face(tmp_path, fast_passwords):  # noqa: F811
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        d = w.active_deployment()
        fused = w.gov.record_alert(LIVE, d, alert_record(w.subjects[0], 1, distance=0.52, **FUSED))
        old = w.alert(d, w.subjects[1], track=2)
        c = TestClient(create_app(url, w.clock, enroller=fake_enroller))
        _login(c, "operator")
        page = c.get(f"/console/alerts/{fused}")
        assert page.status_code == 200
        dist = re.search(r'<dd id="distance">(.*?)</dd>', page.text).group(1)
        assert dist == "0.520 (threshold 0.930 for this face; lower is closer)"
        how = re.search(r'<dd id="decided">(.*?)</dd>', page.text).group(1)
        assert how == "fused with SFace: score -3.10 against -2.40 (band B); lower is closer"
        page = c.get(f"/console/alerts/{old}")
        dist = re.search(r'<dd id="distance">(.*?)</dd>', page.text).group(1)
        assert "threshold for this face not recorded" in dist and "the deployment's: 0.600" in dist
        assert 'id="decided"' not in page.text
        q = c.get("/console/alerts")
        assert "0.520 &lt; 0.930" in q.text
        a = c.get(f"/api/alerts/{fused}").json()
        assert _decided(a) == (0.93, -3.1, -2.4, "B", "sface") and "fused with SFace" in a["decided"]
        assert c.get("/api/alerts", params={"deployment_id": d}).json()[0]["threshold"] is None  # newest first: the old one


def _alert_columns(engine) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns("alerts")}


def test_migration_0009_adds_the_columns_and_keeps_the_alerts(db_url, fast_passwords):  # noqa: F811
    """0008 -> 0009 on a database with alerts: nullable columns added, every alert kept as it was
    (how it was decided: not recorded); down again: the columns go, the alerts stay."""
    w = make_world(db_url)
    d = w.active_deployment()
    w.gov.record_alert(LIVE, d, alert_record(w.subjects[0], 1, **FUSED))
    w.alert(d, w.subjects[1], track=2)
    engine = w.gov.db.engine
    sql = "SELECT id, camera, track, subject_id, distance, distances, probe_crop, template FROM alerts ORDER BY id"

    def rows():
        with engine.connect() as conn:
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in conn.execute(text(sql))]

    before = rows()
    assert len(before) == 2 and COLUMNS <= _alert_columns(engine)
    downgrade(engine, "0008")
    assert current_revision(engine) == "0008"
    assert not COLUMNS & _alert_columns(engine)
    assert rows() == before
    upgrade(engine, "0009")
    assert current_revision(engine) == "0009" == head_revision()
    assert COLUMNS <= _alert_columns(engine)
    assert rows() == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alerts WHERE threshold IS NOT NULL OR score IS NOT NULL "
                                 "OR score_threshold IS NOT NULL OR band IS NOT NULL OR second_model IS NOT NULL")).scalar_one() == 0
    alerts = w.gov.list_alerts(w["auditor"], d)
    assert len(alerts) == 2 and all(a["threshold"] is None and a["decided"].endswith("(threshold not recorded)") for a in alerts)
    # and a new alert after the upgrade keeps its decision
    new = w.gov.record_alert(LIVE, d, alert_record(w.subjects[0], 3, **FUSED))
    assert queries.alert_detail(w.gov, w["auditor"], new)["second_model"] == "sface"
