"""The application: REST API under /api, the live stream, the console, the API reference.

``create_app(db_url, clock=None)`` builds it on the same database every command uses
(``--db`` / ``$OPENLFR_DB`` / the data directory). Every error is JSON
``{"detail": "...", "error": "..."}`` with its status: 401 unauthenticated, 403 forbidden (or
CSRF), 404 not found, 409 refused by a governance rule (or the deployment is not active),
413 too large, 422 invalid request, 429 too many failed logins, 503 database unavailable.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..governance.errors import AuthenticationError, DeploymentNotActive, GovernanceError, NotFound, PermissionDenied, StoreError
from ..governance.service import Governance
from ..web.deps import ApiError, Context, Notifier, resolve
from ..web.guard import BodyLimits, Guard
from ..web.security import LoginLimiter, Tokens

log = logging.getLogger(__name__)


class _App(FastAPI):
    """FastAPI with ``Guard`` outside its whole stack (error responses included): body limits,
    authentication before uploads, security headers on every response."""

    def build_middleware_stack(self):
        return Guard(super().build_middleware_stack(), self.state.body_limits, self._principal_of)

    def openapi(self) -> dict:
        """FastAPI's document, with every 422 described as the server sends it (``detail`` a string)."""
        if self.openapi_schema is None:
            describe_validation_errors(super().openapi())
        return self.openapi_schema

    def _principal_of(self, scope):
        try:
            return resolve(Request({**scope, "app": self}))
        except ApiError:
            return None

TAGS = [
    {"name": "auth", "description": "Bearer tokens (from a user name and password), worker tokens, revocation, who am I"},
    {"name": "users", "description": "Users and roles (administrator); retention and purge"},
    {"name": "watchlists", "description": "Watchlists, subjects, quality-checked enrolment, expiry, erasure"},
    {"name": "deployments", "description": "Plan, authorise, start, stop; the dashboard figures; the report"},
    {"name": "alerts", "description": "Alerts, their images, adjudication and outcomes"},
    {"name": "stream", "description": "Live events (Server-Sent Events)"},
    {"name": "audit", "description": "The hash-chained audit log"},
    {"name": "workers", "description": "Camera workers (openlfr run --server): worker token only"},
]


def describe_validation_errors(spec: dict) -> dict:
    """Point every 422 response at ``ValidationErrorOut`` (FastAPI's default says ``detail`` is a
    list, but ``_install_errors`` answers ``{"detail": "...", "error": "validation", "errors": [...]}``)."""
    from .schemas import ValidationErrorOut

    comps = spec.setdefault("components", {}).setdefault("schemas", {})
    defs = ValidationErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    comps.update(defs.pop("$defs", {}))
    comps["ValidationErrorOut"] = defs
    ref = {"$ref": "#/components/schemas/ValidationErrorOut"}
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            r = op.get("responses", {}).get("422") if isinstance(op, dict) else None
            if r is None:
                continue
            schema = r.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith(("/HTTPValidationError", "/ErrorOut")) or not schema:
                r["content"] = {"application/json": {"schema": ref}}
                r["description"] = "Invalid request: what is wrong, in words (detail) and by field (errors)"
    text = json.dumps(spec.get("paths", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"/{name}\"" not in text:
            comps.pop(name, None)
    return spec


def _error(status: int, error: str, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    body = {"detail": detail, "error": error, **extra}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "Cache-Control": "no-store"})


HTML_PREFIXES = ("/console", "/login", "/logout", "/docs", "/public")


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(HTML_PREFIXES):
        return True
    return not path.startswith("/api") and path != "/openapi.json" and "text/html" in request.headers.get("accept", "")


def _loc(loc) -> str:
    parts = [str(x) for x in loc if x not in ("body",)] or [str(x) for x in loc]
    return ".".join(parts)


def _install_errors(app: FastAPI) -> None:
    from ..console.views import error_page

    def respond(request: Request, status: int, error: str, detail: str, headers: dict | None = None, **extra):
        if _wants_html(request):
            return error_page(request, status, detail, headers)
        return _error(status, error, detail, headers, **extra)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return respond(request, e.status, e.error, e.detail, e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, e: RequestValidationError):
        errors = [{"loc": [str(x) for x in er.get("loc", ())], "msg": str(er.get("msg", "")), "type": str(er.get("type", ""))}
                  for er in e.errors()]
        detail = "; ".join(f"{_loc(er['loc'])}: {er['msg']}" for er in errors) or "invalid request"
        if _wants_html(request):
            return respond(request, 422, "validation", detail)
        return _error(422, "validation", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        names = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        detail = e.detail if isinstance(e.detail, str) else "error"
        if e.status_code == 404 and detail == "Not Found":
            detail = f"no such page or endpoint: {request.url.path}"
        return respond(request, e.status_code, names.get(e.status_code, "error"), detail, getattr(e, "headers", None))

    @app.exception_handler(PermissionDenied)
    async def denied(request: Request, e: PermissionDenied):
        return respond(request, 403, "forbidden", str(e))

    @app.exception_handler(AuthenticationError)
    async def auth(request: Request, e: AuthenticationError):
        return respond(request, 401, "unauthenticated", str(e))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, e: NotFound):
        return respond(request, 404, "not_found", str(e))

    @app.exception_handler(DeploymentNotActive)
    async def not_active(request: Request, e: DeploymentNotActive):
        return respond(request, 409, "not_active", str(e))

    @app.exception_handler(GovernanceError)
    async def refused(request: Request, e: GovernanceError):
        return respond(request, 409, "refused", str(e))

    @app.exception_handler(StoreError)
    async def store(request: Request, e: StoreError):
        return respond(request, 503, "unavailable", str(e))

    from ..web.enrol import EnrolmentRejected

    @app.exception_handler(EnrolmentRejected)
    async def rejected(request: Request, e: EnrolmentRejected):
        return respond(request, 422, "quality", str(e), report=e.report)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # pragma: no cover - a bug: logged, never leaked
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal", "internal error (logged on the server)")


def create_app(db_url: str | None = None, clock=None, *, enroller: Callable | None = None, gov: Governance | None = None,
               login_limiter: LoginLimiter | None = None, secure_cookies: bool | None = None,
               stream_poll_s: float = 1.0, body_limits: BodyLimits | None = None) -> FastAPI:
    """The API and console on ``db_url`` (resolved like every command: --db, $OPENLFR_DB, data dir).

    ``clock``: governance's clock (a ``TestClock`` in tests). ``enroller``: turns uploaded reference
    images into templates with a quality report (default: the face engine, loaded on first use).
    ``body_limits``: request body sizes per route class (default: ``BodyLimits.from_env()``).
    """
    gov = gov or Governance(db_url, clock)
    context = Context(gov=gov, tokens=Tokens(gov), limiter=login_limiter or LoginLimiter(), notifier=Notifier(),
                      enroller=enroller, secure_cookies=secure_cookies, stream_poll_s=stream_poll_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import asyncio

        from ..governance.cameras import sweep as camera_sweep

        async def housekeeping():
            while True:
                await asyncio.sleep(60)
                try:
                    await asyncio.to_thread(gov.housekeeping)
                    await asyncio.to_thread(camera_sweep, gov)  # "camera down too long" warnings, audited
                    context.notifier.poke()
                except Exception:  # noqa: BLE001 - keep serving; the next command purges
                    log.exception("housekeeping failed")

        await asyncio.to_thread(gov.housekeeping)
        task = asyncio.create_task(housekeeping())
        try:
            yield
        finally:
            task.cancel()

    app = _App(
        title="openlfr",
        version=_version(),
        description="Accountable live facial recognition: the operator console's API. Authenticate with "
                    "`POST /api/auth/token` and send `Authorization: Bearer TOKEN`; camera workers use worker tokens. "
                    "Every action is checked against the caller's roles and written to the audit log.",
        openapi_tags=TAGS,
        docs_url=None, redoc_url=None,  # /docs is served by the console (no assets from elsewhere)
        lifespan=lifespan,
    )
    app.state.ctx = context
    app.state.body_limits = body_limits or BodyLimits.from_env()

    from .routes import alerts, audit, auth, cameras, deployments, publication, stream, users, watchlists, worker

    for r in (auth, users, watchlists, deployments, alerts, stream, audit, worker, cameras, publication):
        app.include_router(r.router)
    _install_errors(app)

    from ..console.views import mount_console

    mount_console(app)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("openlfr")
    except Exception:  # noqa: BLE001
        return "0"
