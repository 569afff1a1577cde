"""Each action is allowed only to its role: the full role x action matrix, on both databases."""

from __future__ import annotations

import functools
import inspect
import io
from datetime import timedelta

import pytest

from openlfr.governance import Actor, Governance, PermissionDenied
from openlfr.governance.roles import PERMISSIONS, ROLES
from openlfr.live.sink import AlertRecord
from openlfr.governance.testing import FAKE_JPEG, image, make_world, template
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)

SYSTEM = "system"

# The policy, written out (not derived from roles.PERMISSIONS, which it checks).
EXPECTED: dict[str, set[str]] = {
    "create_user": {"administrator"},
    "set_roles": {"administrator"},
    "set_active": {"administrator"},
    "set_password": {"administrator"},  # someone else's; one's own is always allowed
    "list_users": {"administrator", "auditor"},
    "create_watchlist": {"watchlist_manager"},
    "enrol_subject": {"watchlist_manager"},
    "backfill_second_templates": {"watchlist_manager"},
    "list_watchlists": {"watchlist_manager", "authorising_officer", "auditor"},
    "list_subjects": {"watchlist_manager", "authorising_officer", "auditor"},
    "expire_subject": {"watchlist_manager"},
    "erase_subject": {"watchlist_manager"},
    "plan_deployment": {"operator"},
    "authorise_deployment": {"authorising_officer"},
    "start_deployment": {"operator"},
    "stop_deployment": {"operator", "authorising_officer", SYSTEM},
    "get_deployment": set(ROLES) | {SYSTEM},
    "list_deployments": set(ROLES) | {SYSTEM},
    "faces_seen": set(ROLES) | {SYSTEM},
    "open_run": {"operator", SYSTEM},
    "record_alert": {"operator", SYSTEM},
    "count_faces_seen": {"operator", SYSTEM},
    "list_alerts": {"operator", "engagement_officer", "auditor", "supervisor"},
    "alert_media": {"operator", "engagement_officer", "auditor", "supervisor"},
    "adjudications": {"operator", "engagement_officer", "auditor", "supervisor"},
    # operators decide; supervisors revise (governance/adjudication.py); the same decision again is a no-op
    "adjudicate": {"operator", "supervisor"},
    "record_outcome": {"engagement_officer"},
    "set_retention_days": {"administrator"},
    "change_setting": {"administrator"},
    "purge": {"administrator", SYSTEM},
    "verify_audit": {"auditor", "administrator"},
    "export_audit": {"auditor", "administrator"},
    # transparency (openlfr.transparency): calibrated thresholds, volunteers, a deployment's history
    "store_threshold_evidence": {"operator"},
    "record_volunteer_passes": {"operator"},
    "deployment_history": {"auditor", "administrator"},
}


@functools.lru_cache(maxsize=1)
def _engine():
    """RetinaFace with the second model, for the backfill (made once, only when a role may run it)."""
    from openlfr.engine.pipeline import FaceEngine

    return FaceEngine()


def _actions(w, ctx):
    g, now = w.gov, w.clock.now()
    n = iter(range(10_000))
    return {
        "create_user": lambda a: g.create_user(a, f"u{next(n)}", ["auditor"], "long enough password"),
        "set_roles": lambda a: g.set_roles(a, "engagement_officer", ["engagement_officer"]),
        "set_active": lambda a: g.set_active(a, "engagement_officer", True),
        "set_password": lambda a: g.set_password(a, "target", "correct horse battery"),
        "list_users": lambda a: g.list_users(a),
        "create_watchlist": lambda a: g.create_watchlist(a, f"wl{next(n)}"),
        "enrol_subject": lambda a: g.enrol_subject(a, w.watchlist, f"R{next(n)}", "X", "risk_of_harm", "r",
                                                   now + timedelta(days=3), [image(500 + next(n))]),
        "backfill_second_templates": lambda a: g.backfill_second_templates(a, w.watchlist, _engine()),
        "list_watchlists": lambda a: g.list_watchlists(a),
        "list_subjects": lambda a: g.list_subjects(a, w.watchlist),
        "expire_subject": lambda a: g.expire_subject(a, ctx["spare_subject"], now + timedelta(days=20)),
        "erase_subject": lambda a: g.erase_subject(a, ctx["erasable"].pop()),
        "plan_deployment": lambda a: g.plan_deployment(a, name="p", use_case="u", location="l", zone="z", starts_at=now,
                                                       ends_at=now + timedelta(hours=1), cameras=["c"], threshold=0.5, threshold_reason="t",
                                                       watchlist=w.watchlist, signage_confirmed=True, notices_confirmed=True, dpia_ref="D"),
        "authorise_deployment": lambda a: g.authorise_deployment(a, ctx["plans"].pop()),
        "start_deployment": lambda a: g.start_deployment(a, ctx["authorised"].pop()),
        "stop_deployment": lambda a: g.stop_deployment(a, ctx["stoppable"].pop()),
        "get_deployment": lambda a: g.get_deployment(a, ctx["active"]),
        "list_deployments": lambda a: g.list_deployments(a),
        "faces_seen": lambda a: g.faces_seen(a, ctx["active"]),
        "open_run": lambda a: g.open_run(a, ctx["active"]),
        "record_alert": lambda a: g.record_alert(a, ctx["active"], AlertRecord(
            camera="cam-a", track=next(n), subject_id=w.subjects[0], distance=0.3, crop=FAKE_JPEG, template=template(3))),
        "count_faces_seen": lambda a: g.count_faces_seen(a, ctx["active"], "cam-a", 1),
        "list_alerts": lambda a: g.list_alerts(a),
        "alert_media": lambda a: g.alert_media(a, ctx["alert"]),
        "adjudications": lambda a: g.adjudications(a, ctx["alert"]),
        "adjudicate": lambda a: g.adjudicate(a, ctx["alert"], "true"),
        "record_outcome": lambda a: g.record_outcome(a, ctx["alert"], "confirmed", "arrest"),
        "set_retention_days": lambda a: g.set_retention_days(a, 31),
        "change_setting": lambda a: g.change_setting(a, "camera_down_warning_s", 30.0, 30.0),
        "purge": lambda a: g.purge(a),
        "verify_audit": lambda a: g.verify_audit(a),
        "export_audit": lambda a: g.export_audit(a, io.StringIO()),
        "store_threshold_evidence": lambda a: g.store_threshold_evidence(a, ctx["evidence_plan"], {
            "threshold": 0.45, "watchlist_size": 2, "target_fpir": 0.001}),
        "record_volunteer_passes": lambda a: g.record_volunteer_passes(a, ctx["active"], ctx["volunteer"], 3),
        "deployment_history": lambda a: g.deployment_history(a, ctx["active"]),
    }


def test_the_policy_is_the_code():
    """roles.PERMISSIONS grants exactly what EXPECTED says, and every acting method is listed."""
    acting = {name for name, fn in inspect.getmembers(Governance, inspect.isfunction)
              if not name.startswith("_") and "actor" in inspect.signature(fn).parameters}
    acting.discard("authorize")  # the check itself (for callers that check before acting), not an action
    assert acting == set(EXPECTED), f"methods missing from the matrix: {acting ^ set(EXPECTED)}"
    assert set(PERMISSIONS["deployment.enforce"]) == {SYSTEM}


def test_role_action_matrix(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url, subjects=1)
    g = w.gov
    every = list(ROLES) + [SYSTEM]
    actors = {r: w[r] for r in ROLES} | {SYSTEM: Actor.system("test")}
    g.create_user(w["administrator"], "target", ["auditor"], "long enough password")
    volunteer = w.enrol("V1", seed=59, volunteer=True)
    active = w.active_deployment(length=timedelta(days=2))
    alert = w.alert(active, w.subjects[0])
    g.adjudicate(w["operator"], alert, "true")
    ctx = {
        "active": active,
        "alert": alert,
        "spare_subject": w.enrol("SPARE", seed=60),
        "erasable": [w.enrol(f"E{i}", seed=70 + i) for i in range(len(every))],
        "plans": [w.plan(start_in=timedelta(minutes=1)) for _ in every],
        "stoppable": [w.plan(start_in=timedelta(minutes=1)) for _ in every],
        "authorised": [],
        "volunteer": volunteer,
        "evidence_plan": w.plan(start_in=timedelta(minutes=1)),
    }
    for _ in every:
        d = w.plan(start_in=timedelta(0), length=timedelta(hours=6))
        g.authorise_deployment(w["authorising_officer"], d)
        ctx["authorised"].append(d)
    actions = _actions(w, ctx)
    wrong = []
    for name, expected in EXPECTED.items():
        for role in every:
            try:
                actions[name](actors[role])
                allowed, error = True, None
            except PermissionDenied:
                allowed, error = False, None
            except Exception as e:  # noqa: BLE001  (a rule may refuse an allowed role; not a permission)
                allowed, error = True, e
            if allowed != (role in expected):
                wrong.append(f"{name} by {role}: {'allowed' if allowed else 'denied'}")
            if allowed and error is not None:
                wrong.append(f"{name} by {role}: allowed but failed: {error!r}")
    assert not wrong, "\n".join(wrong)
    # every refusal was audited
    import json

    buf = io.StringIO()
    g.export_audit(w["auditor"], buf)
    denied = [json.loads(x) for x in buf.getvalue().splitlines() if '"permission.denied"' in x]
    n_denied = sum(len(set(every) - e) for e in EXPECTED.values())
    assert len(denied) == n_denied
    assert g.verify_audit(w["auditor"]).ok


def test_multiple_roles_and_no_role(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url, subjects=1)
    g = w.gov
    g.create_user(w["administrator"], "wm-auditor", ["watchlist_manager", "auditor"], "long enough password")
    both = g.login("wm-auditor", "long enough password")
    g.create_watchlist(both, "second")
    assert g.verify_audit(both).ok
    with pytest.raises(PermissionDenied):
        g.plan_deployment(both, name="p", use_case="u", location="l", zone="z", starts_at=w.clock.now(),
                          ends_at=w.clock.now() + timedelta(hours=1), cameras=["c"], threshold=0.5, threshold_reason="t", watchlist="second")
    nobody = Actor("nobody")
    with pytest.raises(PermissionDenied):
        g.list_deployments(nobody)
