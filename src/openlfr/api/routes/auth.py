"""Tokens: get one with a user name and password, list, create worker tokens, revoke; who am I."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Path, Query, Request

from ...governance.errors import AuthenticationError, PermissionDenied
from ...governance.roles import PERMISSIONS
from ...web.deps import ApiError, client_address, ctx, permit, user
from ...web.security import Principal
from ..schemas import MAX_ID, Done, ErrorOut, Me, TokenInfo, TokenOut, TokenRequest, WorkerTokenRequest

router = APIRouter(prefix="/api", tags=["auth"])
R401 = {401: {"model": ErrorOut}}
R403 = {403: {"model": ErrorOut}}


def login_checked(request: Request, username: str, password: str):
    """``Governance.login`` behind the rate limiter: an Actor, or ApiError 401/429."""
    c = ctx(request)
    addr = client_address(request)
    wait = c.limiter.retry_after(username, addr)
    if wait:
        raise ApiError(429, "rate_limited", f"too many failed logins; try again in {wait} s", {"Retry-After": str(wait)})
    try:
        actor = c.gov.login(username, password)
    except AuthenticationError:
        c.limiter.failed(username, addr)
        raise ApiError(401, "unauthenticated", "wrong user name or password, or the account is disabled") from None
    c.limiter.succeeded(username, addr)
    return actor


@router.post("/auth/token", response_model=TokenOut, status_code=201, responses={**R401, 429: {"model": ErrorOut}},
             summary="Log in with a user name and password; get a bearer token")
def create_token(body: TokenRequest, request: Request) -> TokenOut:
    actor = login_checked(request, body.username, body.password)
    c = ctx(request)
    secret, row = c.tokens.create(actor, "api", body.name, c.gov.now() + timedelta(days=body.expires_in_days))
    return TokenOut(id=row.id, kind=row.kind, name=row.name, token=secret, expires_at=row.expires_at.isoformat())


@router.get("/auth/me", response_model=Me, responses=R401, summary="Who the caller is, their roles and permissions")
def me(p: Principal = Depends(user)) -> Me:
    perms = sorted(k for k in PERMISSIONS if p.actor.can(k))
    return Me(name=p.actor.name, roles=sorted(p.actor.roles), permissions=perms, kind=p.kind, csrf_token=p.csrf)


@router.post("/auth/logout", response_model=Done, responses=R401, summary="Revoke the credential used for this request")
def logout(request: Request, p: Principal = Depends(user)) -> Done:
    ctx(request).tokens.revoke(p, p.token_id)
    return Done(detail=f"token {p.token_id} revoked")


@router.get("/tokens", response_model=list[TokenInfo], responses=R401,
            summary="Your tokens and sessions; everyone's with all=true (user.list)")
def list_tokens(request: Request, all: bool = Query(False), p: Principal = Depends(user)) -> list[dict]:
    c = ctx(request)
    if all:
        try:
            c.gov.authorize(p.actor, "user.list")
        except PermissionDenied as e:
            raise ApiError(403, "forbidden", str(e)) from None
    return c.tokens.list(p, everyone=all)


@router.post("/tokens/worker", response_model=TokenOut, status_code=201, responses={**R401, **R403},
             summary="A camera worker's token, bound to one deployment (deployment.run)")
def create_worker_token(body: WorkerTokenRequest, request: Request, p: Principal = Depends(permit("deployment.run"))) -> TokenOut:
    secret, row = ctx(request).tokens.create(p.actor, "worker", body.name, deployment_id=body.deployment_id)
    return TokenOut(id=row.id, kind=row.kind, name=row.name, token=secret, expires_at=row.expires_at.isoformat(),
                    deployment_id=row.deployment_id)


@router.delete("/tokens/{token_id}", response_model=Done, responses={**R401, **R403, 404: {"model": ErrorOut}},
               summary="Revoke a token: your own; a worker token (deployment.run); any (user.change)")
def revoke_token(request: Request, token_id: int = Path(ge=1, le=MAX_ID), p: Principal = Depends(user)) -> Done:
    a = p.actor
    ctx(request).tokens.revoke(p, token_id, may_revoke_any=a.can("user.change"), may_revoke_workers=a.can("deployment.run"))
    return Done(detail=f"token {token_id} revoked")
