"""The application: the REST API under /api, the live stream, the console, the API reference.

``create_app(db_url, clock=None)`` builds it on the same database every command uses
(``--db`` / ``$OPENLFR_DB`` / the data directory): the API (``openlfr.api``) and the console
(``openlfr.console``) mounted side by side on the services they share (``openlfr.web``), the
guard outside everything, and one error handling for both (``errors``).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI, Request

from ..api.mount import DESCRIPTION, TAGS, describe_validation_errors, mount_api
from ..console.views import mount_console
from ..governance.service import Governance
from ..web.deps import ApiError, Context, Notifier, resolve
from ..web.guard import BodyLimits, Guard
from ..web.security import LoginLimiter, Tokens
from .errors import install_errors

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
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url=None, redoc_url=None,  # /docs is served by the console (no assets from elsewhere)
        lifespan=lifespan,
    )
    app.state.ctx = context
    app.state.body_limits = body_limits or BodyLimits.from_env()

    mount_api(app)
    install_errors(app)
    mount_console(app)
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("openlfr")
    except Exception:  # noqa: BLE001
        return "0"
