"""``openlfr token create|list|revoke`` and ``openlfr serve`` (its options; the server itself is
exercised by the API, worker and browser tests)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from openlfr.cli import app
from openlfr.governance.testing import PASSWORD, make_world
from openlfr.server import create_app
from dbtesting import backend_url, fast_passwords  # noqa: F401


def test_token_commands(tmp_path, fast_passwords):  # noqa: F811
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        d = w.active_deployment()
        runner = CliRunner()

        def run(*args, who="operator", code=0):
            r = runner.invoke(app, [str(a) for a in args] + ["--db", url],
                              env={"OPENLFR_USER": who, "OPENLFR_ACTOR_PASSWORD": PASSWORD, "OPENLFR_PASSWORD": PASSWORD})
            assert r.exit_code == code, r.output
            return r

        api = run("token", "create", "--name", "script").stdout.strip().splitlines()[-1]
        assert api.startswith("olfr_")
        client = TestClient(create_app(url))  # the CLI's clock is the system's: so is this app's
        assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {api}"}).json()["name"] == "operator"
        run("token", "create", "--worker", d, who="auditor", code=4)  # not an operator
        assert '"kind": "api"' in run("token", "list").stdout
        run("token", "list", "--all", who="operator", code=4)
        assert '"user": "operator"' in run("token", "list", "--all", who="auditor").stdout
        tid = client.get("/api/tokens", headers={"Authorization": f"Bearer {api}"}).json()[0]["id"]
        run("token", "revoke", tid, who="auditor", code=4)
        run("token", "revoke", tid)
        assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {api}"}).status_code == 401


def test_serve_help():
    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "--host" in r.output


def test_enrolment_through_the_api_with_the_real_engine(tmp_path, fast_passwords, astronaut):  # noqa: F811
    """The default enroller: the face engine's quality checks and report on uploaded images."""
    import cv2
    import numpy as np

    from openlfr.web.testing import role_tokens

    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        client = TestClient(create_app(url, w.clock))
        face = np.ascontiguousarray(astronaut[0:300, 100:360])
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
        h = {"Authorization": f"Bearer {role_tokens(w)['watchlist_manager']}"}
        form = {"ref": "EC-1", "name": "Eileen Collins", "category": "missing_or_vulnerable", "reason": "missing",
                "expires_at": "2030-03-01T00:00:00Z"}
        r = client.post("/api/watchlists/wanted/subjects", headers=h, data=form,
                        files=[("images", ("eileen.jpg", buf.tobytes(), "image/jpeg")), ("images", ("notes.txt", b"hello", "text/plain"))])
        assert r.status_code == 201, r.text
        rep = r.json()["report"]
        assert [a["path"] for a in rep["accepted"]] == ["eileen.jpg"] and rep["accepted"][0]["quality"] > 0.5
        assert rep["rejected"][0]["path"] == "notes.txt" and "not an image" in rep["rejected"][0]["reason"]
        # two faces of one size side by side, none dominant: rejected, with the reason (the whole
        # astronaut photo served here while HOG was the detector: it took the patch on her suit for
        # a second face, which RetinaFace does not)
        pair = np.ascontiguousarray(np.hstack([face, face[:, ::-1]]))
        ok, whole = cv2.imencode(".jpg", cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
        r = client.post("/api/watchlists/wanted/subjects", headers=h, data={**form, "ref": "EC-2"},
                        files=[("images", ("whole.jpg", whole.tobytes(), "image/jpeg"))])
        assert r.status_code == 422 and r.json()["error"] == "quality" and "faces found" in r.json()["report"]["rejected"][0]["reason"]
