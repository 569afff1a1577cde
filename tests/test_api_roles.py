"""The REST API: every endpoint for every role (allowed and refused), without credentials, with a
worker token; sessions and CSRF; login rate limiting; token revocation; the JSON error shape.

Runs on SQLite, and on PostgreSQL when OPENLFR_TEST_PG is set. Whether a role may is decided by
governance's role table (``Actor.can``), which the API must follow exactly: an allowed role gets
the endpoint's success status, a refused one 403 with a JSON reason, no credentials 401.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from openlfr.governance.roles import ROLES, Actor
from openlfr.governance.testing import PASSWORD, make_world
from openlfr.server import create_app
from openlfr.web.security import Tokens
from openlfr.web.testing import fake_enroller, jpeg, role_tokens
from dbtesting import db_url, fast_passwords  # noqa: F401


class Env:
    """A world with something for every endpoint to act on, and a client."""

    def __init__(self, url: str):
        self.w = w = make_world(url)
        self.d = w.active_deployment()  # the clock is now at its start
        self.alert1 = w.alert(self.d, w.subjects[0], track=1)
        self.alert2 = w.alert(self.d, w.subjects[1], track=2)
        w.gov.adjudicate(w["operator"], self.alert2, "true_alert")
        self.planned = w.plan(start_in=timedelta(0), name="to authorise")
        self.authorised = w.plan(start_in=timedelta(0), name="to start")
        w.gov.authorise_deployment(w["authorising_officer"], self.authorised)
        self.cancel = w.plan(start_in=timedelta(0), name="to cancel")
        self.ended = w.plan(start_in=timedelta(0), name="to publish")
        w.gov.authorise_deployment(w["authorising_officer"], self.ended)
        w.gov.start_deployment(w["operator"], self.ended)
        w.gov.stop_deployment(w["operator"], self.ended, "done")
        self.app = create_app(url, w.clock, enroller=fake_enroller)
        self.client = TestClient(self.app)
        self.tokens = role_tokens(w)
        self.worker_token = Tokens(w.gov).create(w["operator"], "worker", "cam host", deployment_id=self.d)[0]
        self.image_id = w.gov.list_subjects(w["auditor"], w.watchlist)[0]["images"][0]["id"]

    def endpoints(self, role: str) -> list[tuple]:
        """(method, path, permission, request kwargs, success status); destructive ones last."""
        now = self.w.clock.now()
        plan = {"name": f"plan {role}", "use_case": "wanted persons", "location": "Cardiff", "zone": "north", "starts_at": (now + timedelta(hours=1)).isoformat(),
                "ends_at": (now + timedelta(hours=3)).isoformat(), "cameras": ["cam-a"], "threshold": 0.6, "threshold_reason": "test", "watchlist": "wanted",
                "signage_confirmed": True, "notices_confirmed": True, "dpia_ref": "DPIA-1"}
        enrol = {"data": {"ref": f"N-{role}", "name": "New Person", "category": "wanted_by_courts", "reason": "warrant",
                          "expires_at": (now + timedelta(days=30)).isoformat()},
                 "files": [("images", ("face.jpg", jpeg(7), "image/jpeg"))]}
        other = "auditor" if role != "auditor" else "operator"
        s1, s2 = self.w.subjects
        return [
            ("GET", "/api/auth/me", None, {}, 200),
            ("GET", "/api/tokens", None, {}, 200),
            ("GET", "/api/tokens?all=true", "user.list", {}, 200),
            ("POST", "/api/tokens/worker", "deployment.run", {"json": {"deployment_id": self.d, "name": "x"}}, 201),
            ("GET", "/api/users", "user.list", {}, 200),
            ("POST", "/api/users", "user.create", {"json": {"name": f"new-{role}", "roles": ["auditor"], "password": PASSWORD}}, 201),
            ("PATCH", f"/api/users/{other}", "user.change", {"json": {"active": True}}, 200),
            ("PUT", f"/api/users/{other}/password", "user.change", {"json": {"password": PASSWORD}}, 200),
            ("GET", "/api/settings/retention", None, {}, 200),
            ("PUT", "/api/settings/retention", "retention.configure", {"json": {"days": 31}}, 200),
            ("POST", "/api/purge", "purge.run", {}, 200),
            ("GET", "/api/watchlists", "watchlist.read", {}, 200),
            ("POST", "/api/watchlists", "watchlist.create", {"json": {"name": f"wl-{role}"}}, 201),
            ("GET", "/api/watchlists/wanted/subjects", "watchlist.read", {}, 200),
            ("POST", "/api/watchlists/wanted/subjects", "watchlist.enrol", enrol, 201),
            ("GET", f"/api/images/{self.image_id}", "watchlist.read", {}, 200),
            ("GET", "/api/deployments", "deployment.read", {}, 200),
            ("POST", "/api/deployments", "deployment.plan", {"json": plan}, 201),
            ("GET", f"/api/deployments/{self.d}", "deployment.read", {}, 200),
            ("GET", f"/api/deployments/{self.d}/report", "deployment.read", {}, 200),
            ("POST", f"/api/deployments/{self.planned}/authorise", "deployment.authorise", {"json": {"note": "ok"}}, 200),
            ("POST", f"/api/deployments/{self.authorised}/start", "deployment.start", {}, 200),
            ("POST", f"/api/deployments/{self.cancel}/stop", "deployment.stop", {"json": {"reason": "not needed"}}, 200),
            ("GET", "/api/alerts", "alert.read", {}, 200),
            ("GET", f"/api/alerts?deployment_id={self.d}&limit=5", "alert.read", {}, 200),
            ("GET", f"/api/alerts/{self.alert1}", "alert.read", {}, 200),
            ("GET", f"/api/alerts/{self.alert1}/probe.jpg", "alert.read", {}, 200),
            ("GET", f"/api/alerts/{self.alert1}/reference", "alert.read", {}, 200),
            ("POST", f"/api/alerts/{self.alert1}/adjudication", "alert.adjudicate", {"json": {"decision": "false_alert"}}, 200),
            ("POST", f"/api/alerts/{self.alert2}/outcome", "alert.outcome", {"json": {"result": "confirmed", "outcome": "arrest"}}, 200),
            ("GET", "/api/stream?after=0&max_s=0", "deployment.read", {}, 200),
            ("GET", "/api/audit?limit=5", "audit.read", {}, 200),
            ("GET", "/api/audit/verify", "audit.read", {}, 200),
            ("GET", "/api/audit/export", "audit.read", {}, 200),
            ("POST", f"/api/subjects/{s2}/expire", "watchlist.expire", {}, 200),
            ("DELETE", f"/api/subjects/{s1}", "subject.erase", {}, 200),
            ("GET", f"/api/deployments/{self.d}/cameras", "deployment.read", {}, 200),
            ("GET", "/api/published", "deployment.read", {}, 200),
            ("POST", f"/api/deployments/{self.ended}/publish", "deployment.publish", {"json": {"authorising_rank": "Superintendent"}}, 200),
            ("DELETE", f"/api/deployments/{self.ended}/publish", "deployment.publish", {}, 200),
            ("POST", "/api/worker/cameras", "worker", {"json": {"host": "h", "cameras": [{"camera": "cam-a", "state": "up"}]}}, 200),
            ("GET", "/api/worker/run", "worker", {}, 200),
            ("GET", "/api/worker/status", "worker", {}, 200),
            ("POST", "/api/worker/faces-seen", "worker", {"json": {"idempotency_key": f"faces-{role}-1", "camera": "cam-a", "count": 3}}, 200),
            ("POST", "/api/worker/alerts", "worker", {"json": worker_alert(s2, key=f"alert-{role}-1")}, 200),
        ]


def worker_alert(subject_id: int, key: str, track: str = "9", camera: str = "cam-a", distance: float = 0.41) -> dict:
    import base64

    import numpy as np

    v = np.random.default_rng(5).normal(size=128).astype("<f4")
    return {"idempotency_key": key, "camera": camera, "track": track, "subject_id": subject_id, "distance": distance,
            "frame": 12, "media_time": 3.5, "crop": base64.b64encode(jpeg(3)).decode(), "template": base64.b64encode(v.tobytes()).decode()}


def allowed(actor: Actor | None, permission: str | None, worker: bool) -> bool:
    if permission == "worker":
        return worker
    if worker or actor is None:
        return False
    return permission is None or actor.can(permission)


def covered_paths(env: Env) -> set[tuple[str, str]]:
    out = set()
    for method, path, *_ in env.endpoints("administrator"):
        p = path.split("?")[0]
        p = re.sub(r"/\d+(?=/|$)", "/{id}", p)
        out.add((method, p))
    return out


@pytest.fixture
def env(db_url, fast_passwords):  # noqa: F811
    """SQLite, and PostgreSQL when OPENLFR_TEST_PG is set (the role matrix)."""
    e = Env(db_url)
    yield e
    e.client.close()


@pytest.fixture
def lite(tmp_path, fast_passwords):  # noqa: F811
    """SQLite only (the rest: the API layer does not depend on the database kind)."""
    from dbtesting import backend_url

    with backend_url("sqlite", tmp_path) as url:
        e = Env(url)
        yield e
        e.client.close()


@pytest.mark.parametrize("who", list(ROLES) + ["worker", "nobody"])
def test_role_matrix(env, who):
    """Every endpoint: allowed -> its success status; refused -> 403 JSON; no credentials -> 401 JSON."""
    if who == "worker":
        headers, actor = {"Authorization": f"Bearer {env.worker_token}"}, None
    elif who == "nobody":
        headers, actor = {}, None
    else:
        headers, actor = {"Authorization": f"Bearer {env.tokens[who]}"}, env.w[who]
    results = []
    for method, path, perm, kwargs, ok in env.endpoints(who):
        r = env.client.request(method, path, headers=headers, **kwargs)
        if who == "nobody":
            expect = 401
        else:
            expect = ok if allowed(actor, perm, who == "worker") else 403
        if r.status_code != expect:
            results.append(f"{method} {path}: {r.status_code} (expected {expect}) {r.text[:200]}")
            continue
        if expect >= 400:
            body = r.json()
            assert body["error"] == ("unauthenticated" if expect == 401 else "forbidden") and body["detail"], (path, body)
    assert not results, f"{who}:\n" + "\n".join(results)


def test_matrix_covers_every_endpoint(lite):
    env = lite
    """The matrix above names every operation of the OpenAPI document (and /api/auth/token, /logout below)."""
    spec = env.client.get("/openapi.json").json()
    documented = {(m.upper(), re.sub(r"\{[^}]+\}", "{id}", p)) for p, ops in spec["paths"].items() for m in ops}
    covered = covered_paths(env) | {("POST", "/api/auth/token"), ("POST", "/api/auth/logout"), ("DELETE", "/api/tokens/{id}"),
                                    ("PATCH", "/api/users/{id}"), ("PUT", "/api/users/{id}/password"),
                                    ("GET", "/api/watchlists/{id}/subjects"), ("POST", "/api/watchlists/{id}/subjects"),
                                    ("POST", "/api/watchlists/{id}/backfill-second")}  # its roles: test_backfill_api
    assert documented - covered == set()


def test_token_login_logout_and_revocation(lite):
    env = lite
    c = env.client
    r = c.post("/api/auth/token", json={"username": "operator", "password": PASSWORD, "name": "script"})
    assert r.status_code == 201 and r.json()["token"].startswith("olfr_")
    tok, tid = r.json()["token"], r.json()["id"]
    h = {"Authorization": f"Bearer {tok}"}
    assert c.get("/api/auth/me", headers=h).json()["roles"] == ["operator"]
    # someone else's token cannot be revoked by an operator; an administrator can
    r = c.delete(f"/api/tokens/{tid}", headers={"Authorization": f"Bearer {env.tokens['auditor']}"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert c.delete(f"/api/tokens/{tid}", headers={"Authorization": f"Bearer {env.tokens['administrator']}"}).status_code == 200
    r = c.get("/api/auth/me", headers=h)
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated" and r.headers["www-authenticate"] == "Bearer"
    # logout revokes the token used
    tok2 = c.post("/api/auth/token", json={"username": "auditor", "password": PASSWORD}).json()["token"]
    h2 = {"Authorization": f"Bearer {tok2}"}
    assert c.post("/api/auth/logout", headers=h2).status_code == 200
    assert c.get("/api/auth/me", headers=h2).status_code == 401
    # a disabled user's tokens stop working at once; their roles are read live
    h3 = {"Authorization": f"Bearer {env.tokens['auditor']}"}
    admin = {"Authorization": f"Bearer {env.tokens['administrator']}"}
    assert c.patch("/api/users/auditor", json={"roles": ["auditor", "operator"]}, headers=admin).status_code == 200
    assert "alert.adjudicate" in c.get("/api/auth/me", headers=h3).json()["permissions"]
    assert c.patch("/api/users/auditor", json={"active": False}, headers=admin).status_code == 200
    assert c.get("/api/auth/me", headers=h3).status_code == 401
    # revocations and token creations are audited
    actions = [e["action"] for e in c.get("/api/audit?limit=200", headers=admin).json()["entries"]]
    assert actions.count("token.revoke") >= 2 and "token.create" in actions


def test_bad_credentials_and_header(lite):
    env = lite
    c = env.client
    r = c.post("/api/auth/token", json={"username": "operator", "password": "wrong password"})
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    assert c.get("/api/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401
    assert c.get("/api/auth/me", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    assert c.get("/api/auth/me", headers={"Authorization": "Bearer " + "x" * 5000}).status_code == 401


def test_login_rate_limited(lite):
    env = lite
    c = env.client
    for _ in range(5):
        assert c.post("/api/auth/token", json={"username": "operator", "password": "wrong password"}).status_code == 401
    r = c.post("/api/auth/token", json={"username": "operator", "password": PASSWORD})
    assert r.status_code == 429 and r.json()["error"] == "rate_limited" and int(r.headers["retry-after"]) > 0
    # another user from the same address is not locked out by these
    assert c.post("/api/auth/token", json={"username": "auditor", "password": PASSWORD}).status_code == 201
    # the console login shares the limit
    page = c.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post("/login", data={"username": "operator", "password": PASSWORD, "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 429


def _session(c: TestClient, user: str) -> str:
    page = c.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = c.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c.get("/api/auth/me").json()["csrf_token"]


def test_session_cookie_and_csrf(lite):
    env = lite
    c = env.client
    csrf = _session(c, "operator")
    assert c.cookies.get("openlfr_session")
    # state-changing API calls made with the cookie need the CSRF header
    r = c.post(f"/api/alerts/{env.alert1}/adjudication", json={"decision": "true_alert"})
    assert r.status_code == 403 and r.json()["error"] == "csrf"
    r = c.post(f"/api/alerts/{env.alert1}/adjudication", json={"decision": "true_alert"}, headers={"X-CSRF-Token": "nope"})
    assert r.status_code == 403
    r = c.post(f"/api/alerts/{env.alert1}/adjudication", json={"decision": "true_alert"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["adjudication"] == "true_alert"
    # console forms too
    r = c.post(f"/console/alerts/{env.alert1}/adjudicate", data={"decision": "false_alert"}, follow_redirects=False)
    assert r.status_code == 403
    r = c.post(f"/console/alerts/{env.alert1}/adjudicate", data={"decision": "false_alert", "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303  # refused by the rule (a change needs a reason): back with a message
    assert c.get(f"/api/alerts/{env.alert1}").json()["adjudication"] == "true_alert"
    r = c.post(f"/console/alerts/{env.alert1}/adjudicate", data={"decision": "false_alert", "reason": "wrong key", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303
    assert c.get(f"/api/alerts/{env.alert1}").json()["adjudication"] == "false_alert"
    # the login form needs its own token
    c2 = TestClient(env.app)
    r = c2.post("/login", data={"username": "operator", "password": PASSWORD, "csrf_token": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login" and "openlfr_session" not in r.cookies
    # logout ends the session on the server
    r = c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    c.cookies.clear()
    assert c.get("/api/auth/me").status_code == 401


@pytest.mark.parametrize("role", ROLES)
def test_console_pages_per_role(lite, role):
    env = lite
    """Each role's navigation lists only what it may open; every other page answers 403."""
    c = TestClient(env.app)
    _session(c, role)
    actor = env.w[role]
    pages = {"/console/alerts": "alert.read", "/console/deployments": "deployment.read", "/console/watchlists": "watchlist.read",
             "/console/audit": "audit.read", "/console/users": "user.list", f"/console/alerts/{env.alert1}": "alert.read",
             f"/console/deployments/{env.d}": "deployment.read", f"/console/deployments/{env.d}/report": "deployment.read",
             "/console/watchlists/wanted": "watchlist.read", "/console/tokens": None}
    home = c.get("/console")
    assert home.status_code == 200
    nav = set(re.findall(r'<li><a href="(/console/[a-z]+)"', home.text))
    for url, perm in pages.items():
        ok = perm is None or actor.can(perm)
        r = c.get(url)
        assert r.status_code == (200 if ok else 403), (role, url, r.status_code)
        assert r.headers["content-type"].startswith("text/html")
        if url.count("/") == 2:
            assert (url in nav) == ok, (role, url, nav)
    assert "Content-Security-Policy" in home.headers


def test_errors_are_json_and_validated(lite):
    env = lite
    c = env.client
    h = {"Authorization": f"Bearer {env.tokens['operator']}"}
    r = c.get("/api/alerts/99999", headers=h)
    assert r.status_code == 404 and r.json() == {"detail": "no alert 99999", "error": "not_found"}
    r = c.get("/api/alerts/99999999999999999999", headers=h)
    assert r.status_code == 422 and r.json()["error"] == "validation"
    r = c.post(f"/api/alerts/{env.alert1}/adjudication", json={"decision": "maybe"}, headers=h)
    assert r.status_code == 422 and "decision" in r.json()["detail"]
    r = c.post(f"/api/alerts/{env.alert1}/adjudication", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 422
    r = c.post("/api/deployments", json={"name": "x\x00y"}, headers=h)
    assert r.status_code == 422
    r = c.post(f"/api/deployments/{env.d}/start", headers=h)
    assert r.status_code == 409 and r.json()["error"] == "refused"
    r = c.get("/api/nothing-here", headers=h)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    wm = {"Authorization": f"Bearer {env.tokens['watchlist_manager']}"}
    r = c.post("/api/watchlists/wanted/subjects", headers=wm, data={"ref": "Q", "name": "Q", "category": "risk_of_harm", "reason": "r",
                                                                     "expires_at": "2031-01-01"}, files=[("images", ("a.txt", b"hello", "text/plain"))])
    assert r.status_code == 422 and r.json()["error"] == "quality" and r.json()["report"]["rejected"][0]["path"] == "a.txt"


def test_enrolment_report_and_erasure(lite):
    env = lite
    c = env.client
    wm = {"Authorization": f"Bearer {env.tokens['watchlist_manager']}"}
    r = c.post("/api/watchlists/wanted/subjects", headers=wm,
               data={"ref": "E1", "name": "Eve", "category": "missing_or_vulnerable", "reason": "missing since Monday",
                     "expires_at": "2030-06-01T00:00:00Z", "source": "family photo"},
               files=[("images", ("good.jpg", jpeg(11), "image/jpeg")), ("images", ("bad.txt", b"text", "text/plain"))])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["images_added"] == 1 and [x["path"] for x in body["report"]["accepted"]] == ["good.jpg"]
    assert body["report"]["rejected"] == [{"path": "bad.txt", "reason": "not an image (cannot be decoded)"}]
    sid = body["id"]
    assert c.post(f"/api/subjects/{sid}/expire", headers=wm).json()["id"] == sid
    r = c.delete(f"/api/subjects/{sid}", headers=wm)
    assert r.status_code == 200 and r.json()["images"] == 1
    assert c.delete(f"/api/subjects/{sid}", headers=wm).status_code == 404
