"""The audit log: every action recorded, hash-chained; tampering named at the first broken entry."""

from __future__ import annotations

import io
import json
import pytest
from sqlalchemy import delete, insert, text, update

from openlfr.governance import audit
from openlfr.governance.testing import make_world
from openlfr.store.models import GENESIS_HASH, AuditEvent
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)


@pytest.fixture
def world(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url, subjects=2)
    d = w.active_deployment()
    a = w.alert(d, w.subjects[0])
    w.gov.adjudicate(w["operator"], a, "true")
    w.gov.record_outcome(w["engagement_officer"], a, "confirmed", "arrest")
    w.gov.stop_deployment(w["operator"], d)
    w.gov.erase_subject(w["watchlist_manager"], w.subjects[1])
    w.clock.advance(days=40)
    w.gov.purge(w["administrator"])
    return w


def entries(w) -> list[dict]:
    buf = io.StringIO()
    with w.gov.db.transaction() as s:
        audit.export(s, buf)
    return [json.loads(x) for x in buf.getvalue().splitlines()]


def verify(w):
    return w.gov.verify_audit(w["auditor"])


def test_every_kind_of_action_is_recorded(world):
    log = entries(world)
    actions = {e["action"] for e in log}
    for a in ("user.create", "login", "watchlist.create", "subject.create", "subject.erase", "deployment.create",
              "deployment.authorise", "deployment.start", "snapshot.create", "alert.create", "alert.adjudicate",
              "alert.outcome", "deployment.stop", "snapshot.delete", "purge"):
        assert a in actions, a
    first = log[0]
    assert first["actor"] == "bootstrap" and first["details"]["bootstrap"] is True and first["prev_hash"] == GENESIS_HASH
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert all(e["prev_hash"] == p["hash"] for p, e in zip(log, log[1:]))
    # who, when, what
    adj = next(e for e in log if e["action"] == "alert.adjudicate")
    assert adj["actor"] == "operator" and adj["target"].startswith("alert:") and adj["details"]["decision"] == "true_alert"
    assert adj["time"].endswith("Z")
    purge = [e for e in log if e["action"] == "purge"][-1]
    assert purge["actor"] == "administrator" and purge["details"]["alerts"] == 1
    r = verify(world)
    assert r.ok and r.entries == len(log) and "intact" in str(r)


def _exec(w, stmt):
    with w.gov.db.transaction() as s:
        s.execute(stmt)


def test_edited_entry_is_named(world):
    _exec(world, update(AuditEvent).where(AuditEvent.seq == 7).values(actor="someone else"))
    r = verify(world)
    assert not r.ok and r.first_broken == 7 and "edited" in r.reason


@pytest.mark.parametrize("with_key", [False, True])
def test_edited_details_and_rehashed_entry_is_named(world, with_key):
    """Without the audit key the rehashed entry itself fails; with it, its successor no longer chains."""
    log = entries(world)
    e = log[9]
    details = dict(e["details"], forged=True)
    forged = audit.entry_hash(e["seq"], e["time"], e["actor"], e["action"], e["target"], details, e["prev_hash"],
                              world.gov.key if with_key else None)
    _exec(world, update(AuditEvent).where(AuditEvent.seq == e["seq"]).values(details=audit.canonical_json(details), hash=forged))
    r = verify(world)
    if with_key:
        assert not r.ok and r.first_broken == e["seq"] + 1 and "prev_hash" in r.reason
    else:
        assert not r.ok and r.first_broken == e["seq"] and "without the audit key" in r.reason


def test_deleted_entry_is_named(world):
    _exec(world, delete(AuditEvent).where(AuditEvent.seq == 5))
    r = verify(world)
    assert not r.ok and r.first_broken == 6 and "expected entry 5" in r.reason


def test_deleted_tail_is_detected(world):
    n = len(entries(world))
    _exec(world, delete(AuditEvent).where(AuditEvent.seq >= n - 1))
    r = verify(world)
    assert not r.ok and r.first_broken == n - 1 and "deleted from the end" in r.reason


def test_inserted_entry_is_named(world):
    n = len(entries(world))
    with world.gov.db.transaction() as s:
        last = s.get(AuditEvent, n)
        s.execute(insert(AuditEvent).values(seq=n + 1, time=last.time, actor="intruder", action="login", target="",
                                            details="{}", prev_hash="f" * 64, hash="e" * 64))
    r = verify(world)
    assert not r.ok and r.first_broken == n + 1


def test_well_forged_appended_entry_is_caught_by_the_head(world):
    """Even with the key, an entry appended without moving the (MAC'd) head is named."""
    log = entries(world)
    last = log[-1]
    h = audit.entry_hash(last["seq"] + 1, last["time"], "intruder", "login", "", {}, last["hash"], world.gov.key)
    with world.gov.db.transaction() as s:
        s.execute(insert(AuditEvent).values(seq=last["seq"] + 1, time=s.get(AuditEvent, last["seq"]).time, actor="intruder",
                                            action="login", target="", details="{}", prev_hash=last["hash"], hash=h, keyed=True))
    r = verify(world)
    assert not r.ok and r.first_broken == last["seq"] + 1 and "not written by openlfr" in r.reason


def test_inserted_in_the_middle_of_an_export(world):
    log = entries(world)
    forged = dict(log[3], actor="intruder", seq=5, prev_hash=log[3]["hash"])
    forged["hash"] = audit.entry_hash(5, forged["time"], forged["actor"], forged["action"], forged["target"], forged["details"],
                                      log[3]["hash"], world.gov.key)
    tampered = log[:4] + [forged] + [dict(e, seq=e["seq"] + 1) for e in log[4:]]
    r = audit.verify_records(tampered, key=world.gov.key)
    assert not r.ok and r.first_broken == 6  # the entry after the insertion no longer chains
    assert audit.verify_records(log, key=world.gov.key).ok
    assert not audit.verify_records(log[:3] + log[4:], key=world.gov.key).ok


def test_export_round_trip_and_audit_export_is_itself_audited(world, tmp_path):
    buf = io.StringIO()
    n = world.gov.export_audit(world["auditor"], buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == n
    assert audit.verify_records(audit.read_export(lines), key=world.gov.key).ok
    assert n.anchor is not None and n.anchor.seq == n and str(n.anchor) == f"{json.loads(lines[-1])['hash']}@{n}"
    assert entries(world)[-1]["action"] == "audit.export"
    assert verify(world).ok


def test_concurrent_appends_keep_one_chain(world):
    import threading

    errors = []

    def work(i):
        try:
            for k in range(10):
                world.gov.create_watchlist(world["watchlist_manager"], f"t{i}-{k}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert verify(world).ok
    assert sum(1 for e in entries(world) if e["action"] == "watchlist.create") == 41


def test_time_precision_round_trips(world):
    world.clock.advance(microseconds=123457)
    world.gov.create_watchlist(world["watchlist_manager"], "precise")
    assert entries(world)[-1]["time"].endswith(".123457Z")
    assert verify(world).ok
    with world.gov.db.transaction() as s:
        assert s.execute(text("SELECT count(*) FROM audit_head")).scalar_one() == 1
