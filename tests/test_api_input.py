"""Hostile input against a real server (uvicorn on 127.0.0.1) and database (SQLite and PostgreSQL):

- stored XSS: a face JPEG with ``<script>`` in a comment, uploaded as ``poly.html``, is served as
  ``image/jpeg`` re-encoded (no script bytes), with ``nosniff`` and a CSP; every response carries
  both, the API's JSON and errors included;
- unbounded bodies: chunked requests (no Content-Length) are cut off at their route class's limit
  with 413, and a multipart upload without credentials gets 401, in both cases without the server
  reading what the client had to send (the sender, bounded and local, is stopped by the answer).
"""

from __future__ import annotations

import io
import select
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from openlfr.governance.testing import make_world
from openlfr.server import create_app
from openlfr.web.guard import BodyLimits
from openlfr.web.testing import fake_enroller, live_server, role_tokens
from dbtesting import backend_url, db_url, fast_passwords  # noqa: F401

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture(scope="module")
def engine():
    from openlfr.engine.pipeline import FaceEngine

    return FaceEngine()  # the engine is part of the product: failing to build it fails the test


def polyglot(astronaut) -> bytes:
    """A real face JPEG with HTML in its comment and after its end."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(astronaut[0:300, 100:350])).save(
        buf, "JPEG", quality=92, comment=b"<html><script>alert(document.cookie)</script></html>")
    return buf.getvalue() + b"<script>alert(2)</script>"


def assert_secured(r: httpx.Response) -> None:
    assert r.headers.get("x-content-type-options") == "nosniff", (r.request.url, dict(r.headers))
    csp = r.headers.get("content-security-policy", "")
    assert "default-src" in csp and "frame-ancestors 'none'" in csp, (r.request.url, csp)
    if not r.headers.get("content-type", "").startswith("text/html"):
        assert "default-src 'none'" in csp and "sandbox" in csp


def test_stored_xss_polyglot_is_served_as_a_clean_jpeg(db_url, fast_passwords, engine, astronaut):  # noqa: F811
    from openlfr.web.enrol import FaceEnroller

    w = make_world(db_url)
    app = create_app(db_url, w.clock, enroller=FaceEnroller(engine=engine))
    tokens = role_tokens(w)
    data = polyglot(astronaut)
    assert data.count(b"<script>") == 2
    with live_server(app) as base, httpx.Client(base_url=base, timeout=60) as c:
        wm = {"Authorization": f"Bearer {tokens['watchlist_manager']}"}
        r = c.post("/api/watchlists/wanted/subjects", headers=wm, files=[("images", ("poly.html", data, "text/html"))],
                   data={"ref": "X1", "name": "Eileen Collins", "category": "wanted_by_courts", "reason": "test",
                         "expires_at": (w.clock.now() + timedelta(days=3)).isoformat()})
        assert r.status_code == 201, r.text
        assert_secured(r)
        subj = next(s for s in c.get("/api/watchlists/wanted/subjects", headers=wm).json() if s["ref"] == "X1")
        image_id = subj["images"][0]["id"]
        auditor = {"Authorization": f"Bearer {tokens['auditor']}"}
        r = c.get(f"/api/images/{image_id}", headers=auditor)
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert b"<script" not in r.content and b"<html" not in r.content
        assert r.content.startswith(b"\xff\xd8")
        with Image.open(io.BytesIO(r.content)) as im:
            assert im.format == "JPEG" and im.size == (250, 300)
        assert_secured(r)
        # The alert's reference route serves the same clean image.
        d = w.active_deployment()
        alert = w.alert(d, subj["id"], track=1)
        r = c.get(f"/api/alerts/{alert}/reference", headers=auditor)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and b"<script" not in r.content
        assert_secured(r)


def test_every_response_has_nosniff_and_a_csp(tmp_path, fast_passwords):  # noqa: F811
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        app = create_app(url, w.clock, enroller=fake_enroller)
        token = role_tokens(w)["auditor"]
        with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as c:
            auth = {"Authorization": f"Bearer {token}"}
            d = w.active_deployment()
            alert = w.alert(d, w.subjects[0], track=1)
            for method, path, kw in [
                ("GET", "/api/auth/me", {"headers": auth}),  # JSON
                ("GET", "/api/auth/me", {}),  # 401
                ("GET", "/api/nothing", {}),  # 404
                ("POST", "/api/auth/token", {"json": {"username": 1}}),  # 422
                ("GET", "/openapi.json", {}),
                ("GET", f"/api/alerts/{alert}/probe.jpg", {"headers": auth}),  # an image
                ("GET", "/login", {}),  # a console page
                ("GET", "/static/console.js", {}),
                ("GET", "/console/alerts", {"follow_redirects": False}),  # a redirect to the login
            ]:
                r = c.request(method, path, **kw)
                assert_secured(r)
            r = c.get(f"/api/alerts/{alert}/probe.jpg", headers=auth)
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


# -- bodies ------------------------------------------------------------------------------------


def stream(base: str, method: str, path: str, headers: dict[str, str], total: int, chunk: int = 64 * KiB,
           prefix: bytes = b"") -> tuple[int, int, bytes]:
    """Send a chunked body of up to ``total`` bytes while watching for an answer; stop at the first.

    Returns (HTTP status, bytes of body sent, the response). The server answering early (and
    closing) is what stops the sender: ``sent < total`` means it did not wait for the whole body.
    """
    u = urlsplit(base)
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    head = f"{method} {path} HTTP/1.1\r\nHost: {u.hostname}\r\nTransfer-Encoding: chunked\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode() + (f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n" if prefix else b""))
    sock.setblocking(False)
    payload = b"x" * chunk
    frame = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    sent, pending, done = 0, b"", False
    try:
        while True:
            r, wr, _ = select.select([sock], [] if done else [sock], [], 30)
            if not r and not wr:
                raise AssertionError(f"no answer and no progress after {sent} bytes")
            if r:
                break
            if not pending:
                if sent >= total:
                    pending, done = b"0\r\n\r\n", True
                else:
                    pending = frame
                    sent += len(payload)
            try:
                n = sock.send(pending)
                pending = pending[n:]
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.setblocking(True)
        response = b""
        while b"\r\n\r\n" not in response or len(response) < response.index(b"\r\n\r\n") + 4 + _length(response):
            part = sock.recv(65536)
            if not part:
                break
            response += part
    finally:
        sock.close()
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    return status, sent, response


def _length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return int(v)
    return 0


MULTIPART = "multipart/form-data; boundary=XyZ"
PART = b'--XyZ\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'


@pytest.fixture
def small_server(db_url, fast_passwords):  # noqa: F811
    w = make_world(db_url)
    app = create_app(db_url, w.clock, enroller=fake_enroller, body_limits=BodyLimits(default=64 * KiB, worker=128 * KiB, upload=1 * MiB))
    tokens = role_tokens(w)
    with live_server(app) as base:
        yield base, tokens


def test_chunked_json_past_the_limit_is_refused_unread(small_server):
    base, tokens = small_server
    total = 64 * MiB
    status, sent, resp = stream(base, "POST", "/api/auth/token", {"Content-Type": "application/json"}, total)
    assert status == 413, resp[:300]
    assert b'"error":"too_large"' in resp and b"65,536 bytes" in resp.replace(b" ", b" ")
    assert b"connection: close" in resp.lower()
    assert b"x-content-type-options: nosniff" in resp.lower()
    assert sent < total // 4, f"the client had to send {sent} of {total} bytes"


def test_chunked_upload_without_credentials_is_refused_before_reading(small_server):
    base, _ = small_server
    total = 64 * MiB
    status, sent, resp = stream(base, "POST", "/api/watchlists/wanted/subjects", {"Content-Type": MULTIPART}, total, prefix=PART)
    assert status == 401, resp[:300]
    assert b'"error":"unauthenticated"' in resp
    assert sent < total // 4, f"the client had to send {sent} of {total} bytes"
    # A wrong token is no better than none; and a declared length does not get read either.
    status, sent, resp = stream(base, "POST", "/api/watchlists/wanted/subjects",
                                {"Content-Type": MULTIPART, "Authorization": "Bearer olfr_nonsense"}, total)
    assert status == 401 and sent < total // 4
    r = httpx.post(base + "/api/watchlists/wanted/subjects", headers={"Content-Type": MULTIPART}, content=b"--XyZ--\r\n")
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"


def test_chunked_upload_with_credentials_is_limited(small_server):
    base, tokens = small_server
    total = 64 * MiB
    status, sent, resp = stream(base, "POST", "/api/watchlists/wanted/subjects",
                                {"Content-Type": MULTIPART, "Authorization": f"Bearer {tokens['watchlist_manager']}"}, total, prefix=PART)
    assert status == 413, resp[:300]
    assert b"1 MiB" in resp
    assert sent < total // 4


def test_declared_lengths_are_checked_per_route_class(small_server):
    base, tokens = small_server
    auth = {"Authorization": f"Bearer {tokens['administrator']}"}
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/api/auth/token", content=b"{" + b" " * (70 * KiB) + b"}", headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        # 70 KiB is over the JSON limit and under the worker limit: the worker route answers for itself (401).
        r = c.post("/api/worker/faces-seen", content=b"{" + b" " * (70 * KiB) + b"}", headers={"Content-Type": "application/json"})
        assert r.status_code == 401
        r = c.post("/api/auth/token", json={"username": "administrator", "password": "x"})
        assert r.status_code == 401  # small bodies go through
        r = c.get("/api/auth/me", headers=auth)
        assert r.status_code == 200


# -- the API document ---------------------------------------------------------------------------


def test_openapi_describes_422_as_sent(tmp_path, fast_passwords):  # noqa: F811
    """Every 422 in /openapi.json is ``ValidationErrorOut`` (``detail`` a string), and real 422s validate against it."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    with backend_url("sqlite", tmp_path) as url:
        w = make_world(url)
        app = create_app(url, w.clock, enroller=fake_enroller)
        token = role_tokens(w)["administrator"]
        with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as c:
            spec = c.get("/openapi.json").json()
            comps = spec["components"]["schemas"]
            assert "HTTPValidationError" not in comps
            assert comps["ValidationErrorOut"]["properties"]["detail"]["type"] == "string"
            refs = {op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
                    for ops in spec["paths"].values() for op in ops.values() if "422" in op.get("responses", {})}
            assert refs == {"#/components/schemas/ValidationErrorOut"}
            validator = jsonschema_rs.validator_for({"$ref": "#/components/schemas/ValidationErrorOut", "components": spec["components"]})
            auth = {"Authorization": f"Bearer {token}"}
            for method, path, kw in [
                ("POST", "/api/auth/token", {"json": {"username": 1}}),
                ("POST", "/api/users", {"json": {"name": "", "roles": ["nobody"]}, "headers": auth}),
                ("GET", "/api/audit?limit=0", {"headers": auth}),
                ("PUT", "/api/settings/retention", {"json": {"days": "many"}, "headers": auth}),
            ]:
                r = c.request(method, path, **kw)
                assert r.status_code == 422, (path, r.text)
                body = r.json()
                assert isinstance(body["detail"], str) and body["error"] == "validation"
                validator.validate(body)
