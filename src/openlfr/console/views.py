"""The operator console: server-rendered pages (Jinja2) and forms, a little JavaScript for live updates.

Log in with a user name and password (``/login``): a session cookie (HttpOnly, SameSite=Strict)
and, on every form, a CSRF token derived from it. Every page and form asks governance whether
the user's roles allow it; the navigation shows only what the roles allow. Templates and static
files ship inside the package: nothing to build.
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..governance.errors import GovernanceError, NotFound, PermissionDenied
from ..governance.roles import ROLES
from ..governance.service import CATEGORIES, OUTCOMES, RESULTS
from ..transparency.figures import MIN_FACES
from ..web.guard import HTML_CSP

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
CSP = HTML_CSP  # the guard's policy for HTML pages, set by the page itself too
FLASH_COOKIE = "openlfr_flash"

NAV = [
    ("Alerts", "/console/alerts", "alert.read"),
    ("Deployments", "/console/deployments", "deployment.read"),
    ("Watchlists", "/console/watchlists", "watchlist.read"),
    ("Audit", "/console/audit", "audit.read"),
    ("Users", "/console/users", "user.list"),
    ("Tokens", "/console/tokens", None),
    ("API", "/docs", None),
]
HOME_BY_PERMISSION = [("alert.read", "/console/alerts"), ("watchlist.enrol", "/console/watchlists"),
                      ("deployment.authorise", "/console/deployments"), ("audit.read", "/console/audit"),
                      ("user.list", "/console/users")]
LABELS = {
    "true_alert": "True alert", "false_alert": "False alert", "confirmed": "Confirmed", "unconfirmed": "Unconfirmed",
    "arrest": "Arrest", "other_action": "Other action", "no_further_action": "No further action", "no_engagement": "No engagement",
    "wanted_by_courts": "Wanted by courts", "wanted_on_suspicion": "Wanted on suspicion of an offence",
    "missing_or_vulnerable": "Missing or vulnerable person", "risk_of_harm": "Risk of harm to self or others",
    "operator": "Operator", "engagement_officer": "Engagement officer", "watchlist_manager": "Watchlist manager",
    "authorising_officer": "Authorising officer", "auditor": "Auditor", "administrator": "Administrator", "supervisor": "Supervisor",
}


# -- template helpers ---------------------------------------------------------------------------


def _dt(value: Any) -> str:
    if not value:
        return "—"
    try:
        t = datetime.fromisoformat(str(value)) if not isinstance(value, datetime) else value
    except ValueError:
        return str(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: Any, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * float(value):.{digits}f}%"


def _duration(seconds: Any) -> str:
    s = int(max(0, float(seconds or 0)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


templates.env.filters["dt"] = _dt
templates.env.filters["pct"] = _pct
templates.env.filters["duration"] = _duration
templates.env.filters["label"] = lambda v: LABELS.get(str(v), str(v).replace("_", " ")) if v is not None else "—"
templates.env.globals["CATEGORIES"] = CATEGORIES
templates.env.globals["RESULTS"] = RESULTS
templates.env.globals["OUTCOMES"] = OUTCOMES
templates.env.globals["ROLES"] = ROLES
templates.env.globals["min_faces"] = MIN_FACES  # fewer faces seen: no false alert rate


def _secret_key() -> str:
    return os.environ.get("OPENLFR_SECRET_KEY") or secrets.token_urlsafe(32)


class Page:
    """What every console handler needs: the request, the caller, CSRF, flash, rendering."""

    def __init__(self, request: Request, principal):
        self.request = request
        self.p = principal
        self.actor = principal.actor if principal else None
        self.ctx = request.app.state.ctx
        self.gov = self.ctx.gov

    def can(self, permission: str) -> bool:
        return bool(self.actor) and self.actor.can(permission)

    def render(self, name: str, status: int = 200, **kw) -> HTMLResponse:
        flash = _read_flash(self.request)
        nav = [(label, url) for label, url, perm in NAV if perm is None or self.can(perm)] if self.actor else []
        context = {"request": self.request, "me": self.actor, "nav": nav, "csrf": self.p.csrf if self.p else None,
                   "flash": flash, "can": self.can, "path": self.request.url.path, **kw}
        resp = templates.TemplateResponse(self.request, name, context, status_code=status)
        if flash:
            resp.delete_cookie(FLASH_COOKIE, path="/")
        return _secure_headers(resp)


def _secure_headers(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _serializer(request: Request):
    from itsdangerous import URLSafeSerializer

    return URLSafeSerializer(request.app.state.console_secret, salt="openlfr-flash")


def _read_flash(request: Request) -> dict | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        v = _serializer(request).loads(raw)
        return {"kind": str(v[0]), "text": str(v[1])} if isinstance(v, list) and len(v) == 2 else None
    except Exception:  # noqa: BLE001 - a bad or old cookie: ignore it
        return None


def redirect(request: Request, url: str, kind: str | None = None, text: str | None = None) -> RedirectResponse:
    resp = RedirectResponse(url, status_code=303)
    if kind and text:
        resp.set_cookie(FLASH_COOKIE, _serializer(request).dumps([kind, text[:500]]), httponly=True, samesite="strict",
                        secure=_secure(request), path="/")
    return resp


def _secure(request: Request) -> bool:
    forced = request.app.state.ctx.secure_cookies
    return request.url.scheme == "https" if forced is None else bool(forced)


def error_page(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
    from ..web.deps import resolve

    try:
        p = resolve(request)
    except Exception:  # noqa: BLE001
        p = None
    if status == 401:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    page = Page(request, p)
    heading = ERROR_HEADINGS.get(status, f"Error {status}")
    if status == 403:
        detail = plain_denial(detail)
    resp = page.render("error.html", status=status, status_code=status, detail=detail, heading=heading, title=heading)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


ERROR_HEADINGS = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not possible here", 409: "Refused",
                  413: "Too large", 422: "Something in the form is wrong", 429: "Too many attempts", 503: "Database unavailable"}
# What each permission lets a user do, in words (for the 403 page).
DOING = {
    "user.create": "add users", "user.change": "change users", "user.list": "see the users",
    "watchlist.create": "create watchlists", "watchlist.enrol": "enrol people on a watchlist",
    "watchlist.expire": "expire watchlist entries", "watchlist.read": "see the watchlists",
    "subject.erase": "erase people from a watchlist", "deployment.plan": "plan deployments",
    "deployment.authorise": "authorise deployments", "deployment.start": "start deployments",
    "deployment.stop": "stop deployments", "deployment.read": "see deployments", "deployment.run": "run cameras",
    "deployment.publish": "publish deployments' public records", "alert.read": "see alerts",
    "alert.adjudicate": "review alerts", "alert.revise": "change a decision on an alert",
    "alert.outcome": "record what happened after an alert",
    "volunteer.record": "record volunteers' passes", "retention.configure": "change the retention settings",
    "purge.run": "run the purge", "audit.read": "read the audit log", "alert.record": "record alerts",
}


def plain_denial(detail: str) -> str:
    """``operator may not audit.read (needs one of: administrator, auditor)`` in plain words."""
    import re

    m = re.match(r"^(.+?) may not (\S+) \(needs one of: (.+)\)$", detail or "")
    if not m:
        return detail
    roles = [LABELS.get(r.strip(), r.strip()) for r in m.group(3).split(",") if r.strip() in ROLES]
    doing = DOING.get(m.group(2), "do this")
    who = " or ".join(roles) if roles else "another role"
    return f"Your account may not {doing}: only the {who} role{'s' if len(roles) > 1 else ''} can."


# -- auth for pages -----------------------------------------------------------------------------


class NeedLogin(Exception):
    pass


def _session(request: Request):
    from ..web.security import SESSION_COOKIE

    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    return request.app.state.ctx.tokens.resolve(cookie, ("session",))


async def page(request: Request, permission: str | None = None) -> Page:
    p = await run_in_threadpool(_session, request)
    if p is None:
        raise NeedLogin()
    pg = Page(request, p)
    if permission:
        await run_in_threadpool(pg.gov.authorize, p.actor, permission)  # PermissionDenied -> 403 page
    return pg


async def form_of(pg: Page) -> dict:
    """The posted form, its CSRF token checked; text fields checked for NUL and length."""
    from ..web.deps import ApiError
    from ..web.security import same

    try:
        form = await pg.request.form()
    except Exception:  # noqa: BLE001 - malformed body
        raise ApiError(400, "bad_request", "the form could not be read") from None
    if not same(form.get("csrf_token") if isinstance(form.get("csrf_token"), str) else None, pg.p.csrf):
        raise ApiError(403, "csrf", "the form's CSRF token is missing or wrong: reload the page and try again")
    return form


def text(form, name: str, max_length: int = 2000, required: bool = False) -> str:
    from ..web.deps import ApiError

    v = form.get(name)
    v = v.strip() if isinstance(v, str) else ""
    if "\x00" in v or len(v) > max_length:
        raise ApiError(422, "validation", f"{name}: too long or not text")
    if required and not v:
        raise ApiError(422, "validation", f"{name}: required")
    return v


def int_field(form, name: str, lo: int = 1, hi: int = 2**31 - 1) -> int:
    from ..web.deps import ApiError

    v = text(form, name, 20, required=True)
    if not v.isdigit() or not (lo <= int(v) <= hi):
        raise ApiError(422, "validation", f"{name}: a whole number from {lo} to {hi}")
    return int(v)


async def act(pg: Page, fn: Callable, back: str, ok: str | Callable[[Any], str]) -> RedirectResponse:
    """Run a governance action; back to ``back`` with a message either way."""
    try:
        result = await run_in_threadpool(fn)
    except PermissionDenied as e:
        return redirect(pg.request, back, "error", f"Not allowed: {e}")
    except NotFound as e:
        return redirect(pg.request, back, "error", str(e))
    except GovernanceError as e:
        return redirect(pg.request, back, "error", f"Refused: {e}")
    pg.ctx.notifier.poke()
    return redirect(pg.request, back, "ok", ok(result) if callable(ok) else ok)


def home_of(actor) -> str:
    for perm, url in HOME_BY_PERMISSION:
        if actor.can(perm):
            return url
    return "/console/deployments"


def _safe_next(url: str | None) -> str | None:
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url and len(url) < 300 and url.isprintable():
        return url
    return None


# -- the routes ---------------------------------------------------------------------------------


def mount_console(app: FastAPI) -> None:
    from . import routes

    app.state.console_secret = _secret_key()
    app.state.console_tokens = {}  # a new token, shown once on the next page of the session that made it
    from . import public, report_pages

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(report_pages.router)  # before routes: /report.pdf is not a deployment action
    app.include_router(routes.router)
    app.include_router(public.router)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response((HERE / "static" / "favicon.svg").read_bytes(), media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.exception_handler(NeedLogin)
    async def need_login(request: Request, e: NeedLogin):
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(nxt)}", status_code=303)
