"""Issue 11, item 5: the keyed audit chain against someone with database write access and no key,
`audit verify` that reads before it writes (and never crashes on a tampered log), anchors, the
decision-bearing records the chain covers, and the migration of an unkeyed (pre-0004) chain.

SQLite and PostgreSQL (``db_url``); the CLI through typer's CliRunner.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, insert, select, text, update
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.governance import Governance, TestClock, audit
from openlfr.governance.audit_key import AuditKey, AuditKeyError
from openlfr.governance.testing import PASSWORD, make_world
from openlfr.store.models import (
    Adjudication,
    AuditEvent,
    AuditHead,
    Authorisation,
    Deployment,
    FacesSeen,
)
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)


@pytest.fixture
def world(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url, clock=TestClock(datetime.now(timezone.utc)), subjects=2)
    d = w.active_deployment(start_in=timedelta(0))
    a = w.alert(d, w.subjects[0])
    w.gov.count_faces_seen(w["operator"], d, "cam-a", 13)
    w.gov.adjudicate(w["operator"], a, "true")
    w.gov.record_outcome(w["engagement_officer"], a, "confirmed", "arrest")
    w.d, w.a = d, a
    return w


def _exec(w, *stmts):
    with w.gov.db.transaction() as s:
        for st in stmts:
            s.execute(st)


def _log(w) -> list[dict]:
    buf = io.StringIO()
    with w.gov.db.transaction() as s:
        audit.export(s, buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def _count(w) -> int:
    with w.gov.db.transaction() as s:
        return s.execute(select(func.count()).select_from(AuditEvent)).scalar()


def verify(w, anchor=None):
    with w.gov.db.transaction() as s:
        return audit.verify(s, w.gov.key, anchor)


def cli(w, *args, code=0):
    env = {"OPENLFR_DB": w.gov.db.url, "OPENLFR_USER": "auditor", "OPENLFR_ACTOR_PASSWORD": PASSWORD, "OPENLFR_PASSWORD": None}
    r = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert r.exit_code == code, f"{args}: exit {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception!r}"
    return r


# -- attacks without the key -----------------------------------------------------------------------


def test_trimmed_tail_with_the_head_fixed_is_detected(world):
    log = _log(world)
    keep = log[-4]
    _exec(world, delete(AuditEvent).where(AuditEvent.seq > keep["seq"]),
          update(AuditHead).where(AuditHead.id == 1).values(seq=keep["seq"], hash=keep["hash"]))
    r = verify(world)
    assert not r.ok and "MAC" in r.reason
    _exec(world, update(AuditHead).where(AuditHead.id == 1).values(mac=None))
    r = verify(world)
    assert not r.ok and "lost its MAC" in r.reason


def test_forged_append_with_the_head_moved_is_detected(world):
    last = _log(world)[-1]
    seq = last["seq"] + 1
    for keyed in (True, False):  # claiming a key it does not have, or an old-style entry
        h = audit.entry_hash(seq, last["time"], "intruder", "alert.adjudicate", f"alert:{world.a}", {"decision": "false_alert"}, last["hash"])
        with world.gov.db.transaction() as s:
            s.execute(delete(AuditEvent).where(AuditEvent.seq == seq))
            s.execute(insert(AuditEvent).values(seq=seq, time=s.get(AuditEvent, last["seq"]).time, actor="intruder",
                                                action="alert.adjudicate", target=f"alert:{world.a}",
                                                details='{"decision":"false_alert"}', prev_hash=last["hash"], hash=h, keyed=keyed))
            s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=seq, hash=h))
        r = verify(world)
        assert not r.ok and r.first_broken == seq


def test_an_edited_adjudication_with_its_entry_recomputed_is_detected(world):
    """Edit the stored decision and the entry's details, recompute the whole chain without the key."""
    _exec(world, update(Adjudication).where(Adjudication.alert_id == world.a).values(decision="false_alert"))
    r = verify(world)
    assert not r.ok and f"alert {world.a}'s adjudications" in r.reason  # the table no longer matches the chain
    log = _log(world)
    prev = audit.GENESIS_HASH
    with world.gov.db.transaction() as s:
        for e in log:
            if e["action"] == "alert.adjudicate":
                e["details"]["decision"] = "false_alert"
            h = audit.entry_hash(e["seq"], e["time"], e["actor"], e["action"], e["target"], e["details"], prev)  # no key
            s.execute(update(AuditEvent).where(AuditEvent.seq == e["seq"]).values(
                details=audit.canonical_json(e["details"]), prev_hash=prev, hash=h))
            prev = h
        s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev))
    r = verify(world)
    assert not r.ok and r.first_broken == 1 and "without the audit key" in r.reason


@pytest.mark.parametrize("change", ["dpia", "signage", "notices", "faces", "authorisation", "outcome_deleted"])
def test_every_decision_bearing_field_is_covered(world, change):
    stmt = {
        "dpia": update(Deployment).where(Deployment.id == world.d).values(dpia_ref="DPIA-FORGED"),
        "signage": update(Deployment).where(Deployment.id == world.d).values(signage_confirmed=False),
        "notices": update(Deployment).where(Deployment.id == world.d).values(notices_confirmed=False),
        "faces": update(FacesSeen).where(FacesSeen.deployment_id == world.d).values(count=1300),
        "authorisation": update(Authorisation).where(Authorisation.deployment_id == world.d).values(note="forged"),
        "outcome_deleted": text("DELETE FROM engagements"),
    }[change]
    assert verify(world).ok
    _exec(world, stmt)
    r = verify(world)
    assert not r.ok and "outside openlfr" in r.reason, r


def test_a_process_with_another_key_cannot_append(world):
    other = Governance(world.gov.db, world.clock, key=AuditKey(b"another key of at least thirty-two chars", "test"))
    with pytest.raises(AuditKeyError, match="key id"):
        other.create_watchlist(world["watchlist_manager"], "nope")
    with world.gov.db.transaction() as s:
        r = audit.verify(s, other.key)
    assert not r.ok and "not the one" in r.reason


# -- audit verify: reads first, never crashes --------------------------------------------------------


def test_verify_writes_nothing_before_it_has_verified(world):
    n = _count(world)
    r = cli(world, "audit", "verify")
    assert "intact" in r.stdout and "anchor" in r.stdout
    log = _log(world)
    assert len(log) == n + 1 and log[-1]["action"] == "login" and log[-1]["actor"] == "auditor"


@pytest.mark.parametrize("tamper", ["inserted_row", "deleted_head"])
def test_verify_reports_an_inserted_row_or_a_deleted_head_without_crashing(world, tamper):
    last = _log(world)[-1]
    if tamper == "inserted_row":
        with world.gov.db.transaction() as s:
            s.execute(insert(AuditEvent).values(seq=last["seq"] + 1, time=s.get(AuditEvent, last["seq"]).time, actor="intruder",
                                                action="login", target="", details="{}", prev_hash=last["hash"], hash="e" * 64,
                                                keyed=True))
    else:
        _exec(world, delete(AuditHead))
    n = _count(world)
    r = cli(world, "audit", "verify", code=1)
    assert "broken" in r.stderr and "nothing was written" in r.stderr
    assert _count(world) == n  # no login entry on a broken chain; no crash (UNIQUE on seq)
    # other commands refuse to write past a broken end instead of crashing
    r = CliRunner().invoke(app, ["watchlist", "create", "x"], env={"OPENLFR_DB": world.gov.db.url, "OPENLFR_USER": "watchlist_manager",
                                                                    "OPENLFR_ACTOR_PASSWORD": PASSWORD})
    assert r.exit_code == 1 and "audit verify" in r.stderr


# -- anchors ------------------------------------------------------------------------------------------


def test_export_prints_an_anchor_that_catches_a_rewrite_with_the_key(world, tmp_path):
    out = tmp_path / "audit.jsonl"
    r = cli(world, "audit", "export", "--out", out)
    anchor = r.stderr.split("anchor: ")[1].split()[0]
    h, seq = anchor.split("@")
    assert json.loads(out.read_text().splitlines()[-1])["hash"] == h and int(seq) == len(out.read_text().splitlines())
    assert "intact" in cli(world, "audit", "verify", "--anchor", anchor).stdout
    assert "intact" in cli(world, "audit", "verify", "--file", out, "--anchor", anchor).stdout
    # an insider who holds the key rewrites entry 3 and recomputes everything: intact without the anchor...
    key = world.gov.key
    log = _log(world)
    prev = audit.GENESIS_HASH
    with world.gov.db.transaction() as s:
        for e in log:
            if e["seq"] == 3:
                e["actor"] = "someone else"
            h2 = audit.entry_hash(e["seq"], e["time"], e["actor"], e["action"], e["target"], e["details"], prev, key)
            s.execute(update(AuditEvent).where(AuditEvent.seq == e["seq"]).values(actor=e["actor"], prev_hash=prev, hash=h2))
            prev = h2
        s.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=prev, mac=audit.head_mac(key, log[-1]["seq"], prev)))
    assert verify(world).ok
    r = cli(world, "audit", "verify", "--anchor", anchor, code=1)
    assert f"at entry {seq}" in r.stderr and "anchor" in r.stderr


def test_anchor_catches_truncation(world):
    log = _log(world)
    anchor = audit.Anchor(log[-1]["hash"], log[-1]["seq"])
    keep = log[-5]
    key = world.gov.key
    _exec(world, delete(AuditEvent).where(AuditEvent.seq > keep["seq"]),
          update(AuditHead).where(AuditHead.id == 1).values(seq=keep["seq"], hash=keep["hash"], mac=audit.head_mac(key, keep["seq"], keep["hash"])))
    with world.gov.db.transaction() as s:
        assert audit.verify(s, key, records=False).ok  # with the key, the cut cannot be seen from inside the database...
    r = verify(world, anchor)
    assert not r.ok and "before the anchor" in r.reason  # ...but the anchor kept elsewhere shows it
    with pytest.raises(Exception, match="HASH@SEQ"):
        audit.Anchor.parse("not-an-anchor")


# -- migration of an unkeyed chain ----------------------------------------------------------------------


def test_an_unkeyed_chain_from_before_0004_is_anchored_by_the_first_keyed_entry(tmp_path, fast_passwords):  # noqa: F811
    from openlfr.store.db import Database, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url, migrate=False)
    upgrade(db.engine, "0003")
    t0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
    prev = audit.GENESIS_HASH
    with db.engine.begin() as c:  # what 0003-era openlfr wrote: plain SHA-256, subject 3 erased (its id then reusable)
        for seq, (action, target) in enumerate([("user.create", "user:1"), ("subject.create", "subject:3"), ("subject.erase", "subject:3")], 1):
            t = t0 + timedelta(seconds=seq)
            h = audit.entry_hash(seq, t, "bootstrap", action, target, {}, prev)
            c.execute(text("INSERT INTO audit_events (seq, time, actor, action, target, details, prev_hash, hash) "
                           "VALUES (:s, :t, 'bootstrap', :a, :g, '{}', :p, :h)"),
                      {"s": seq, "t": t.replace(tzinfo=None), "a": action, "g": target, "p": prev, "h": h})
            prev = h
        c.execute(text("UPDATE audit_head SET seq = 3, hash = :h"), {"h": prev})
    db.dispose()
    gov = Governance(url, TestClock(t0 + timedelta(minutes=1)))  # migrates to head
    with gov.db.transaction() as s:
        r = audit.verify(s, gov.key)
        assert r.ok and "predate the keyed chain" in r.notes[0]
        assert s.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'subjects'")).scalar() == 3
    gov.bootstrap_admin("admin", PASSWORD)  # the first keyed entry
    admin = gov.login("admin", PASSWORD)
    gov.create_user(admin, "wm", ["watchlist_manager"], PASSWORD)
    wm = gov.login("wm", PASSWORD)
    gov.create_watchlist(wm, "w")
    subj = gov.enrol_subject(wm, "w", "R", "N", "risk_of_harm", "r", t0 + timedelta(days=5),
                             [__import__("openlfr.governance.testing", fromlist=["image"]).image(1)])
    assert subj.id == 4  # subject:3 in the old log keeps naming the person erased then
    with gov.db.transaction() as s:
        r = audit.verify(s, gov.key)
    assert r.ok and "anchored by keyed entry 4" in r.notes[-1]
    # rewriting a legacy entry (and its plain hashes) now breaks the link to the first keyed entry
    log = []
    with gov.db.transaction() as s:
        log = [audit.record_of(e) for e in s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()]
        prev = audit.GENESIS_HASH
        for e in log[:3]:
            actor = "someone else" if e["seq"] == 2 else e["actor"]
            h = audit.entry_hash(e["seq"], e["time"], actor, e["action"], e["target"], e["details"], prev)
            s.execute(update(AuditEvent).where(AuditEvent.seq == e["seq"]).values(actor=actor, prev_hash=prev, hash=h))
            prev = h
    with gov.db.transaction() as s:
        r = audit.verify(s, gov.key)
    assert not r.ok and r.first_broken == 4


def test_api_export_sends_the_anchor_and_verify_takes_it(world):
    from fastapi.testclient import TestClient

    from openlfr.server import create_app
    from openlfr.web.testing import fake_enroller, role_tokens

    client = TestClient(create_app(world.gov.db.url, world.clock, enroller=fake_enroller))
    h = {"Authorization": f"Bearer {role_tokens(world)['auditor']}"}
    r = client.get("/api/audit/export", headers=h)
    anchor = r.headers["X-Openlfr-Audit-Anchor"]
    assert anchor.split("@")[0] == json.loads(r.text.splitlines()[-1])["hash"]
    v = client.get("/api/audit/verify", params={"anchor": anchor}, headers=h).json()
    assert v["ok"] and v["anchor"]
    keep = _log(world)[2]
    _exec(world, delete(AuditEvent).where(AuditEvent.seq > keep["seq"]),
          update(AuditHead).where(AuditHead.id == 1).values(seq=keep["seq"], hash=keep["hash"],
                                                            mac=audit.head_mac(world.gov.key, keep["seq"], keep["hash"])))
    v = client.get("/api/audit/verify", params={"anchor": anchor}, headers=h).json()
    assert not v["ok"] and "before the anchor" in v["reason"]
    assert client.get("/api/audit/verify", params={"anchor": "nonsense"}, headers=h).status_code in (409, 422)
    client.close()
