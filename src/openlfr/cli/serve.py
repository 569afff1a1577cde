"""``openlfr serve`` (the API, live alert stream and console) and ``openlfr token`` (bearer tokens)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Optional

import typer

from . import app
from .governance import AsOpt, DbOpt, _handled, _setup, err, out

token_app = typer.Typer(help="Bearer tokens for the API and camera workers: create, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface; put TLS in front).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    db: DbOpt = None,
    secure_cookies: Annotated[Optional[bool], typer.Option("--secure-cookies/--no-secure-cookies", help="Mark cookies Secure (default: when the request came over HTTPS).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    trusted_proxy: Annotated[Optional[str], typer.Option("--trusted-proxy", envvar="OPENLFR_TRUSTED_PROXY", help="Address(es) of the reverse proxy in front (comma-separated): only then is X-Forwarded-For believed (client addresses for the login rate limit and the logs).", show_default=False)] = None,
) -> None:
    """The REST API (/api, /openapi.json, /docs), the live alert stream and the operator console."""
    import uvicorn

    from ..server import create_app
    from ..governance.errors import StoreError
    from ..governance.storage import redact, resolve_db_url

    url = resolve_db_url(db)
    try:
        application = create_app(url, secure_cookies=secure_cookies)
    except (StoreError, ValueError) as e:  # ValueError: a bad $OPENLFR_MAX_* size
        err.print(f"error: {e}")
        raise typer.Exit(2)
    err.print(f"openlfr console on http://{host}:{port}/ (database {redact(url)})")
    from ..web.security import proxy_settings

    uvicorn.run(application, host=host, port=port, log_level=log_level, **proxy_settings(trusted_proxy))


@token_app.command("create")
@_handled
def token_create(
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
    days: Annotated[int, typer.Option(help="Days the token is valid (API tokens).", min=1, max=365)] = 30,
    worker: Annotated[Optional[int], typer.Option("--worker", help="A camera worker token for this deployment id (needs the operator role).", show_default=False)] = None,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Create a bearer token acting as you (or a worker token bound to a deployment); printed once."""
    from ..web.security import Tokens

    gov, actor = _setup(db, as_user)
    tokens = Tokens(gov)
    if worker is not None:
        gov.authorize(actor, "deployment.run")
        secret, row = tokens.create(actor, "worker", name, deployment_id=worker)
    else:
        secret, row = tokens.create(actor, "api", name, gov.now() + timedelta(days=days))
    err.print(f"token {row.id} ({row.kind}) expires {row.expires_at.isoformat()}; store it now, it is not shown again:")
    out.print(secret)


@token_app.command("list")
@_handled
def token_list(
    all_users: Annotated[bool, typer.Option("--all", help="Everyone's tokens (administrator or auditor).")] = False,
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Your tokens and console sessions (or everyone's)."""
    import json

    from ..web.security import Principal, Tokens

    gov, actor = _setup(db, as_user)
    if all_users:
        gov.authorize(actor, "user.list")
    p = Principal(actor=actor, kind="cli", token_id=0, user_id=actor.user_id)
    out.print(json.dumps(Tokens(gov).list(p, everyone=all_users), indent=2))


@token_app.command("revoke")
@_handled
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (from token list).")],
    db: DbOpt = None,
    as_user: AsOpt = None,
) -> None:
    """Revoke a token: your own; any worker token (operator); any token (administrator)."""
    from ..web.security import Principal, Tokens

    gov, actor = _setup(db, as_user)
    p = Principal(actor=actor, kind="cli", token_id=0, user_id=actor.user_id)
    Tokens(gov).revoke(p, token_id, may_revoke_any=actor.can("user.change"), may_revoke_workers=actor.can("deployment.run"))
    out.print(f"token {token_id} revoked")
