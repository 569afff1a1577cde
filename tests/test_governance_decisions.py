"""Issue 11, items 1, 4 and 12: decisions are append-only, a sighting never changes a decided alert,
ids are never reused and erased bytes do not linger, and `purge` reports what the automatic purge did.

On SQLite and PostgreSQL (``db_url``), through the services, the CLI and the API.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.governance import GovernanceError, NewImage, PermissionDenied, TestClock
from openlfr.live.sink import AlertRecord
from openlfr.governance.testing import FAKE_JPEG, PASSWORD, make_world, template
from openlfr.server import create_app
from openlfr.web.security import Tokens
from openlfr.web.testing import fake_enroller, role_tokens
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)


@pytest.fixture
def world(db_url, fast_passwords):  # noqa: F811
    return make_world(db_url, clock=TestClock(datetime.now(timezone.utc)), subjects=2)


def cli(world, *args, who: str | None = None, code: int = 0):
    env = {"OPENLFR_DB": world.gov.db.url, "OPENLFR_USER": None, "OPENLFR_PASSWORD": None, "OPENLFR_ACTOR_PASSWORD": None}
    if who:
        env |= {"OPENLFR_USER": who, "OPENLFR_ACTOR_PASSWORD": PASSWORD}
    r = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert r.exit_code == code, f"{args}: exit {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
    return r


# -- 1. append-only decisions -----------------------------------------------------------------------


def test_a_decision_acted_on_is_changed_only_by_a_supervisor_with_a_reason(world):
    w, g = world, world.gov
    d = w.active_deployment(start_in=timedelta(0))
    a = w.alert(d, w.subjects[0])
    g.adjudicate(w["operator"], a, "true")
    g.record_outcome(w["engagement_officer"], a, "confirmed", "arrest")
    # the repro: an operator flips it after the arrest, with no reason
    with pytest.raises(GovernanceError, match="needs a reason"):
        g.adjudicate(w["operator"], a, "false")
    with pytest.raises(GovernanceError, match="only a supervisor"):
        g.adjudicate(w["operator"], a, "false", reason="looked again")
    with pytest.raises(GovernanceError, match="needs a reason"):
        g.adjudicate(w["supervisor"], a, "false")
    with pytest.raises(PermissionDenied):
        g.adjudicate(w["engagement_officer"], a, "false", reason="x")
    g.adjudicate(w["supervisor"], a, "false", reason="the custody image is of his brother")
    hist = g.adjudications(w["auditor"], a)
    assert [(h["decision"], h["by"], h["reason"]) for h in hist] == [
        ("true_alert", "operator", ""), ("false_alert", "supervisor", "the custody image is of his brother")]
    assert hist[0]["at"] <= hist[1]["at"] and hist[0]["id"] < hist[1]["id"]
    dep = g.get_deployment(w["auditor"], d)
    assert dep["alerts"]["false_alerts"] == 1 and dep["alerts"]["true_alerts"] == 0
    assert g.verify_audit(w["auditor"]).ok


def test_an_operator_corrects_a_decision_only_while_it_runs_and_before_an_outcome(world):
    w, g = world, world.gov
    d = w.active_deployment(start_in=timedelta(0))
    a1, a2 = w.alert(d, w.subjects[0], track=1), w.alert(d, w.subjects[1], track=2)
    g.adjudicate(w["operator"], a1, "true")
    assert g.adjudicate(w["operator"], a1, "true").decision == "true_alert"  # the same again: nothing new
    g.adjudicate(w["operator"], a1, "false", reason="pressed the wrong key")
    assert len(g.adjudications(w["auditor"], a1)) == 2
    with pytest.raises(PermissionDenied):  # supervisors revise; the first decision is an operator's
        g.adjudicate(w["supervisor"], a2, "true")
    g.adjudicate(w["operator"], a2, "true")
    g.stop_deployment(w["operator"], d)
    with pytest.raises(GovernanceError, match="has ended"):
        g.adjudicate(w["operator"], a2, "false", reason="second look")
    g.adjudicate(w["supervisor"], a2, "false", reason="second look")
    assert g.verify_audit(w["auditor"]).ok


def test_cli_and_api_follow_the_same_rule(world):
    w, g = world, world.gov
    d = w.active_deployment(start_in=timedelta(0))
    a = w.alert(d, w.subjects[0])
    cli(w, "alert", "adjudicate", a, "true", who="operator")
    cli(w, "alert", "outcome", a, "--result", "confirmed", "--outcome", "arrest", who="engagement_officer")
    r = cli(w, "alert", "adjudicate", a, "false", who="operator", code=2)
    assert "needs a reason" in r.stderr
    r = cli(w, "alert", "adjudicate", a, "false", "--reason", "x", who="operator", code=2)
    assert "only a supervisor" in r.stderr
    # the API (and the console, which calls the same service) refuses too
    client = TestClient(create_app(w.gov.db.url, w.clock, enroller=fake_enroller))
    tokens = role_tokens(w)
    op = {"Authorization": f"Bearer {tokens['operator']}"}
    r = client.post(f"/api/alerts/{a}/adjudication", json={"decision": "false_alert"}, headers=op)
    assert r.status_code == 409 and "reason" in r.json()["detail"]
    r = client.post(f"/api/alerts/{a}/adjudication", json={"decision": "false_alert", "reason": "x"}, headers=op)
    assert r.status_code == 409 and "supervisor" in r.json()["detail"]
    sup = {"Authorization": f"Bearer {tokens['supervisor']}"}
    r = client.post(f"/api/alerts/{a}/adjudication", json={"decision": "false_alert", "reason": "brother"}, headers=sup)
    assert r.status_code == 200 and r.json()["adjudication"] == "false_alert"
    assert [j["reason"] for j in r.json()["adjudications"]] == ["", "brother"]
    r = cli(w, "alert", "adjudicate", a, "true", "--reason", "the brother was ruled out", who="supervisor")
    assert "changed from false alert to true alert" in r.stdout
    assert [h["decision"] for h in g.adjudications(w["auditor"], a)] == ["true_alert", "false_alert", "true_alert"]
    client.close()


def test_a_sighting_never_changes_a_decided_alert(world):
    w, g = world, world.gov
    d = w.active_deployment(start_in=timedelta(0))
    a = w.alert(d, w.subjects[0], track=7, distance=0.5)
    crop_before, tmpl_before = g.alert_media(w["operator"], a)
    g.adjudicate(w["operator"], a, "true")
    # a re-run of the deployment: the same camera, track and subject, a better distance
    b = g.record_alert(w["operator"], d, AlertRecord(camera="cam-a", track=7, subject_id=w.subjects[0], distance=0.2,
                                                     crop=FAKE_JPEG + b"new", template=template(99)))
    assert b != a
    assert g.alert_media(w["operator"], a) == (crop_before, tmpl_before)
    alerts = {x["id"]: x for x in g.list_alerts(w["auditor"], d)}
    assert alerts[a]["distance"] == pytest.approx(0.5) and alerts[a]["adjudication"] == "true_alert"
    assert alerts[b]["distance"] == pytest.approx(0.2) and alerts[b]["adjudication"] is None
    # an explicit update of the decided alert goes to the new one too
    c = g.record_alert(w["operator"], d, AlertRecord(camera="cam-a", track=7, subject_id=w.subjects[0], distance=0.1,
                                                     crop=FAKE_JPEG, template=template(98), alert_id=a))
    assert c == b and g.list_alerts(w["auditor"], d)[0]["distance"] == pytest.approx(0.1)
    # a worker reusing camera + track + subject_id
    token = Tokens(g).create(w["operator"], "worker", "cam host", deployment_id=d)[0]
    g.adjudicate(w["operator"], b, "false")
    from test_api_roles import worker_alert

    client = TestClient(create_app(w.gov.db.url, w.clock, enroller=fake_enroller))
    r = client.post("/api/worker/alerts", json=worker_alert(w.subjects[0], key="reuse-0001", track="7", distance=0.05),
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["alert_id"] not in (a, b)
    assert g.list_alerts(w["auditor"], d)[1]["distance"] == pytest.approx(0.1)  # b unchanged
    client.close()
    assert g.verify_audit(w["auditor"]).ok


# -- 4. ids never reused; erased bytes do not linger ---------------------------------------------


def test_ids_are_never_reused_after_erasure(world):
    w, g = world, world.gov
    last = w.subjects[-1]
    g.erase_subject(w["watchlist_manager"], last)
    again = w.enrol("S-new", seed=77)
    assert again > last  # subject:N in the audit log names one person only
    d = w.active_deployment(start_in=timedelta(0))
    a = w.alert(d, again)
    g.erase_subject(w["watchlist_manager"], again)
    b = w.alert(d, w.subjects[0])
    assert b > a


MARKER = b"ERASE-ME-4f1c9a"


def test_erased_bytes_do_not_linger_in_the_sqlite_file(tmp_path, fast_passwords):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'e.db'}"
    w = make_world(url, subjects=1)
    s = w.gov.enrol_subject(w["watchlist_manager"], w.watchlist, "X1", "Zebedee Quonsetmarker", "risk_of_harm", "r",
                            w.clock.now() + timedelta(days=3),
                            [NewImage(data=FAKE_JPEG + MARKER * 40, template=template(5), source="custody")])
    with w.gov.db.engine.connect() as c:
        assert c.execute(text("PRAGMA secure_delete")).scalar() == 1

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("e.db*"))

    w.gov.db.engine.dispose()  # the last connection checkpoints: the subject is in the file now
    assert MARKER in on_disk() and b"Quonsetmarker" in on_disk()
    w.gov.erase_subject(w["watchlist_manager"], s.id)
    data = on_disk()
    assert MARKER not in data and b"Quonsetmarker" not in data


def test_postgresql_vacuums_after_erasure(db_url, fast_passwords):  # noqa: F811
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (SQLite: the test above)")
    w = make_world(db_url, subjects=2)
    w.gov.erase_subject(w["watchlist_manager"], w.subjects[0])
    deadline = time.monotonic() + 20  # statistics reach the view asynchronously: wait for them, assert no time
    while True:
        with w.gov.db.engine.connect() as c:
            c.execute(text("SELECT pg_stat_clear_snapshot()"))
            last = c.execute(text("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'reference_images' "
                                  "AND schemaname = current_schema()")).scalar()
        if last is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert last is not None


# -- 12. purge tells what the automatic purge did ----------------------------------------------------


def test_purge_reports_what_the_automatic_purge_already_did(world):
    w, g = world, world.gov
    d = w.active_deployment(start_in=timedelta(0), length=timedelta(hours=1))
    for t in range(3):
        w.alert(d, w.subjects[0], track=t)
    w.clock.advance(days=40)
    auto = g.housekeeping()  # what every command does first
    assert auto.alerts == 3 and auto.deployments_ended == [d]
    r = g.purge(w["administrator"])
    assert r.alerts == 0 and r.automatic.alerts == 3 and r.automatic.snapshots == 1 and r.automatic.deployments_ended == [d]
    assert r.automatic.since is None and r.automatic.last_at is not None
    again = g.purge(w["administrator"])
    assert again.automatic.alerts == 0 and again.automatic.entries == 0 and again.automatic.since is not None
    assert g.verify_audit(w["auditor"]).ok


def test_purge_command_output_is_true(world):
    from sqlalchemy import update

    from openlfr.store.models import AlertRow

    w = world
    d = w.active_deployment(start_in=timedelta(0))  # the test clock is the real time here
    w.alert(d, w.subjects[0])
    w.gov.set_retention_days(w["administrator"], 1)
    with w.gov.db.transaction() as s:  # an alert two days old
        s.execute(update(AlertRow).values(recorded_at=datetime.now(timezone.utc) - timedelta(days=2)))
    r = cli(w, "purge", who="administrator")
    assert "purged now: 0 alert(s)" in r.stdout
    assert "already purged automatically before this first purge report: 1 alert(s)" in r.stdout
    r = cli(w, "purge", who="administrator")
    assert "nothing was purged automatically since the last purge report" in r.stdout
