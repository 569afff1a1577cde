"""The governance commands end to end (typer's CliRunner), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.cli import governance as cli_gov
from openlfr.governance import open_deployment_run
from openlfr.governance.clock import TestClock
from openlfr.live.sink import AlertRecord
from openlfr.governance.testing import FAKE_JPEG, template
from openlfr.store.models import AuditEvent
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)

PW = {"administrator": "admin password", "operator": "operator password", "watchlist_manager": "manager password",
      "authorising_officer": "officer password", "auditor": "auditor password", "engagement_officer": "engage password"}


def _fake_watchlist(subjects):
    from openlfr.watchlist.enrol import AcceptedImage, EnrolmentReport
    from openlfr.watchlist.model import Watchlist

    templates, owner, paths, report = [], [], [], EnrolmentReport("fake")
    for i, s in enumerate(subjects):
        for p in s.images:
            templates.append(template(abs(hash(p)) % 10_000))
            owner.append(i)
            paths.append(p)
            report.accepted.append(AcceptedImage(p, s.id, 0.9, (0, 0, 99, 99)))
    return Watchlist(list(subjects), np.stack(templates), np.array(owner), np.full(len(owner), 0.9), paths), report


@pytest.fixture
def cli(db_url, fast_passwords, monkeypatch, tmp_path):  # noqa: F811
    """Run ``openlfr ...`` against the test database, with a test clock and a stand-in face engine."""
    from openlfr.watchlist.enrol import read_csv, read_folder
    from openlfr.watchlist.model import Subject

    clock = TestClock(datetime(2030, 3, 1, 8, 0, tzinfo=timezone.utc))
    monkeypatch.setattr(cli_gov, "_clock", lambda: clock)
    monkeypatch.setattr(cli_gov, "_enrol_images", lambda ref, name, cat, paths, min_face:
                        _fake_watchlist([Subject(ref, name, cat, [str(p) for p in paths])]))
    monkeypatch.setattr(cli_gov, "_enrol_source", lambda path, min_face:
                        _fake_watchlist(read_folder(path) if path.is_dir() else read_csv(path)))
    runner = CliRunner()

    def run(*args, who=None, password=None, env=None, input=None, code=0):
        e = {"OPENLFR_DB": db_url, "OPENLFR_USER": None, "OPENLFR_PASSWORD": None, "OPENLFR_ACTOR_PASSWORD": None}
        if who:
            e |= {"OPENLFR_USER": who, "OPENLFR_ACTOR_PASSWORD": password or PW.get(who)}
        e |= env or {}
        r = runner.invoke(app, [str(a) for a in args], env=e, input=input)
        assert r.exit_code == code, f"{args}: exit {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
        return r

    run.clock = clock
    run.url = db_url
    run.tmp = tmp_path
    return run


def _people(run):
    run("user", "add", "administrator", "--role", "administrator", env={"OPENLFR_PASSWORD": PW["administrator"]})
    for name in ("operator", "watchlist_manager", "authorising_officer", "auditor", "engagement_officer"):
        run("user", "add", name, "--role", name, who="administrator", env={"OPENLFR_PASSWORD": PW[name]})


def _images(tmp: Path, *names) -> list[Path]:
    out = []
    for n in names:
        p = tmp / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(FAKE_JPEG + n.encode())
        out.append(p)
    return out


def test_users_bootstrap_and_logins(cli):
    # nobody may add a user to a database with users without logging in
    cli("user", "add", "administrator", "--role", "auditor", env={"OPENLFR_PASSWORD": "long password"}, code=2)  # first must be admin
    r = cli("user", "add", "administrator", "--role", "administrator", env={"OPENLFR_PASSWORD": PW["administrator"]})
    assert "first administrator" in r.stdout
    cli("user", "add", "x", "--role", "auditor", env={"OPENLFR_PASSWORD": "long password"}, code=2)
    # the acting administrator's password asked for, then the new user's
    cli("user", "add", "auditor", "--role", "auditor", "--as", "administrator",
        input=f"{PW['administrator']}\n{PW['auditor']}\n")
    # OPENLFR_PASSWORD is the new user's password in `user add`
    cli("user", "add", "operator", "--role", "operator", "--role", "engagement_officer", who="administrator",
        env={"OPENLFR_PASSWORD": PW["operator"]})
    cli("user", "add", "weak", "--role", "auditor", who="administrator", env={"OPENLFR_PASSWORD": "short"}, code=2)
    # a wrong password and a missing role
    cli("user", "list", who="administrator", password="wrong password", code=3)
    cli("user", "list", who="operator", code=4)
    r = cli("user", "list", "--json", who="auditor")
    users = {u["name"]: u["roles"] for u in json.loads(r.stdout)}
    assert users == {"administrator": ["administrator"], "auditor": ["auditor"], "operator": ["engagement_officer", "operator"]}
    # OPENLFR_PASSWORD logs in for every other command
    cli("user", "list", env={"OPENLFR_USER": "auditor", "OPENLFR_PASSWORD": PW["auditor"]})
    cli("user", "disable", "operator", who="administrator")
    cli("audit", "verify", who="operator", code=3)
    cli("audit", "verify", code=2)  # nobody named
    r = cli("audit", "export", who="auditor")
    log = [json.loads(x) for x in r.stdout.splitlines()]
    assert {"user.create", "login", "login.failed", "permission.denied", "user.change"} <= {e["action"] for e in log}
    for pw in PW.values():
        assert pw not in r.stdout


def test_full_flow(cli):
    run, tmp = cli, cli.tmp
    _people(run)
    run("watchlist", "create", "wanted", "--description", "court warrants", who="watchlist_manager")
    run("watchlist", "create", "other", who="operator", code=4)
    imgs = _images(tmp, "jo1.jpg", "jo2.jpg")
    r = run("watchlist", "add", "wanted", *imgs, "--ref", "S1", "--name", "Jo Bloggs", "--category", "wanted_by_courts",
            "--reason", "warrant 123", "--expires", "+30d", "--source", "custody", "--taken", "2029-01-01", who="watchlist_manager")
    assert "2 image(s) enrolled" in r.stdout
    # import a CSV: per-row category, reason and expiry, with defaults from the options
    _images(tmp, "csv/a.jpg", "csv/b.jpg", "csv/c.jpg")
    (tmp / "csv" / "list.csv").write_text(
        "subject_id,name,image,category,reason,expires\n"
        "S2,Al Smith,a.jpg,missing_or_vulnerable,missing since May,\n"
        "S3,Bo Jones,b.jpg,risk_of_harm,,2030-03-02\n"
        "S3,Bo Jones,c.jpg,risk_of_harm,,\n")
    r = run("watchlist", "import", "wanted", tmp / "csv" / "list.csv", "--reason", "default reason", "--expires", "+10d",
            who="watchlist_manager")
    assert "2 subject(s) enrolled" in r.stdout
    # a subject without a category, reason or expiry is refused before anything is enrolled
    _images(tmp, "flat/S4.jpg")
    run("watchlist", "import", "wanted", tmp / "flat", who="watchlist_manager", code=2)
    subjects = json.loads(run("watchlist", "list", "wanted", "--json", who="auditor").stdout)
    by_ref = {s["ref"]: s for s in subjects}
    assert set(by_ref) == {"S1", "S2", "S3"}
    assert by_ref["S1"]["templates"] == 2 and by_ref["S1"]["images"][0]["source"] == "custody"
    assert by_ref["S2"]["reason"] == "missing since May" and by_ref["S3"]["reason"] == "default reason"
    assert by_ref["S3"]["expires_at"].startswith("2030-03-0") and by_ref["S3"]["templates"] == 2
    lists = json.loads(run("watchlist", "list", "--json", who="authorising_officer").stdout)
    assert lists[0]["subjects"] == 3 and lists[0]["templates"] == 5
    assert lists[0]["second_missing"] == 5  # the stand-in engine gives no second model's feature
    assert "no 2nd" in run("watchlist", "list", who="authorising_officer").stdout
    # S3 expires before the deployment starts: it joins no snapshot
    run("watchlist", "expire", "S3", "--watchlist", "wanted", who="watchlist_manager")

    # --end +2h: two hours after the start
    plan = ["deployment", "plan", "--name", "Cup final", "--use-case", "wanted persons", "--location", "Cardiff",
            "--zone", "Gate 4", "--start", "+1h", "--end", "+2h", "--camera", "cam-a", "--camera", "cam-b",
            "--watchlist", "wanted", "--threshold", "0.55", "--threshold-reason", "test: a fixed distance", "--dpia", "DPIA-7"]
    run(*plan, who="operator")  # 1: no signage or notices confirmed
    run(*plan, "--signage-confirmed", "--notices-confirmed", "--authorising-officer", "authorising_officer", who="operator")  # 2
    run("deployment", "authorise", "1", who="authorising_officer", code=2)  # lacks signage and notices
    run("deployment", "start", "2", who="operator", code=2)  # not authorised
    run("deployment", "authorise", "2", who="operator", code=4)  # not an authorising officer
    run("deployment", "authorise", "2", "--note", "proportionate", who="authorising_officer")
    run("deployment", "start", "2", who="operator", code=2)  # before its window
    run.clock.advance(hours=1)
    run("deployment", "start", "2", who="authorising_officer", code=4)
    r = run("deployment", "start", "2", who="operator")
    assert "active until" in r.stdout

    # what `openlfr run --deployment 2` does
    from openlfr.governance import Governance

    live = open_deployment_run(run.url, 2, actor=Governance(run.url, run.clock).login("operator", PW["operator"]), clock=run.clock)
    assert {s.name for s in live.subjects} == {"Jo Bloggs", "Al Smith"} and live.threshold == 0.55
    jo = next(s.id for s in live.subjects if s.name == "Jo Bloggs")
    al = next(s.id for s in live.subjects if s.name == "Al Smith")
    a1 = live.sink.record(AlertRecord(camera="cam-a", track=1, subject_id=jo, distance=0.4, crop=FAKE_JPEG, template=template(1)))
    a2 = live.sink.record(AlertRecord(camera="cam-b", track=2, subject_id=al, distance=0.5, crop=FAKE_JPEG, template=template(2),
                                      threshold=0.93))
    live.sink.count_faces_seen("cam-a", 120)
    live.sink.count_faces_seen("cam-b", 80)
    alerts = json.loads(run("alert", "list", "--deployment", "2", "--json", who="operator").stdout)
    assert {a["id"] for a in alerts} == {a1, a2}
    table = run("alert", "list", "--deployment", "2", who="operator").stdout  # the alert's own threshold where recorded
    assert "dist<thr" in table and "0.50<0.93" in table and "0.400" in table
    run("alert", "adjudicate", a1, "true", who="operator")
    run("alert", "adjudicate", a2, "false", who="operator")
    run("alert", "adjudicate", a2, "true", who="engagement_officer", code=4)
    run("alert", "outcome", a1, "--result", "confirmed", "--outcome", "arrest", who="engagement_officer")
    run("alert", "outcome", a2, "--result", "confirmed", "--outcome", "arrest", who="engagement_officer", code=2)
    shown = json.loads(run("deployment", "show", "2", "--json", who="auditor").stdout)
    assert shown["status"] == "active" and shown["faces_seen"]["total"] == 200
    assert shown["alerts"]["true_alerts"] == 1 and shown["alerts"]["false_alerts"] == 1
    assert shown["false_alert_rate"] == pytest.approx(1 / 200) and shown["alert_precision"] == pytest.approx(0.5)
    assert shown["snapshot"]["subjects"] == 2 and shown["authorising_officer"] == "authorising_officer"
    r = run("deployment", "show", "2", who="auditor")
    assert "Cup final" in r.stdout and "false alert rate" in r.stdout
    r = run("deployment", "show", who="auditor")
    assert "Cup final" in r.stdout

    # erasure: Al Smith's images, templates and alert go; the audit keeps only that it happened
    r = run("subject", "erase", al, "--yes", who="watchlist_manager")
    assert "1 alerts" in r.stdout
    assert {a["id"] for a in json.loads(run("alert", "list", "--json", who="auditor").stdout)} == {a1}

    # the deployment stops itself at its end: the next command (any) notices
    run.clock.advance(hours=2, seconds=1)
    shown = json.loads(run("deployment", "show", "2", "--json", who="auditor").stdout)
    assert shown["status"] == "ended" and shown["snapshot"]["deleted_at"] is not None
    run("deployment", "stop", "2", who="operator", code=2)
    run("deployment", "stop", "1", who="operator")  # cancels the unauthorised plan

    # retention: alerts go after 31 days, by themselves at the next command
    run.clock.advance(days=31)
    assert json.loads(run("alert", "list", "--json", who="auditor").stdout) == []
    run("purge", "--retention-days", "7", who="administrator")
    run("purge", who="auditor", code=4)

    # the audit chain: intact, exported, verifiable offline; tampering is named
    r = run("audit", "verify", who="auditor")
    assert "intact" in r.stdout
    out = tmp / "audit.jsonl"
    run("audit", "export", "--out", out, who="auditor")
    run("audit", "verify", "--file", out)
    log = [json.loads(x) for x in out.read_text().splitlines()]
    text = out.read_text()
    assert "Al Smith" not in text and "Jo Bloggs" not in text
    assert {"subject.erase", "deployment.stop", "snapshot.delete", "purge", "alert.adjudicate", "alert.outcome",
            "setting.change"} <= {e["action"] for e in log}
    from openlfr.store.db import open_db

    with open_db(run.url).transaction() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 12).values(details='{"tampered":true}'))
    r = run("audit", "verify", who="auditor", code=1)
    assert "entry 12" in r.stderr
    lines = out.read_text().splitlines()
    del lines[4]
    out.write_text("\n".join(lines) + "\n")
    r = run("audit", "verify", "--file", out, code=1)
    assert "entry 6" in r.stderr


def test_database_resolution(fast_passwords, tmp_path, monkeypatch):  # noqa: F811
    runner = CliRunner()
    add = ["user", "add", "administrator", "--role", "administrator"]
    data = tmp_path / "data"
    r = runner.invoke(app, add, env={"OPENLFR_DB": None, "OPENLFR_DATA_DIR": str(data), "OPENLFR_PASSWORD": "long password"})
    assert r.exit_code == 0, r.stderr
    assert (data / "openlfr.db").exists()
    env_db = tmp_path / "env.db"
    flag_db = tmp_path / "flag.db"
    r = runner.invoke(app, add + ["--db", f"sqlite:///{flag_db}"],
                      env={"OPENLFR_DB": f"sqlite:///{env_db}", "OPENLFR_PASSWORD": "long password"})
    assert r.exit_code == 0 and flag_db.exists() and not env_db.exists()
    r = runner.invoke(app, add, env={"OPENLFR_DB": f"sqlite:///{env_db}", "OPENLFR_PASSWORD": "long password"})
    assert r.exit_code == 0 and env_db.exists()


def test_parse_when():
    now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert cli_gov.parse_when("+2h", now=now) == now + timedelta(hours=2)
    assert cli_gov.parse_when("-30m", now=now) == now - timedelta(minutes=30)
    assert cli_gov.parse_when("now", now=now) == now
    assert cli_gov.parse_when("2030-01-02T10:00:00+01:00") == datetime(2030, 1, 2, 9, 0, tzinfo=timezone.utc)
    d = cli_gov.parse_when("2030-01-02", end_of_day=True)
    assert d.tzinfo is not None and d > cli_gov.parse_when("2030-01-02")
    import typer

    with pytest.raises(typer.BadParameter):
        cli_gov.parse_when("tomorrow-ish")


def test_real_enrolment(fast_passwords, astronaut, tmp_path):  # noqa: F811
    """`watchlist add` through the real face engine and its quality checks (SQLite).

    The engine is a required part of the install: if it cannot load, this test fails."""
    import cv2

    img = tmp_path / "astronaut.jpg"
    face = np.ascontiguousarray(astronaut[0:300, 100:350])  # her face only (the full photo has a second detection)
    cv2.imwrite(str(img), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 127, np.uint8))
    runner = CliRunner()
    env = {"OPENLFR_DB": f"sqlite:///{tmp_path / 'x.db'}", "OPENLFR_PASSWORD": "long password",
           "OPENLFR_ACTOR_PASSWORD": "long password", "OPENLFR_USER": None}
    assert runner.invoke(app, ["user", "add", "admin", "--role", "administrator"], env=env).exit_code == 0
    r = runner.invoke(app, ["user", "add", "wm", "--role", "watchlist_manager", "--as", "admin"], env=env)
    assert r.exit_code == 0, r.stderr
    env |= {"OPENLFR_USER": "wm"}
    assert runner.invoke(app, ["watchlist", "create", "w"], env=env).exit_code == 0
    r = runner.invoke(app, ["watchlist", "add", "w", str(img), str(blank), "--ref", "E1", "--name", "Eileen Collins",
                            "--category", "missing_or_vulnerable", "--reason", "test", "--expires", "+1d"], env=env)
    assert r.exit_code == 0, r.stderr
    assert "1 image(s) enrolled, 1 rejected" in r.stdout and "no face found" in r.stderr
    from openlfr.governance import Governance
    from openlfr.store.models import ReferenceImage, Template

    gov = Governance(env["OPENLFR_DB"])
    with gov.db.transaction() as s:
        (ref,) = s.query(ReferenceImage).all()
        (tmpl,) = s.query(Template).all()
        assert ref.data == img.read_bytes() and ref.media_type == "image/jpeg"
        v = np.frombuffer(tmpl.vector, "<f4")
        assert v.shape == (128,) and 0.5 < np.linalg.norm(v) < 1.5
