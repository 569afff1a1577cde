"""The governance rules, each enforced in code, on SQLite and PostgreSQL, with a controllable clock."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from openlfr.governance import Actor, DeploymentNotActive, GovernanceError, open_deployment_run
from openlfr.governance.testing import PASSWORD, image, make_world, template
from openlfr.live.alerts import Alert
from openlfr.live.sink import AlertRecord
from openlfr.store.models import (
    Adjudication,
    AlertRow,
    Engagement,
    ReferenceImage,
    SnapshotTemplate,
    SubjectRow,
    Template,
)
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)


@pytest.fixture
def world(db_url, fast_passwords):  # noqa: F811
    return make_world(db_url)


def count(world, model, *where) -> int:
    with world.gov.db.transaction() as s:
        return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


# -- deployments: authorisation and time window ---------------------------------------------------


def test_start_needs_authorisation(world):
    d = world.plan(start_in=timedelta(0))
    with pytest.raises(GovernanceError, match="only an authorised deployment can start"):
        world.gov.start_deployment(world["operator"], d)
    assert world.gov.get_deployment(world["auditor"], d)["status"] == "planned"


def test_start_only_inside_window(world):
    d = world.plan(start_in=timedelta(hours=2), length=timedelta(hours=3))
    world.gov.authorise_deployment(world["authorising_officer"], d)
    with pytest.raises(GovernanceError, match="may not start before"):
        world.gov.start_deployment(world["operator"], d)
    world.clock.advance(hours=5)  # exactly the end: too late
    with pytest.raises(GovernanceError, match="ended at"):
        world.gov.start_deployment(world["operator"], d)
    d2 = world.plan(start_in=timedelta(hours=1))
    world.gov.authorise_deployment(world["authorising_officer"], d2)
    world.clock.advance(hours=1, seconds=1)
    world.gov.start_deployment(world["operator"], d2)
    assert world.gov.get_deployment(world["auditor"], d2)["status"] == "active"


def test_authorisation_rules(world):
    gov, op, ao = world.gov, world["operator"], world["authorising_officer"]
    # the planner cannot authorise their own plan, even holding both roles
    gov.create_user(world["administrator"], "both", ["operator", "authorising_officer"], PASSWORD)
    both = gov.login("both", PASSWORD)
    d = gov.plan_deployment(both, name="x", use_case="u", location="l", zone="z", starts_at=world.clock.now(),
                            ends_at=world.clock.now() + timedelta(hours=1), cameras=["c"], threshold=0.5, threshold_reason="t",
                            watchlist=world.watchlist, signage_confirmed=True, notices_confirmed=True, dpia_ref="D1")
    with pytest.raises(GovernanceError, match="planned it"):
        gov.authorise_deployment(both, d.id)
    # a plan without DPIA, signage or notices cannot be authorised
    d = world.plan(dpia_ref="", signage_confirmed=False)
    with pytest.raises(GovernanceError, match="lacks a DPIA reference, signage confirmed"):
        gov.authorise_deployment(ao, d)
    # a named authorising officer is the only one who may authorise
    gov.create_user(world["administrator"], "ao2", ["authorising_officer"], PASSWORD)
    ao2 = gov.login("ao2", PASSWORD)
    d = world.plan(authorising_officer="ao2")
    with pytest.raises(GovernanceError, match="another authorising officer"):
        gov.authorise_deployment(ao, d)
    gov.authorise_deployment(ao2, d)
    with pytest.raises(GovernanceError, match="only a planned deployment"):
        gov.authorise_deployment(ao2, d)
    # plans are checked
    with pytest.raises(GovernanceError, match="end must be after"):
        world.plan(length=timedelta(0))
    with pytest.raises(GovernanceError, match="cameras"):
        world.plan(cameras=())
    with pytest.raises(GovernanceError, match="threshold"):
        world.plan(threshold=0)
    with pytest.raises(GovernanceError, match="not an authorising officer"):
        world.plan(authorising_officer="operator")
    assert op.name == "operator"


def test_deployment_stops_itself_at_its_end(world):
    d = world.active_deployment(length=timedelta(hours=2))
    sid = world.subjects[0]
    world.alert(d, sid)
    world.clock.advance(hours=1, minutes=59)
    assert world.gov.enforce_schedule() == []
    world.clock.advance(minutes=1)
    # the sink refuses at once, even before anything enforced the schedule ...
    with pytest.raises(DeploymentNotActive):
        world.alert(d, sid, track=2)
    # ... and that refusal ended it and deleted its snapshot
    dep = world.gov.get_deployment(world["auditor"], d)
    assert dep["status"] == "ended" and dep["end_reason"] == "end time reached"
    assert dep["snapshot"]["deleted_at"] == dep["ends_at"]
    assert count(world, SnapshotTemplate) == 0


def test_every_command_enforces_the_schedule(world):
    d = world.active_deployment(length=timedelta(hours=1))
    world.clock.advance(hours=3)
    report = world.gov.housekeeping()  # what every CLI command runs first
    assert report.deployments_ended == [d]
    dep = world.gov.get_deployment(world["auditor"], d)
    assert dep["status"] == "ended"
    # deleted within 24 hours of the end at the latest (here: at the first command after it)
    from datetime import datetime

    gap = datetime.fromisoformat(dep["snapshot"]["deleted_at"]) - datetime.fromisoformat(dep["ends_at"])
    assert timedelta(0) <= gap <= timedelta(hours=24)
    assert count(world, SnapshotTemplate) == 0
    with pytest.raises(DeploymentNotActive):
        world.gov.open_run(world["operator"], d)


def test_stop_and_cancel(world):
    d = world.active_deployment()
    assert count(world, SnapshotTemplate) == 2
    with pytest.raises(Exception):
        world.gov.stop_deployment(world["engagement_officer"], d)
    world.gov.stop_deployment(world["operator"], d, "crowd too large")
    assert count(world, SnapshotTemplate) == 0
    dep = world.gov.get_deployment(world["auditor"], d)
    assert dep["status"] == "ended" and dep["end_reason"] == "crowd too large"
    with pytest.raises(GovernanceError, match="ended already"):
        world.gov.stop_deployment(world["operator"], d)
    d2 = world.plan()
    world.gov.stop_deployment(world["authorising_officer"], d2, "withdrawn")
    assert world.gov.get_deployment(world["auditor"], d2)["status"] == "cancelled"
    with pytest.raises(GovernanceError):
        world.gov.authorise_deployment(world["authorising_officer"], d2)


# -- snapshots --------------------------------------------------------------------------------------


def test_runs_against_a_frozen_snapshot(world):
    d = world.active_deployment()
    run = world.gov.open_run(world["operator"], d)
    assert run.watchlist_templates.shape == (2, 128)
    assert sorted(run.template_subject_ids.tolist()) == sorted(world.subjects)
    np.testing.assert_allclose(run.watchlist_templates[0], template(100), rtol=1e-6)
    # later changes to the watchlist do not reach the running deployment
    new = world.enrol("S9", seed=9)
    world.enrol("S1", seed=77)  # another image of S1
    world.gov.expire_subject(world["watchlist_manager"], world.subjects[1])
    run2 = world.gov.open_run(world["operator"], d)
    assert run2.watchlist_templates.shape == (2, 128)
    assert new not in run2.template_subject_ids
    assert {s.id for s in run2.subjects} == set(world.subjects[:2])
    wl = run2.watchlist()
    assert len(wl) == 2 and wl.n_templates == 2
    # an alert for a subject outside the snapshot is refused
    with pytest.raises(GovernanceError, match="not in deployment"):
        world.alert(d, new)


def test_expired_subject_joins_no_new_snapshot(world):
    a, b = world.subjects
    world.enrol("S3", seed=3, days=0.5)  # expires in 12 hours
    world.gov.expire_subject(world["watchlist_manager"], b)  # expired now
    world.clock.advance(hours=13)
    d = world.active_deployment(start_in=timedelta(minutes=1))
    run = world.gov.open_run(world["operator"], d)
    assert {s.id for s in run.subjects} == {a}
    # with every subject expired, a deployment cannot start at all
    world.gov.expire_subject(world["watchlist_manager"], a)
    d2 = world.plan(start_in=timedelta(minutes=1))
    world.gov.authorise_deployment(world["authorising_officer"], d2)
    world.clock.advance(minutes=2)
    with pytest.raises(GovernanceError, match="no unexpired subject"):
        world.gov.start_deployment(world["operator"], d2)
    # an expiry is only brought forward, never extended, by `expire`
    s = world.gov.expire_subject(world["watchlist_manager"], a, world.clock.now() + timedelta(days=300))
    assert s.expires_at <= world.clock.now()


def test_enrolment_checks(world):
    wm = world["watchlist_manager"]
    good = dict(watchlist=world.watchlist, ref="S7", name="N", category="risk_of_harm", reason="r",
                expires_at=world.clock.now() + timedelta(days=1), images=[image(7)])
    for change, msg in ((dict(category="unspecified"), "category"), (dict(reason=" "), "reason"),
                        (dict(expires_at=world.clock.now()), "future"), (dict(images=[]), "no reference image")):
        with pytest.raises(GovernanceError, match=msg):
            world.gov.enrol_subject(wm, **(good | change))
    with pytest.raises(GovernanceError, match="another name"):
        world.gov.enrol_subject(wm, **(good | dict(ref="S1")))
    world.gov.enrol_subject(wm, **good)
    subjects = world.gov.list_subjects(wm, world.watchlist)
    s7 = next(s for s in subjects if s["ref"] == "S7")
    assert s7["category"] == "risk_of_harm" and s7["templates"] == 1
    assert s7["images"][0]["source"] == "custody record" and s7["images"][0]["taken_at"].startswith("2029-06-01")
    assert s7["added_by"] == "watchlist_manager"


# -- alerts, faces seen, retention ------------------------------------------------------------------


def test_alerts_and_faces_seen(world):
    d = world.active_deployment()
    run = world.gov.open_run(world["operator"], d)
    sid = world.subjects[0]
    a1 = run.sink.record(AlertRecord(camera="cam-a", track=7, subject_id=sid, distance=0.5, crop=b"\xff\xd8x",
                                     template=template(5), media_time=12.0))
    # the same track and subject updates its alert (a better shot replaces crop and template)
    a2 = run.sink.record(AlertRecord(camera="cam-a", track=7, subject_id=sid, distance=0.3, crop=b"\xff\xd8better",
                                     template=template(6)))
    assert a1 == a2
    # a run's alert becomes a record: its chip (RGB array) encoded to JPEG, its time the media time
    raised = Alert(id=1, camera="cam-b", track=1, subject=str(sid), name="x", subject_index=0, distance=0.45, threshold=0.6,
                   frame=30, time=1.2, wall=0.0, latency_s=0.0, chip=np.zeros((150, 150, 3), np.uint8), template=template(7))
    a3 = run.sink.record(AlertRecord.from_alert(raised))
    assert a3 != a1
    with pytest.raises(ValueError, match="no probe crop"):
        AlertRecord.from_alert(Alert(**{**raised.__dict__, "chip": None}))
    crop, tmpl = world.gov.alert_media(world["operator"], a1)
    assert crop == b"\xff\xd8better" and np.frombuffer(tmpl, "<f4")[0] == pytest.approx(template(6)[0])
    assert world.gov.alert_media(world["operator"], a3)[0][:2] == b"\xff\xd8"
    good = dict(camera="cam-a", track=9, subject_id=sid, distance=0.3, crop=b"\xff\xd8", template=template(1))
    for bad, msg in (({"camera": "cam-z"}, "not one of"), ({"crop": b"PNG"}, "not a JPEG"),
                     ({"template": np.ones(2, np.float32)}, "128"), ({"template": [0.1] * 128}, "array"),
                     ({"subject_id": 999999}, "not in deployment")):
        with pytest.raises(GovernanceError, match=msg):
            run.sink.record(AlertRecord(**(good | bad)))
    with pytest.raises(GovernanceError, match="AlertRecord"):  # only the typed record crosses
        run.sink.record(good)
    run.sink.count_faces_seen("cam-a", 10)
    run.sink.count_faces_seen("cam-a", 5)
    run.sink.count_faces_seen("cam-b", 1)
    with pytest.raises(GovernanceError):
        run.sink.count_faces_seen("cam-z", 1)
    assert world.gov.faces_seen(world["auditor"], d) == {"cam-a": 15, "cam-b": 1}
    rows = world.gov.list_alerts(world["operator"], d)
    assert {r["id"] for r in rows} == {a1, a3}
    assert next(r for r in rows if r["id"] == a1)["updates"] == 1
    r3 = next(r for r in rows if r["id"] == a3)
    assert (r3["frame"], r3["media_time"], r3["distances"], r3["track"]) == (30, pytest.approx(1.2), [pytest.approx(0.45)], "1")
    # adjudication and outcome, and the deployment's figures
    world.gov.adjudicate(world["operator"], a1, "true_alert")
    world.gov.adjudicate(world["operator"], a3, "false")
    with pytest.raises(GovernanceError, match="not been adjudicated a true alert"):
        world.gov.record_outcome(world["engagement_officer"], a3, "confirmed", "arrest")
    world.gov.record_outcome(world["engagement_officer"], a1, "confirmed", "arrest")
    dep = world.gov.get_deployment(world["auditor"], d)
    assert dep["faces_seen"]["total"] == 16
    assert dep["alerts"] | {} == {"total": 2, "true_alerts": 1, "false_alerts": 1, "unadjudicated": 0,
                                   "engagements": {"confirmed": 1}, "outcomes": {"arrest": 1}}
    assert dep["false_alert_rate"] == pytest.approx(1 / 16) and dep["alert_precision"] == pytest.approx(0.5)


def test_alert_is_committed_when_record_returns(world, db_url):  # noqa: F811
    d = world.active_deployment()
    aid = world.alert(d, world.subjects[0])
    from openlfr.store.db import Database

    other = Database(db_url, migrate=False)  # another connection pool: sees only committed data
    try:
        with other.transaction() as s:
            assert s.get(AlertRow, aid) is not None
    finally:
        other.dispose()


def test_alerts_purged_after_retention(world):
    d = world.active_deployment(length=timedelta(days=60))
    sid = world.subjects[0]
    old = world.alert(d, sid, track=1)
    world.gov.adjudicate(world["operator"], old, "true")
    world.gov.record_outcome(world["engagement_officer"], old, "unconfirmed", "no_engagement")
    world.clock.advance(days=20)
    newer = world.alert(d, sid, track=2)
    world.clock.advance(days=11)  # old alert: exactly 31 days
    assert world.gov.purge(world["administrator"]).alerts == 0
    world.clock.advance(seconds=1)
    r = world.gov.purge(world["administrator"])
    assert r.alerts == 1 and r.retention_days == 31
    assert count(world, AlertRow) == 1 and count(world, Adjudication) == 0 and count(world, Engagement) == 0
    with world.gov.db.transaction() as s:
        assert s.get(AlertRow, newer) is not None
    # the retention period is configurable (administrator only)
    with pytest.raises(Exception):
        world.gov.set_retention_days(world["auditor"], 7)
    world.gov.set_retention_days(world["administrator"], 7)
    assert world.gov.retention_days() == 7
    assert world.gov.housekeeping().alerts == 1  # 11 days old > 7
    assert count(world, AlertRow) == 0
    with pytest.raises(GovernanceError):
        world.gov.set_retention_days(world["administrator"], 0)


# -- erasure ----------------------------------------------------------------------------------------


def test_erasure_deletes_everything_and_records_only_that_it_happened(world):
    d = world.active_deployment()
    sid = world.enrol("ERASE-ME", seed=42, n_images=3, name="Zebedee Quux")
    # a second active deployment holds the subject in its snapshot
    d2 = world.active_deployment(start_in=timedelta(minutes=1))
    a = world.alert(d2, sid)
    world.gov.adjudicate(world["operator"], a, "true")
    world.gov.record_outcome(world["engagement_officer"], a, "confirmed", "other_action")
    keep = world.alert(d, world.subjects[0])
    assert count(world, SnapshotTemplate, SnapshotTemplate.subject_id == sid) == 3
    counts = world.gov.erase_subject(world["watchlist_manager"], sid)
    assert counts == {"images": 3, "templates": 3, "alerts": 1, "snapshot_templates": 3}
    for model, col in ((ReferenceImage, ReferenceImage.subject_id), (Template, Template.subject_id),
                       (SnapshotTemplate, SnapshotTemplate.subject_id), (AlertRow, AlertRow.subject_id)):
        assert count(world, model, col == sid) == 0
    assert count(world, SubjectRow, SubjectRow.id == sid) == 0
    assert count(world, Adjudication) == 0 and count(world, Engagement) == 0
    with world.gov.db.transaction() as s:
        assert s.get(AlertRow, keep) is not None
    # the audit records the erasure, never the person
    buf = io.StringIO()
    world.gov.export_audit(world["auditor"], buf)
    log = buf.getvalue()
    assert "Zebedee" not in log and "ERASE-ME" not in log
    last = [json.loads(x) for x in log.splitlines() if json.loads(x)["action"] == "subject.erase"]
    assert last and last[-1]["target"] == f"subject:{sid}" and last[-1]["details"]["templates"] == 3
    # the running deployment no longer alerts on them
    with pytest.raises(GovernanceError):
        world.alert(d2, sid, track=5)
    assert world.gov.verify_audit(world["auditor"]).ok


# -- live run entry point ---------------------------------------------------------------------------


def test_open_deployment_run(world, db_url):  # noqa: F811
    d = world.plan(start_in=timedelta(0))
    with pytest.raises(DeploymentNotActive):
        open_deployment_run(db_url, d, actor=world["operator"], clock=world.clock)
    world.gov.authorise_deployment(world["authorising_officer"], d)
    world.gov.start_deployment(world["operator"], d)
    with pytest.raises(GovernanceError, match="acts as someone"):  # never anonymous (issue 11, item 2)
        open_deployment_run(db_url, d, clock=world.clock)
    run = open_deployment_run(db_url, d, actor=world["operator"], clock=world.clock)
    assert run.threshold == 0.6 and run.cameras == ["cam-a", "cam-b"] and run.sink.actor.name == "operator"
    aid = run.sink.record(AlertRecord(camera="cam-b", track=3, subject_id=run.subjects[0].id, distance=0.2,
                                      crop=b"\xff\xd8", template=run.watchlist_templates[0]))
    assert aid > 0 and run.sink.maintain() is True
    with pytest.raises(Exception):
        open_deployment_run(db_url, d, actor=world["auditor"], clock=world.clock)
    world.clock.advance(hours=5)
    assert run.sink.maintain() is False


# -- passwords and logs -----------------------------------------------------------------------------


def test_password_kdf_defaults():
    from openlfr.governance import passwords

    h = passwords.HASHER
    assert h.type.name == "ID" and h.memory_cost >= 19 * 1024 and h.time_cost >= 2
    stored = passwords.hash_password("a long enough password")
    assert stored.startswith("$argon2id$") and passwords.verify_password(stored, "a long enough password")
    assert not passwords.verify_password(stored, "another password")


def test_passwords_hashed_and_secrets_never_logged(db_url, caplog, fast_passwords):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    w = make_world(db_url, subjects=1)
    d = w.active_deployment()
    w.alert(d, w.subjects[0])
    from openlfr.store.models import User

    with w.gov.db.transaction() as s:
        hashes = [u.password_hash for u in s.execute(select(User)).scalars()]
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    buf = io.StringIO()
    w.gov.export_audit(w["auditor"], buf)
    text = caplog.text + buf.getvalue()
    assert PASSWORD not in text
    t = template(100)
    assert f"{t[0]:.4f}" not in text and str(float(t[0])) not in text


def test_login_rules(world):
    from openlfr.governance import AuthenticationError

    with pytest.raises(AuthenticationError):
        world.gov.login("operator", "wrong password")
    with pytest.raises(AuthenticationError):
        world.gov.login("nobody", PASSWORD)
    world.gov.set_active(world["administrator"], "operator", False)
    with pytest.raises(AuthenticationError):
        world.gov.login("operator", PASSWORD)
    with pytest.raises(GovernanceError, match="last active administrator"):
        world.gov.set_roles(world["administrator"], "administrator", ["auditor"])
    with pytest.raises(GovernanceError, match="users exist"):
        world.gov.bootstrap_admin("second", PASSWORD)
    with pytest.raises(GovernanceError, match="at least"):
        world.gov.create_user(world["administrator"], "short", ["auditor"], "abc")
    with pytest.raises(GovernanceError, match="unknown role"):
        world.gov.create_user(world["administrator"], "sys", ["system"], PASSWORD)
    with pytest.raises(AuthenticationError, match="needs your current password"):
        world.gov.set_password(world["auditor"], "auditor", "a new long password")
    world.gov.set_password(world["auditor"], "auditor", "a new long password", old_password=PASSWORD)
    assert world.gov.login("auditor", "a new long password").roles == {"auditor"}
    with pytest.raises(Exception):
        world.gov.set_password(world["auditor"], "engagement_officer", "a new long password")
    assert Actor.system().is_system
