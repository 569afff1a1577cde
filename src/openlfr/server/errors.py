"""Errors, the same for the API and the console: JSON for the API, the console's page for a browser.

Every error is JSON ``{"detail": "...", "error": "..."}`` with its status: 401 unauthenticated,
403 forbidden (or CSRF), 404 not found, 409 refused by a governance rule (or the deployment is
not active), 413 too large, 422 invalid request (with ``errors`` by field; ``report`` for images
that failed the quality checks), 429 too many failed logins, 503 database unavailable. A request
for a console page (or any page a browser asks for as HTML, outside /api) gets the console's
error page instead, and a redirect to the login page for 401.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..console.views import error_page
from ..governance.errors import AuthenticationError, DeploymentNotActive, GovernanceError, NotFound, PermissionDenied, StoreError
from ..web.deps import ApiError
from ..web.enrol import EnrolmentRejected

log = logging.getLogger(__name__)


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


# Errors answered with their message and a fixed status (handlers are found along the exception's
# MRO, so DeploymentNotActive, a GovernanceError, gets its own).
RULE_ERRORS = (
    (PermissionDenied, 403, "forbidden"),
    (AuthenticationError, 401, "unauthenticated"),
    (NotFound, 404, "not_found"),
    (DeploymentNotActive, 409, "not_active"),
    (GovernanceError, 409, "refused"),
    (StoreError, 503, "unavailable"),
)


def install_errors(app: FastAPI) -> None:
    """The handlers of every error: an HTML page for a browser (``_wants_html``), else JSON."""

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
        return respond(request, 422, "validation", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        names = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        detail = e.detail if isinstance(e.detail, str) else "error"
        if e.status_code == 404 and detail == "Not Found":
            detail = f"no such page or endpoint: {request.url.path}"
        return respond(request, e.status_code, names.get(e.status_code, "error"), detail, getattr(e, "headers", None))

    def refusal(status: int, error: str):
        async def handler(request: Request, e: Exception):
            return respond(request, status, error, str(e))

        return handler

    for cls, status, error in RULE_ERRORS:
        app.add_exception_handler(cls, refusal(status, error))

    @app.exception_handler(EnrolmentRejected)
    async def rejected(request: Request, e: EnrolmentRejected):
        return respond(request, 422, "quality", str(e), report=e.report)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # pragma: no cover - a bug: logged, never leaked
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal", "internal error (logged on the server)")
