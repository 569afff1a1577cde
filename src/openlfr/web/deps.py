"""Request plumbing shared by the API and the console: the app's services, who is asking, and permissions."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from fastapi import Depends, Request

from ..governance.errors import PermissionDenied
from .security import CSRF_HEADER, SESSION_COOKIE, LoginLimiter, Principal, Tokens, same

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class ApiError(Exception):
    """An error with its HTTP status and a JSON body ``{"detail": ..., "error": ...}``."""

    def __init__(self, status: int, error: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


class Notifier:
    """Wakes the live streams at once when this process records something (else they poll)."""

    def __init__(self):
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()

    def register(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        w = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(w)
        return w

    def unregister(self, w) -> None:
        with self._lock:
            self._waiters.discard(w)

    def poke(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # loop closed
                pass


@dataclass
class Context:
    gov: Any
    tokens: Tokens
    limiter: LoginLimiter
    notifier: Notifier
    enroller: Callable | None
    secure_cookies: bool | None = None  # None: secure when the request came over HTTPS
    stream_poll_s: float = 1.0
    extra: dict = field(default_factory=dict)


def ctx(request: Request) -> Context:
    return request.app.state.ctx


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer(request: Request) -> str | None:
    h = request.headers.get("authorization")
    if not h:
        return None
    scheme, _, value = h.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "unauthenticated", "the Authorization header must be: Bearer TOKEN",
                       {"WWW-Authenticate": "Bearer"})
    return value.strip()


def resolve(request: Request) -> Principal | None:
    """The caller, from a bearer token or the session cookie; None when neither is given."""
    c = ctx(request)
    tok = bearer(request)
    if tok is not None:
        p = c.tokens.resolve(tok, ("api", "worker"))
        if p is None:
            raise ApiError(401, "unauthenticated", "the token is unknown, revoked or expired, or its user is disabled",
                           {"WWW-Authenticate": "Bearer"})
        return p
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return c.tokens.resolve(cookie, ("session",))
    return None


def principal(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    p = resolve(request)
    if p is None:
        raise ApiError(401, "unauthenticated",
                       "authentication required: log in to the console, or send Authorization: Bearer TOKEN",
                       {"WWW-Authenticate": "Bearer"})
    if p.kind == "session" and request.method in UNSAFE and not same(request.headers.get(CSRF_HEADER), p.csrf):
        raise ApiError(403, "csrf", f"a request made with the console's session needs the {CSRF_HEADER} header")
    request.state.principal = p
    return p


def user(p: Principal = Depends(principal)) -> Principal:
    """Any logged-in user (not a camera worker)."""
    if p.is_worker:
        raise ApiError(403, "forbidden", "a worker token may only post its deployment's alerts and faces seen")
    return p


def permit(permission: str) -> Callable[..., Principal]:
    """A dependency: the caller must hold ``permission`` (governance decides; refusals are audited)."""

    def dependency(request: Request, p: Principal = Depends(user)) -> Principal:
        try:
            ctx(request).gov.authorize(p.actor, permission)
        except PermissionDenied as e:
            raise ApiError(403, "forbidden", str(e)) from None
        return p

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def worker(p: Principal = Depends(principal)) -> Principal:
    if not p.is_worker:
        raise ApiError(403, "forbidden", "this endpoint is for camera workers: use a worker token")
    return p
