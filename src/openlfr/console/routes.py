"""The console's pages and forms (not part of the OpenAPI document: the forms need the session)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ..governance import queries
from ..governance.errors import AuthenticationError, GovernanceError, NotFound, PermissionDenied
from ..governance.roles import ROLES
from ..web.dashboard import explain, figures
from ..web.deps import ApiError, client_address
from ..web.security import PRELOGIN_COOKIE, SESSION_COOKIE, SESSION_HOURS, prelogin_csrf, same
from .views import Page, _read_flash, _safe_next, _secure, act, form_of, home_of, int_field, page, redirect, text
from .views import page as page_of

router = APIRouter(include_in_schema=False)


def _when(value: str, field: str, end_of_day: bool = False) -> datetime:
    """A date or date-time from a form (``datetime-local`` is read as UTC unless it carries a zone)."""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "validation", f"{field}: give a date (YYYY-MM-DD) or a date and time") from None
    if len(value) == 10 and end_of_day:
        t = t.replace(hour=23, minute=59, second=59)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    if not (1970 <= t.year <= 9000):
        raise ApiError(422, "validation", f"{field}: out of range")
    return t.astimezone(timezone.utc)


# -- login ------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def root(request: Request):
    return RedirectResponse("/console", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None):
    from .views import _session

    p = await run_in_threadpool(_session, request)
    if p is not None:
        return RedirectResponse(_safe_next(next) or home_of(p.actor), status_code=303)
    value = request.cookies.get(PRELOGIN_COOKIE)
    if not value or len(value) > 100:
        value = secrets.token_urlsafe(24)
    pg = Page(request, None)
    resp = pg.render("login.html", login_csrf=prelogin_csrf(value), next=_safe_next(next) or "")
    resp.set_cookie(PRELOGIN_COOKIE, value, httponly=True, samesite="strict", secure=_secure(request), path="/", max_age=3600)
    return resp


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    c = request.app.state.ctx
    try:
        form = await request.form()
    except Exception:  # noqa: BLE001
        raise ApiError(400, "bad_request", "the form could not be read") from None
    value = request.cookies.get(PRELOGIN_COOKIE) or ""
    token = form.get("csrf_token")
    if not value or not isinstance(token, str) or not same(token, prelogin_csrf(value)):
        return redirect(request, "/login", "error", "The login form expired: please try again.")
    username, password = form.get("username"), form.get("password")
    nxt = _safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password \
            or len(username) > 200 or len(password) > 1000 or "\x00" in username + password:
        return redirect(request, "/login", "error", "Give your user name and password.")
    addr = client_address(request)
    wait = c.limiter.retry_after(username, addr)
    if wait:
        pg = Page(request, None)
        return pg.render("login.html", status=429, login_csrf=token, next=nxt or "",
                         error=f"Too many failed logins: try again in {wait} seconds.")
    try:
        actor = await run_in_threadpool(c.gov.login, username, password)
    except AuthenticationError:
        c.limiter.failed(username, addr)
        pg = Page(request, None)
        return pg.render("login.html", status=401, login_csrf=token, next=nxt or "",
                         error="Wrong user name or password, or the account is disabled.")
    c.limiter.succeeded(username, addr)
    secret, _ = await run_in_threadpool(c.tokens.create, actor, "session", f"console {addr}"[:200],
                                        c.gov.now() + timedelta(hours=SESSION_HOURS))
    resp = RedirectResponse(nxt or home_of(actor), status_code=303)
    resp.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="strict", secure=_secure(request), path="/",
                    max_age=SESSION_HOURS * 3600)
    resp.delete_cookie(PRELOGIN_COOKIE, path="/")
    return resp


@router.post("/logout")
async def logout(request: Request):
    pg = await page(request)
    await form_of(pg)
    await run_in_threadpool(pg.ctx.tokens.revoke, pg.p, pg.p.token_id)
    resp = redirect(request, "/login", "ok", "Logged out.")
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/console", response_class=HTMLResponse)
async def console_home(request: Request):
    pg = await page(request)
    return RedirectResponse(home_of(pg.actor), status_code=303)


# -- alerts -----------------------------------------------------------------------------------


@router.get("/console/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, deployment: str | None = None, camera: str | None = None, status: str | None = None,
                      subject: str | None = None, page: str | None = None):
    from ..governance.alert_queue import STATUSES, cameras_with_alerts, queue

    pg = await page_of(request, "alert.read")
    dep = int(deployment) if deployment and deployment.isdigit() and 1 <= int(deployment) < 2**31 else None
    camera = camera[:200] if camera and camera.isprintable() else None
    status = status if status in STATUSES else None
    subject = subject.strip()[:200] if subject and subject.strip().isprintable() else None
    number = int(page) if page and page.isdigit() and len(page) < 7 else 1

    def load():
        seq = queries.head_seq(pg.gov)  # read first: nothing falls between the list and the stream
        q = queue(pg.gov, pg.actor, deployment=dep, camera=camera, status=status, subject=subject, page=number)
        return seq, q, cameras_with_alerts(pg.gov, pg.actor, dep)

    seq, q, cams = await run_in_threadpool(load)
    filters = {k: v for k, v in (("deployment", dep), ("camera", camera), ("status", status), ("subject", subject)) if v}
    return pg.render("alerts.html", alerts=q.alerts, q=q, seq=seq, deployment=dep, camera=camera, status_filter=status,
                     subject=subject, cameras=cams, filters=filters, statuses=STATUSES, title="Live alerts")


@router.get("/console/alerts/{alert_id}", response_class=HTMLResponse)
async def alert_page(request: Request, alert_id: int):
    pg = await page(request, "alert.read")
    if not (1 <= alert_id < 2**31):
        raise NotFound(f"no alert {alert_id}")
    a = await run_in_threadpool(queries.alert_detail, pg.gov, pg.actor, alert_id)
    return pg.render("alert.html", a=a, title=f"Alert {alert_id}")


@router.post("/console/alerts/{alert_id}/adjudicate")
async def adjudicate(request: Request, alert_id: int):
    pg = await page(request)
    # operators decide, supervisors revise (governance/adjudication.py decides which applies)
    await run_in_threadpool(pg.gov.authorize, pg.actor, "alert.revise" if pg.can("alert.revise") else "alert.adjudicate")
    form = await form_of(pg)
    decision = text(form, "decision", 20, required=True)
    if decision not in ("true_alert", "false_alert"):
        raise ApiError(422, "validation", "decision: true_alert or false_alert")
    note, reason = text(form, "note"), text(form, "reason")
    return await act(pg, lambda: pg.gov.adjudicate(pg.actor, alert_id, decision, note, reason), f"/console/alerts/{alert_id}",
                     f"Alert {alert_id}: {decision.replace('_', ' ')} recorded.")


@router.post("/console/alerts/{alert_id}/outcome")
async def outcome(request: Request, alert_id: int):
    pg = await page(request, "alert.outcome")
    form = await form_of(pg)
    result, out, note = text(form, "result", 20, True), text(form, "outcome", 40, True), text(form, "note")
    return await act(pg, lambda: pg.gov.record_outcome(pg.actor, alert_id, result, out, note), f"/console/alerts/{alert_id}",
                     f"Alert {alert_id}: outcome recorded.")


# -- deployments --------------------------------------------------------------------------------


@router.get("/console/deployments", response_class=HTMLResponse)
async def deployments_page(request: Request):
    pg = await page(request, "deployment.read")

    def load():
        ds = pg.gov.list_deployments(pg.actor)
        wls = pg.gov.list_watchlists(pg.actor) if pg.can("watchlist.read") else []
        return ds, wls

    ds, wls = await run_in_threadpool(load)
    return pg.render("deployments.html", deployments=list(reversed(ds)), watchlists=wls, title="Deployments")


@router.post("/console/deployments")
async def plan(request: Request):
    pg = await page(request, "deployment.plan")
    form = await form_of(pg)
    cams = [c.strip() for c in text(form, "cameras", 5000, True).replace("\n", ",").split(",") if c.strip()]
    try:
        raw = text(form, "threshold", 20)
        threshold = float(raw) if raw else None  # empty: the calibrated scoring model
        target = float(text(form, "target_fpir", 20) or 0.001)
    except ValueError:
        raise ApiError(422, "validation", "threshold and target FPIR: numbers") from None
    args = dict(
        name=text(form, "name", 200, True), use_case=text(form, "use_case", 200, True), location=text(form, "location", 200, True),
        zone=text(form, "zone", 200, True), starts_at=_when(text(form, "starts_at", 40, True), "starts_at"),
        ends_at=_when(text(form, "ends_at", 40, True), "ends_at"), cameras=cams, threshold=threshold,
        threshold_reason=text(form, "threshold_reason", 500), target_fpir=target,
        watchlist=text(form, "watchlist", 200, True), signage_confirmed=form.get("signage_confirmed") == "on",
        notices_confirmed=form.get("notices_confirmed") == "on", dpia_ref=text(form, "dpia_ref", 200),
        authorising_officer=text(form, "authorising_officer", 100) or None)
    try:
        d = await run_in_threadpool(lambda: pg.gov.plan_deployment(pg.actor, **args))
    except GovernanceError as e:
        return redirect(request, "/console/deployments", "error", f"Refused: {e}")
    pg.ctx.notifier.poke()
    return redirect(request, f"/console/deployments/{d.id}", "ok", f"Deployment {d.id} planned: it needs an authorisation.")


async def _deployment(pg: Page, deployment_id: int) -> dict:
    if not (1 <= deployment_id < 2**31):
        raise NotFound(f"no deployment {deployment_id}")

    def load():
        d = pg.gov.get_deployment(pg.actor, deployment_id)
        d["figures"] = figures(pg.gov, d)
        d["explanation"] = explain(d["figures"])
        return d

    return await run_in_threadpool(load)


@router.get("/console/deployments/{deployment_id}", response_class=HTMLResponse)
async def deployment_page(request: Request, deployment_id: int):
    from ..governance import cameras as health
    from ..governance import publication

    pg = await page(request, "deployment.read")
    d = await _deployment(pg, deployment_id)
    cams = await run_in_threadpool(health.cameras, pg.gov, pg.actor, deployment_id)
    pub = (await run_in_threadpool(publication.published, pg.gov)).get(deployment_id)
    token = request.app.state.console_tokens.pop((pg.p.token_id, "worker", deployment_id), None)
    from ..governance.thresholds import expected_line

    ev = d.get("threshold_evidence") or {}
    return pg.render("deployment.html", d=d, f=d["figures"], threshold_reason=ev.get("reason"),
                     threshold_expected=expected_line(ev), worker_token=token, server_url=str(request.base_url).rstrip("/"),
                     cameras=cams, publication=pub, warn_s=await run_in_threadpool(health.warning_after_s, pg.gov),
                     title=f"Deployment {deployment_id}")


@router.post("/console/deployments/{deployment_id}/{action}")
async def deployment_action(request: Request, deployment_id: int, action: str):
    perms = {"authorise": "deployment.authorise", "start": "deployment.start", "stop": "deployment.stop",
             "worker-token": "deployment.run", "publish": "deployment.publish", "unpublish": "deployment.publish"}
    if action not in perms:
        raise NotFound(f"no action {action}")
    pg = await page(request, perms[action])
    form = await form_of(pg)
    back = f"/console/deployments/{deployment_id}"
    if action == "authorise":
        note = text(form, "note")
        return await act(pg, lambda: pg.gov.authorise_deployment(pg.actor, deployment_id, note), back,
                         f"Deployment {deployment_id} authorised.")
    if action in ("publish", "unpublish"):
        from ..governance import publication

        if action == "unpublish":
            return await act(pg, lambda: publication.unpublish(pg.gov, pg.actor, deployment_id), back,
                             f"Deployment {deployment_id}: public record withdrawn.")
        rank = text(form, "authorising_rank", 60, True)
        return await act(pg, lambda: publication.publish(pg.gov, pg.actor, deployment_id, rank), back,
                         f"Deployment {deployment_id}: public record published on /public.")
    if action == "start":
        return await act(pg, lambda: pg.gov.start_deployment(pg.actor, deployment_id), back, f"Deployment {deployment_id} started.")
    if action == "stop":
        reason = text(form, "reason", 500) or "stopped"
        return await act(pg, lambda: pg.gov.stop_deployment(pg.actor, deployment_id, reason), back,
                         lambda d: f"Deployment {deployment_id} {d.status}.")
    name = text(form, "name", 200)

    def make():
        secret, row = pg.ctx.tokens.create(pg.actor, "worker", name, deployment_id=deployment_id)
        request.app.state.console_tokens[(pg.p.token_id, "worker", deployment_id)] = {"id": row.id, "token": secret}
        return row

    return await act(pg, make, back, lambda row: f"Worker token {row.id} created: copy it now, it is shown once.")


# -- watchlists ---------------------------------------------------------------------------------


@router.get("/console/watchlists", response_class=HTMLResponse)
async def watchlists_page(request: Request):
    pg = await page(request, "watchlist.read")
    wls = await run_in_threadpool(pg.gov.list_watchlists, pg.actor)
    return pg.render("watchlists.html", watchlists=wls, title="Watchlists")


@router.post("/console/watchlists")
async def create_watchlist(request: Request):
    pg = await page(request, "watchlist.create")
    form = await form_of(pg)
    name, desc = text(form, "name", 200, True), text(form, "description", 5000)
    return await act(pg, lambda: pg.gov.create_watchlist(pg.actor, name, desc), "/console/watchlists",
                     lambda w: f"Watchlist {w.name} created.")


async def _watchlist_page(pg: Page, ref: str, status: int = 200, **kw) -> Response:
    if len(ref) > 200 or "\x00" in ref:
        raise NotFound(f"no watchlist {ref}")

    def load():
        wl = next((w for w in pg.gov.list_watchlists(pg.actor) if w["name"] == ref or str(w["id"]) == ref), None)
        if wl is None:
            raise NotFound(f"no watchlist {ref}")
        return wl, pg.gov.list_subjects(pg.actor, wl["id"])

    wl, subjects = await run_in_threadpool(load)
    today = pg.gov.now().date()
    return pg.render("watchlist.html", status=status, wl=wl, subjects=subjects, title=f"Watchlist {wl['name']}",
                     default_expiry=(today + timedelta(days=90)).isoformat(), **kw)


@router.get("/console/watchlists/{ref}", response_class=HTMLResponse)
async def watchlist_page(request: Request, ref: str):
    pg = await page(request, "watchlist.read")
    return await _watchlist_page(pg, ref)


@router.post("/console/watchlists/{ref}/enrol", response_class=HTMLResponse)
async def enrol(request: Request, ref: str):
    from ..web.enrol import EnrolmentRejected, read_uploads
    from ..web.enrol import enrol as do_enrol

    pg = await page(request, "watchlist.enrol")
    form = await form_of(pg)
    files = [f for f in form.getlist("images") if hasattr(f, "read")]
    uploads = await read_uploads(files)
    expires = text(form, "expires_at", 40, True)
    if len(expires) == 10:
        expires = _when(expires, "expires_at", end_of_day=True).isoformat()
    category = text(form, "category", 60, True)
    try:
        result = await run_in_threadpool(
            do_enrol, request, pg.p, ref, text(form, "ref", 200, True), text(form, "name", 200, True), category,
            text(form, "reason", 2000, True), expires, text(form, "source", 500), text(form, "taken_at", 40) or None, uploads,
            text(form, "low_quality_reason", 2000))
    except EnrolmentRejected as e:
        return await _watchlist_page(pg, ref, status=422, report=e.report, error=str(e))
    except (GovernanceError, ApiError) as e:
        return await _watchlist_page(pg, ref, status=409 if isinstance(e, GovernanceError) else e.status,
                                     error=str(e) if isinstance(e, GovernanceError) else e.detail)
    pg.ctx.notifier.poke()
    return await _watchlist_page(pg, ref, status=201, report=result["report"],
                                 ok=f"Subject {result['ref']} enrolled with {result['images_added']} image(s).")


@router.post("/console/watchlists/{ref}/backfill-second", response_class=HTMLResponse)
async def backfill_second(request: Request, ref: str):
    """The second model's templates for references enrolled without it; the page shows the result."""
    from ..web.enrol import backfill_second as do_backfill

    pg = await page(request, "watchlist.enrol")
    await form_of(pg)
    if len(ref) > 200 or "\x00" in ref:
        raise NotFound(f"no watchlist {ref}")
    try:
        res = await run_in_threadpool(do_backfill, request, pg.p, ref)
    except NotFound:
        raise
    except GovernanceError as e:
        return await _watchlist_page(pg, ref, status=409, error=f"Refused: {e}")
    return await _watchlist_page(pg, ref, backfill=res,
                                 ok=f"{res['filled']} reference(s) given the second model's template ({res['subjects']} subject(s)), "
                                    f"{res['skipped']} skipped.")


@router.post("/console/subjects/{subject_id}/{action}")
async def subject_action(request: Request, subject_id: int, action: str):
    perms = {"expire": "watchlist.expire", "erase": "subject.erase"}
    if action not in perms:
        raise NotFound(f"no action {action}")
    pg = await page(request, perms[action])
    form = await form_of(pg)
    back = _safe_next(text(form, "back", 300)) or "/console/watchlists"
    if action == "expire":
        return await act(pg, lambda: pg.gov.expire_subject(pg.actor, subject_id), back, f"Subject {subject_id} expired.")
    if form.get("confirm") != "yes":
        return redirect(request, back, "error", "Tick the box to confirm the erasure.")
    return await act(pg, lambda: pg.gov.erase_subject(pg.actor, subject_id), back,
                     lambda c: f"Subject {subject_id} erased: {c['images']} image(s), {c['templates']} template(s), "
                               f"{c['alerts']} alert(s).")


# -- audit ------------------------------------------------------------------------------------


@router.get("/console/audit", response_class=HTMLResponse)
async def audit_page(request: Request, before: int | None = None, action: str | None = None, verify: int = 0):
    pg = await page(request, "audit.read")
    if before is not None and not (1 <= before < 2**62):
        before = None
    action = action if action and len(action) <= 100 and "\x00" not in action else None

    def load():
        pageinfo = queries.audit_page(pg.gov, pg.actor, before, 100, action)
        check = pg.gov.verify_audit(pg.actor) if verify else None
        return pageinfo, check

    info, check = await run_in_threadpool(load)
    return pg.render("audit.html", info=info, check=check, action=action or "", title="Audit log")


# -- users and administration ---------------------------------------------------------------------


@router.get("/console/users", response_class=HTMLResponse)
async def users_page(request: Request):
    pg = await page(request, "user.list")
    users = await run_in_threadpool(pg.gov.list_users, pg.actor)
    days = await run_in_threadpool(pg.gov.retention_days)
    return pg.render("users.html", users=users, retention_days=days, title="Users")


@router.post("/console/users")
async def create_user(request: Request):
    pg = await page(request, "user.create")
    form = await form_of(pg)
    roles = [r for r in form.getlist("roles") if r in ROLES]
    name, password = text(form, "name", 100, True), text(form, "password", 1000, True)
    return await act(pg, lambda: pg.gov.create_user(pg.actor, name, roles, password), "/console/users",
                     f"User {name} created.")


@router.post("/console/users/{name}/{action}")
async def user_action(request: Request, name: str, action: str):
    if action not in ("roles", "disable", "enable") or len(name) > 100 or not name.isprintable():
        raise NotFound(f"no action {action} for that user")
    pg = await page(request, "user.change")
    form = await form_of(pg)
    if action == "roles":
        roles = [r for r in form.getlist("roles") if r in ROLES]
        return await act(pg, lambda: pg.gov.set_roles(pg.actor, name, roles), "/console/users", f"Roles of {name} changed.")
    active = action == "enable"
    return await act(pg, lambda: pg.gov.set_active(pg.actor, name, active), "/console/users",
                     f"User {name} {'enabled' if active else 'disabled'}.")


@router.post("/console/settings/retention")
async def retention(request: Request):
    pg = await page(request, "retention.configure")
    form = await form_of(pg)
    days = int_field(form, "days", 1, 3650)
    return await act(pg, lambda: pg.gov.set_retention_days(pg.actor, days), "/console/users", f"Alert retention: {days} days.")


@router.post("/console/purge")
async def purge(request: Request):
    pg = await page(request, "purge.run")
    await form_of(pg)
    return await act(pg, lambda: pg.gov.purge(pg.actor), "/console/users",
                     lambda r: f"Purge: {r.alerts} alert(s), {r.snapshots} snapshot(s) deleted.")


# -- tokens -----------------------------------------------------------------------------------


@router.get("/console/tokens", response_class=HTMLResponse)
async def tokens_page(request: Request, all: int = 0):
    pg = await page(request)
    everyone = bool(all) and pg.can("user.list")
    rows = await run_in_threadpool(pg.ctx.tokens.list, pg.p, everyone)
    new = request.app.state.console_tokens.pop((pg.p.token_id, "api", 0), None)
    return pg.render("tokens.html", tokens=rows, everyone=everyone, new_token=new, title="Tokens")


@router.post("/console/tokens")
async def create_token(request: Request):
    pg = await page(request)
    form = await form_of(pg)
    name = text(form, "name", 200)
    days = int_field(form, "days", 1, 365)

    def make():
        secret, row = pg.ctx.tokens.create(pg.actor, "api", name, pg.gov.now() + timedelta(days=days))
        request.app.state.console_tokens[(pg.p.token_id, "api", 0)] = {"id": row.id, "token": secret}
        return row

    return await act(pg, make, "/console/tokens", lambda r: f"Token {r.id} created: copy it now, it is shown once.")


@router.post("/console/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int):
    pg = await page(request)
    form = await form_of(pg)
    back = _safe_next(text(form, "back", 300)) or "/console/tokens"
    if token_id == pg.p.token_id:
        return redirect(request, back, "error", "That is this session: use Log out.")
    return await act(pg, lambda: pg.ctx.tokens.revoke(pg.p, token_id, pg.can("user.change"), pg.can("deployment.run")),
                     back, f"Token {token_id} revoked.")


# -- the API reference ----------------------------------------------------------------------------


@router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request):
    from .views import _session

    p = await run_in_threadpool(_session, request)
    spec = request.app.openapi()
    ops = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = [{"name": x.get("name"), "in": x.get("in"), "required": x.get("required", False),
                       "description": x.get("description", "")} for x in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {})
            ops.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""), "tag": (op.get("tags") or ["other"])[0],
                        "params": params, "body": ", ".join(body.keys()), "body_schema": _schema_name(body),
                        "responses": sorted(op.get("responses", {}).keys())})
    tags = [t["name"] for t in spec.get("tags", [])]
    pg = Page(request, p)
    schemas = spec.get("components", {}).get("schemas", {})
    return pg.render("apidocs.html", spec=spec, ops=ops, tags=tags, schemas=schemas, title="API reference")


def _schema_name(content: dict) -> str:
    for v in content.values():
        ref = (v.get("schema") or {}).get("$ref", "")
        if ref:
            return ref.rsplit("/", 1)[-1]
    return ""


__all__ = ["router", "_read_flash", "AuthenticationError", "PermissionDenied", "Response"]
