"""The outermost layer of the application: bounded request bodies, authentication before an
upload, and the security headers on every response.

Why an ASGI middleware of its own, outside FastAPI's stack: a request sent in chunks (no
``Content-Length``) used to be read whole before anything looked at its size (a 300 MB JSON body
to ``/api/auth/token``), and a multipart upload was parsed and spooled to disk before the route
found that its sender was not logged in. Here, before the application sees the request:

- a ``Content-Length`` over the route class's limit is answered 413 at once;
- the body is counted as it streams in; past the limit the read fails (``BodyTooLarge``, a 413)
  and the response closes the connection, so the rest is never read;
- a multipart upload needs a valid session or bearer token first: 401, body unread.

Route classes (``BodyLimits``, configurable; ``$OPENLFR_MAX_BODY``, ``$OPENLFR_MAX_WORKER_BODY``,
``$OPENLFR_MAX_UPLOAD`` in bytes, or with K/M/G): multipart uploads (enrolment images, 64 MiB),
camera workers' posts (a probe crop each, 8 MiB), everything else (JSON and forms, 1 MiB).

Every response, the errors and the API's JSON included, carries ``X-Content-Type-Options:
nosniff`` and a Content-Security-Policy: the console's for HTML pages, and for everything else a
policy that lets nothing run (``default-src 'none'; sandbox``), so that bytes served by the API
are never a page in a browser.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import anyio
from starlette.exceptions import HTTPException

MiB = 1024 * 1024
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
HTML_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


class BodyTooLarge(HTTPException):
    """The request body grew past its route class's limit while it was read (413)."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {_size(limit)}")


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n:,} bytes"


def parse_size(text: str) -> int:
    """``1048576``, ``512K``, ``8M``, ``1G`` (binary units) as bytes; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", str(text), re.IGNORECASE)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"not a size: {text!r} (give bytes, or a number with K, M or G)")
    return int(m.group(1)) * {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}[m.group(2).upper()]


@dataclass(frozen=True)
class BodyLimits:
    default: int = 1 * MiB  # JSON and forms
    worker: int = 8 * MiB  # /api/worker/*: alerts with their probe crop
    upload: int = 64 * MiB  # multipart: enrolment images

    @classmethod
    def from_env(cls, environ=os.environ) -> "BodyLimits":
        d = cls()
        get = lambda name, default: parse_size(environ[name]) if environ.get(name) else default  # noqa: E731
        return cls(get("OPENLFR_MAX_BODY", d.default), get("OPENLFR_MAX_WORKER_BODY", d.worker), get("OPENLFR_MAX_UPLOAD", d.upload))

    def for_request(self, path: str, content_type: str) -> tuple[str, int]:
        if content_type.startswith("multipart/"):
            return "upload", self.upload
        if path.startswith("/api/worker/"):
            return "worker", self.worker
        return "default", self.default


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def _is_html(path: str, accept: str) -> bool:
    if path.startswith(("/console", "/login", "/logout", "/docs")):
        return True
    return not path.startswith("/api") and path != "/openapi.json" and "text/html" in accept


class Guard:
    """ASGI middleware: see the module docstring. ``app``: the application's own stack;
    ``principal_of(scope)``: the caller for a request's headers (or None), run in a thread."""

    def __init__(self, app, limits: BodyLimits, principal_of):
        self.app, self.limits, self.principal_of = app, limits, principal_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        state = {"started": False, "close": False}

        async def send_secured(message):
            if message["type"] == "http.response.start":
                state["started"] = True
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                ctype = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), "")
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY"),
                         (b"content-security-policy", (HTML_CSP if ctype.startswith("text/html") else API_CSP).encode())]
                if path.startswith("/api"):
                    extra.append((b"cache-control", b"no-store"))
                if state["close"]:
                    extra.append((b"connection", b"close"))  # the rest of the body is never read
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        ctype = (_header(scope, b"content-type") or "").lower()
        kind, limit = self.limits.for_request(path, ctype)
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                return await self._refuse(scope, send_secured, 400, "bad_request", "Content-Length is not a number")
            if int(length) > limit:
                state["close"] = True
                return await self._refuse(scope, send_secured, 413, "too_large", f"the request body is larger than {_size(limit)}")
        if kind == "upload":
            p = await anyio.to_thread.run_sync(self.principal_of, scope)
            if p is None:
                state["close"] = True  # the upload is not read
                return await self._refuse(scope, send_secured, 401, "unauthenticated",
                                          "authentication required before an upload: log in to the console, or send Authorization: Bearer TOKEN",
                                          {"www-authenticate": "Bearer"})
        received = 0

        async def receive_bounded():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    state["close"] = True
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, receive_bounded, send_secured)
        except BodyTooLarge as e:  # not turned into a response inside (e.g. raised in a middleware)
            if state["started"]:
                raise
            await self._refuse(scope, send_secured, 413, "too_large", e.detail)

    async def _refuse(self, scope, send, status: int, error: str, detail: str, headers: dict | None = None):
        """A response without reading the body: JSON, or for console pages a short HTML page (login for 401)."""
        hdrs = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        if _is_html(scope.get("path", ""), _header(scope, b"accept") or ""):
            if status == 401:
                await send({"type": "http.response.start", "status": 303, "headers": hdrs + [(b"location", b"/login"), (b"content-length", b"0")]})
                return await send({"type": "http.response.body", "body": b""})
            body = (f"<!doctype html><title>{status}</title><p>{_escape(detail)}</p>").encode()
            ctype = b"text/html; charset=utf-8"
        else:
            body = json.dumps({"detail": detail, "error": error}, separators=(",", ":")).encode()
            ctype = b"application/json"
        hdrs += [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})


def _escape(text: str) -> str:
    import html

    return html.escape(text)
