"""Sessions and tokens follow their user (a real server on 127.0.0.1; SQLite and PostgreSQL):

- changing one's own password needs the current one and revokes the user's other sessions and
  tokens (the request's own credential stays); an administrator resets someone else's without
  it, audited as a reset, and all of that user's credentials end;
- a role change that removes ``deployment.run`` revokes the worker tokens it allowed;
- the login rate limit counts the connection's address: ``X-Forwarded-For`` is believed only
  from a configured proxy (``openlfr serve --trusted-proxy``), checked on the real command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from openlfr.governance.testing import PASSWORD, make_world
from openlfr.server import create_app
from openlfr.web.security import Tokens
from openlfr.web.testing import fake_enroller, free_port, live_server
from dbtesting import db_url, fast_passwords  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
NEW = "a brand new long password"


@pytest.fixture
def server(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url)
    app = create_app(db_url, w.clock, enroller=fake_enroller)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        yield w, c


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login(c: httpx.Client, name: str, password: str) -> str:
    r = c.post("/api/auth/token", json={"username": name, "password": password})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_own_password_change_needs_the_old_one_and_revokes_the_others(server):
    w, c = server
    first, second = login(c, "operator", PASSWORD), login(c, "operator", PASSWORD)
    worker = Tokens(w.gov).create(w["operator"], "worker", "cam", deployment_id=w.active_deployment())[0]
    r = c.put("/api/users/operator/password", json={"password": NEW}, headers=bearer(first))
    assert r.status_code == 422 and "needs your current password" in r.json()["detail"]
    r = c.put("/api/users/operator/password", json={"password": NEW, "old_password": "not it at all"}, headers=bearer(first))
    assert r.status_code == 403 and "current password is wrong" in r.json()["detail"]
    assert c.get("/api/auth/me", headers=bearer(second)).status_code == 200  # nothing changed yet
    r = c.put("/api/users/operator/password", json={"password": NEW, "old_password": PASSWORD}, headers=bearer(first))
    assert r.status_code == 200, r.text
    assert "2 other session(s) and token(s) revoked" in r.json()["detail"]
    assert c.get("/api/auth/me", headers=bearer(first)).status_code == 200  # the request's own token stays
    assert c.get("/api/auth/me", headers=bearer(second)).status_code == 401
    assert c.get("/api/worker/run", headers=bearer(worker)).status_code == 401
    assert c.post("/api/auth/token", json={"username": "operator", "password": PASSWORD}).status_code == 401
    login(c, "operator", NEW)


def test_an_administrator_resets_anothers_password_and_all_their_tokens_end(server):
    w, c = server
    admin = login(c, "administrator", PASSWORD)
    theirs = [login(c, "auditor", PASSWORD), login(c, "auditor", PASSWORD)]
    r = c.put("/api/users/auditor/password", json={"password": NEW}, headers=bearer(admin))
    assert r.status_code == 200 and "reset; 2 other" in r.json()["detail"]
    for t in theirs:
        assert c.get("/api/auth/me", headers=bearer(t)).status_code == 401
    assert c.get("/api/auth/me", headers=bearer(admin)).status_code == 200
    # Someone without user.change may not reset another's, even with the right old password.
    op = login(c, "operator", PASSWORD)
    r = c.put("/api/users/auditor/password", json={"password": PASSWORD, "old_password": NEW}, headers=bearer(op))
    assert r.status_code == 403
    auditor = login(c, "auditor", NEW)
    entries = c.get("/api/audit?limit=50", headers=bearer(auditor)).json()
    entries = entries["entries"] if isinstance(entries, dict) else entries
    reset = [e for e in entries if e["action"] == "user.change" and (e.get("details") or {}).get("password") == "reset"]
    assert reset and reset[0]["actor"] == "administrator" and reset[0]["details"]["tokens_revoked"] == 2
    revokes = [e for e in entries if e["action"] == "token.revoke" and (e.get("details") or {}).get("reason") == "password reset"]
    assert len(revokes) == 2 and all(e["actor"] == "administrator" for e in revokes)


def test_removing_a_role_revokes_the_worker_tokens_it_allowed(server):
    w, c = server
    d = w.active_deployment()
    op = login(c, "operator", PASSWORD)
    r = c.post("/api/tokens/worker", json={"deployment_id": d, "name": "cam host"}, headers=bearer(op))
    assert r.status_code == 201
    worker, worker_id = r.json()["token"], r.json()["id"]
    assert c.get("/api/worker/run", headers=bearer(worker)).status_code == 200
    admin = login(c, "administrator", PASSWORD)
    # A change that keeps deployment.run keeps the token.
    assert c.patch("/api/users/operator", json={"roles": ["operator", "auditor"]}, headers=bearer(admin)).status_code == 200
    assert c.get("/api/worker/run", headers=bearer(worker)).status_code == 200
    assert c.patch("/api/users/operator", json={"roles": ["auditor"]}, headers=bearer(admin)).status_code == 200
    assert c.get("/api/worker/run", headers=bearer(worker)).status_code == 401
    tokens = {t["id"]: t for t in c.get("/api/tokens?all=true", headers=bearer(admin)).json()}
    assert tokens[worker_id]["revoked_at"] is not None
    # Giving the role back does not bring the revoked token back.
    assert c.patch("/api/users/operator", json={"roles": ["operator"]}, headers=bearer(admin)).status_code == 200
    assert c.get("/api/worker/run", headers=bearer(worker)).status_code == 401


# -- X-Forwarded-For ------------------------------------------------------------------------------


def _serve(db: str, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OPENLFR_DB": db}
    env.pop("OPENLFR_TRUSTED_PROXY", None)
    p = subprocess.Popen([sys.executable, "-c", "from openlfr.cli import main; main()", "serve", "--port", str(port),
                          "--log-level", "warning", *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):  # until it answers (or died)
        if p.poll() is not None:
            raise AssertionError(f"openlfr serve exited: {p.stderr.read().decode()}")
        try:
            httpx.get(base + "/api/settings/retention", timeout=1)
            return p, base
        except httpx.TransportError:
            time.sleep(0.1)
    p.kill()
    raise AssertionError("openlfr serve did not answer")


@pytest.mark.parametrize("trusted", [False, True], ids=["no-proxy", "trusted-proxy"])
def test_login_limit_ignores_forwarded_for_unless_a_proxy_is_configured(tmp_path, trusted):
    from openlfr.governance import Governance

    db = f"sqlite:///{tmp_path / 'x.db'}"
    Governance(db).bootstrap_admin("admin", PASSWORD)
    p, base = _serve(db, *(["--trusted-proxy", "127.0.0.1"] if trusted else []))
    try:
        statuses = []
        for i in range(7):
            r = httpx.post(base + "/api/auth/token", json={"username": "admin", "password": "wrong password"},
                           headers={"X-Forwarded-For": f"203.0.113.{i + 1}"}, timeout=30)
            statuses.append(r.status_code)
    finally:
        p.terminate()
        p.wait(timeout=30)
    if trusted:  # each attempt from its own (proxied) address: none reaches the per-name limit of 5
        assert statuses == [401] * 7
    else:  # the header is ignored: one address, limited after 5 failures
        assert statuses == [401] * 5 + [429] * 2
