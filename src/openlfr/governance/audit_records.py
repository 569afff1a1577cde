"""Decision-bearing records checked against the audit chain that covers them.

The chain proves what was decided; this proves the tables still say the same. Someone with
database write access who changes a stored decision without going through openlfr (and so
without a keyed entry) is named by ``audit verify``:

- adjudications and their history (each row, in order, against the ``alert.adjudicate``
  entries of its alert: decision and reason) and engagement outcomes (``alert.outcome``);
- deployments: DPIA reference, signage and notices flags, threshold, window, cameras,
  watchlist, authorising officer and status (from ``deployment.create``, ``.threshold``,
  ``.authorise``, ``.start``, ``.stop``, ``.cancel``), and their authorisations;
- faces seen per deployment and camera (the running total of the last ``faces_seen.count``);
- volunteer passes (``volunteer.passes``).

Records about an alert or deployment count from its latest ``*.create`` entry (on a database
from before migration 0004, SQLite may have reused an id). Faces-seen counts of deployments
planned before the chain was keyed are not checked (those counts had no entries).
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.models import (
    Adjudication,
    AlertRow,
    AuditEvent,
    Authorisation,
    Deployment,
    Engagement,
    FacesSeen,
    User,
    VolunteerPass,
)
from ..store.types import utc

ACTIONS = ("alert.create", "alert.adjudicate", "alert.outcome", "deployment.create", "deployment.threshold",
           "deployment.authorise", "deployment.start", "deployment.stop", "deployment.cancel", "faces_seen.count",
           "volunteer.passes")
STATUS_AFTER = {"deployment.authorise": "authorised", "deployment.start": "active", "deployment.stop": "ended",
                "deployment.cancel": "cancelled"}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat()


def _id(target: str) -> int | None:
    _, _, n = target.partition(":")
    return int(n) if n.isdigit() else None


def check_records(s: Session) -> tuple[int | None, str] | None:
    """None when every covered record matches the chain; else (entry seq or None, what differs)."""
    alerts: dict[int, dict] = {}  # alert id -> {"adj": [(seq, details)], "out": [...]}
    deps: dict[int, dict] = {}
    faces: dict[tuple[int, str], tuple[int, int]] = {}  # (deployment, camera) -> (seq, total)
    passes: dict[tuple[int, int], tuple[int, int]] = {}
    q = select(AuditEvent.seq, AuditEvent.actor, AuditEvent.action, AuditEvent.target, AuditEvent.details, AuditEvent.keyed) \
        .where(AuditEvent.action.in_(ACTIONS)).order_by(AuditEvent.seq).execution_options(yield_per=2000)
    for seq, actor, action, target, details, keyed in s.execute(q):
        det = json.loads(details)
        n = _id(target)
        if action == "alert.create":
            alerts[n] = {"adj": [], "out": []}
        elif action in ("alert.adjudicate", "alert.outcome"):
            alerts.setdefault(n, {"adj": [], "out": []})["adj" if action == "alert.adjudicate" else "out"].append((seq, det, actor))
        elif action == "deployment.create":
            deps[n] = {"seq": seq, "create": det, "threshold": det.get("threshold"), "status": "planned",
                       "officer": det.get("authorising_officer_id"), "officer_name": None, "auths": [], "keyed": bool(keyed),
                       "last": seq}
        elif action.startswith("deployment.") and n in deps:
            d = deps[n]
            d["last"] = seq
            if action == "deployment.threshold":
                d["threshold"] = det.get("threshold")
            if action in STATUS_AFTER:
                d["status"] = STATUS_AFTER[action]
            if action == "deployment.authorise":
                d["auths"].append((seq, det, actor))
                if d["officer"] is None and d["officer_name"] is None:
                    d["officer_name"] = actor
        elif action == "faces_seen.count":
            faces[(int(det["deployment_id"]), str(det["camera"]))] = (seq, int(det["total"]))
        elif action == "volunteer.passes":
            passes[(n, int(det["subject_id"]))] = (seq, int(det["passes"]))

    users = dict(s.execute(select(User.id, User.name)).all())

    adjs: dict[int, list] = {}
    for r in s.execute(select(Adjudication).order_by(Adjudication.id).execution_options(yield_per=2000)).scalars():
        adjs.setdefault(r.alert_id, []).append(r)
    engs: dict[int, list] = {}
    for r in s.execute(select(Engagement).order_by(Engagement.id).execution_options(yield_per=2000)).scalars():
        engs.setdefault(r.alert_id, []).append(r)
    for a_id, in s.execute(select(AlertRow.id).order_by(AlertRow.id)):
        ent = alerts.get(a_id, {"adj": [], "out": []})
        rows = adjs.get(a_id, [])
        problem = _compare(f"alert {a_id}'s adjudications", rows, ent["adj"],
                           lambda r, det: r.decision == det.get("decision") and (r.reason or "") == (det.get("reason") or "")
                           and (r.note or "") == (det.get("note") or "") and (det.get("adjudication_id") in (None, r.id)),
                           lambda r: r.decision)
        if problem:
            return problem
        rows = engs.get(a_id, [])
        problem = _compare(f"alert {a_id}'s outcomes", rows, ent["out"],
                           lambda r, det: r.result == det.get("result") and r.outcome == det.get("outcome"),
                           lambda r: f"{r.result}/{r.outcome}")
        if problem:
            return problem

    for d in s.execute(select(Deployment).order_by(Deployment.id)).scalars():
        e = deps.get(d.id)
        if e is None:
            return None, f"deployment {d.id} has no deployment.create entry (written outside openlfr)"
        c = e["create"]
        officer = e["officer"] if e["officer"] is not None else next((i for i, nm in users.items() if nm == e["officer_name"]), None)
        expect = {
            "DPIA reference": (d.dpia_ref or "", c.get("dpia_ref") or ""),
            "signage confirmed": (bool(d.signage_confirmed), bool(c.get("signage_confirmed"))),
            "notices confirmed": (bool(d.notices_confirmed), bool(c.get("notices_confirmed"))),
            "threshold": (float(d.threshold), float(e["threshold"])),
            "start": (_iso(d.starts_at), c.get("starts_at")),
            "end": (_iso(d.ends_at), c.get("ends_at")),
            "cameras": (json.loads(d.cameras), c.get("cameras")),
            "watchlist": (d.watchlist_id, c.get("watchlist_id")),
            "authorising officer": (d.authorising_officer_id, officer),
            "status": (d.status, e["status"]),
        }
        for what, (now, logged) in expect.items():
            if now != logged:
                return e["last"], f"deployment {d.id}'s {what} reads {now!r}, the audit log says {logged!r} (changed outside openlfr)"
        rows = s.execute(select(Authorisation).where(Authorisation.deployment_id == d.id).order_by(Authorisation.id)).scalars().all()
        problem = _compare(f"deployment {d.id}'s authorisations", rows, e["auths"],
                           lambda r, det, _u=users: det.get("authorisation_id") == r.id and (det.get("note") or "") == (r.note or "")
                           and r.decision == "authorised",
                           lambda r: f"authorisation {r.id}", actor_of=lambda r, _u=users: _u.get(r.officer_id))
        if problem:
            return problem

    for dep_id, camera, count in s.execute(select(FacesSeen.deployment_id, FacesSeen.camera, FacesSeen.count)):
        logged = faces.pop((dep_id, camera), None)
        if logged is None:
            if deps.get(dep_id, {}).get("keyed", True):
                return None, f"faces seen on deployment {dep_id} camera {camera!r} ({count}) have no audit entry (written outside openlfr)"
            continue  # counted before the chain covered faces seen
        if int(count) != logged[1]:
            return logged[0], f"faces seen on deployment {dep_id} camera {camera!r} read {count}, the audit log says {logged[1]} (changed outside openlfr)"
    for (dep_id, camera), (seq, total) in faces.items():
        return seq, f"faces seen on deployment {dep_id} camera {camera!r} ({total}) were deleted outside openlfr"

    for dep_id, subj, n in s.execute(select(VolunteerPass.deployment_id, VolunteerPass.subject_id, VolunteerPass.passes)):
        logged = passes.get((dep_id, subj))
        if logged is None or logged[1] != int(n):
            return (logged[0] if logged else None), \
                f"volunteer passes of subject {subj} on deployment {dep_id} read {n}, the audit log says {logged[1] if logged else 'nothing'}"
    return None


def _compare(what: str, rows, entries, same, show, actor_of=None) -> tuple[int | None, str] | None:
    """Rows (in id order) against their entries (in seq order): same count, each pair the same."""
    for i, (r, (seq, det, actor)) in enumerate(zip(rows, entries)):
        if not same(r, det) or (actor_of is not None and actor_of(r) != actor):
            return seq, f"{what}: record {i + 1} reads {show(r)}, the audit log says {json.dumps(det, sort_keys=True)} (changed outside openlfr)"
    if len(rows) > len(entries):
        return None, f"{what}: {len(rows) - len(entries)} record(s) have no audit entry (written outside openlfr)"
    if len(rows) < len(entries):
        return entries[len(rows)][0], f"{what}: {len(entries) - len(rows)} record(s) in the audit log were deleted outside openlfr"
    return None
