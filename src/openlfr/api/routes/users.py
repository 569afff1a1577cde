"""Users and their roles (administrator); retention and purge."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from ...governance.errors import AuthenticationError, PermissionDenied
from ...web.deps import ApiError, client_address, ctx, permit, user
from ...web.security import Principal
from ..schemas import Done, ErrorOut, PasswordChange, RetentionBody, UserChange, UserCreate, UserName

router = APIRouter(prefix="/api", tags=["users"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


@router.get("/users", responses=ERR, summary="Users, their roles and state (user.list)")
def list_users(request: Request, p: Principal = Depends(permit("user.list"))) -> list[dict]:
    return ctx(request).gov.list_users(p.actor)


@router.post("/users", status_code=201, responses=ERR, summary="Create a user (user.create)")
def create_user(body: UserCreate, request: Request, p: Principal = Depends(permit("user.create"))) -> dict:
    u = ctx(request).gov.create_user(p.actor, body.name, [r.value for r in body.roles], body.password)
    return {"id": u.id, "name": u.name, "roles": sorted(r.value for r in body.roles), "active": True}


@router.patch("/users/{name}", responses=ERR, summary="Change a user's roles or active flag (user.change)")
def change_user(body: UserChange, request: Request, name: UserName = Path(), p: Principal = Depends(permit("user.change"))) -> Done:
    gov = ctx(request).gov
    if body.roles is not None:
        gov.set_roles(p.actor, name, [r.value for r in body.roles])
    if body.active is not None:
        gov.set_active(p.actor, name, body.active)
    return Done(detail=f"user {name} changed")


@router.put("/users/{name}/password", responses={**ERR, 429: {"model": ErrorOut}},
            summary="Change your own password (with the current one), or reset anyone's (user.change); the user's other sessions and tokens are revoked")
def set_password(body: PasswordChange, request: Request, name: UserName = Path(), p: Principal = Depends(user)) -> Done:
    c = ctx(request)
    own = name == p.actor.name
    if not own:
        try:
            c.gov.authorize(p.actor, "user.change")
        except PermissionDenied as e:
            raise ApiError(403, "forbidden", str(e)) from None
    addr = client_address(request)
    if own:
        wait = c.limiter.retry_after(name, addr)
        if wait:
            raise ApiError(429, "rate_limited", f"too many wrong passwords; try again in {wait} s", {"Retry-After": str(wait)})
    try:
        revoked = c.gov.set_password(p.actor, name, body.password, body.old_password, keep_token_id=p.token_id)
    except AuthenticationError as e:
        c.limiter.failed(name, addr)
        raise ApiError(403 if body.old_password else 422, "forbidden" if body.old_password else "validation",
                       f"old_password: {e}") from None
    c.notifier.poke()
    return Done(detail=f"password of {name} {'changed' if own else 'reset'}; {len(revoked)} other session(s) and token(s) revoked")


@router.get("/settings/retention", responses=ERR, summary="The alert retention period in days")
def get_retention(request: Request, p: Principal = Depends(user)) -> dict:
    return {"days": ctx(request).gov.retention_days()}


@router.put("/settings/retention", responses=ERR, summary="Change the alert retention period (retention.configure)")
def set_retention(body: RetentionBody, request: Request, p: Principal = Depends(permit("retention.configure"))) -> dict:
    ctx(request).gov.set_retention_days(p.actor, body.days)
    return {"days": body.days}


@router.post("/purge", responses=ERR, summary="Stop overdue deployments and delete alerts past retention (purge.run)")
def purge(request: Request, p: Principal = Depends(permit("purge.run"))) -> dict:
    c = ctx(request)
    rep = c.gov.purge(p.actor)
    c.notifier.poke()
    return rep.to_json()
