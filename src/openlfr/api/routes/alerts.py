"""Alerts: list, detail, probe crop and reference image, adjudication, engagement outcome."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ...governance import queries
from ...governance.errors import PermissionDenied
from ...web.deps import ApiError, ctx, permit, user
from ...web.security import Principal
from ..media import IMAGE_CONTENT, image_response
from ..schemas import MAX_ID, AdjudicationBody, ErrorOut, OutcomeBody

router = APIRouter(prefix="/api", tags=["alerts"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}}
AlertId = Path(ge=1, le=MAX_ID)
JPEG = {200: {"content": IMAGE_CONTENT}}


@router.get("/alerts", responses=ERR, summary="Alerts, newest first, without crops (alert.read)")
def list_alerts(request: Request, deployment_id: Optional[int] = Query(None, ge=1, le=MAX_ID),
                limit: int = Query(200, ge=1, le=1000), p: Principal = Depends(permit("alert.read"))) -> list[dict]:
    return ctx(request).gov.list_alerts(p.actor, deployment_id, limit=limit)


@router.get("/alerts/{alert_id}", responses=ERR, summary="One alert: subject, distance, camera, time, quality, decisions (alert.read)")
def get_alert(request: Request, alert_id: int = AlertId, p: Principal = Depends(permit("alert.read"))) -> dict:
    return queries.alert_detail(ctx(request).gov, p.actor, alert_id)


@router.get("/alerts/{alert_id}/probe.jpg", response_class=Response, responses={**ERR, **JPEG},
            summary="The probe crop of an alert, re-encoded (alert.read)")
def probe(request: Request, alert_id: int = AlertId, p: Principal = Depends(permit("alert.read"))) -> Response:
    crop, _ = ctx(request).gov.alert_media(p.actor, alert_id)
    return image_response(crop, f"the probe crop of alert {alert_id}")


@router.get("/alerts/{alert_id}/reference", response_class=Response, responses={**ERR, **JPEG},
            summary="The reference image of the alert's subject, re-encoded as the type found by decoding (alert.read)")
def reference(request: Request, alert_id: int = AlertId, p: Principal = Depends(permit("alert.read"))) -> Response:
    data, _ = queries.alert_reference(ctx(request).gov, p.actor, alert_id)
    return image_response(data, f"the reference image of alert {alert_id}")


def decider(request: Request, p: Principal = Depends(user)) -> Principal:
    """Operators decide (alert.adjudicate), supervisors revise (alert.revise); governance's
    adjudication rule says which applies to this alert."""
    try:
        ctx(request).gov.authorize(p.actor, "alert.revise" if p.actor.can("alert.revise") else "alert.adjudicate")
    except PermissionDenied as e:
        raise ApiError(403, "forbidden", str(e)) from None
    return p


@router.post("/alerts/{alert_id}/adjudication", responses=ERR,
             summary="True or false alert (alert.adjudicate); changing a decision needs a reason (alert.revise after an outcome or the end)")
def adjudicate(body: AdjudicationBody, request: Request, alert_id: int = AlertId,
               p: Principal = Depends(decider)) -> dict:
    c = ctx(request)
    c.gov.adjudicate(p.actor, alert_id, body.decision, body.note, body.reason)
    c.notifier.poke()
    return queries.alert_detail(c.gov, p.actor, alert_id)


@router.post("/alerts/{alert_id}/outcome", responses=ERR,
             summary="Engagement result (confirmed/unconfirmed) and outcome of a true alert (alert.outcome)")
def outcome(body: OutcomeBody, request: Request, alert_id: int = AlertId, p: Principal = Depends(permit("alert.outcome"))) -> dict:
    c = ctx(request)
    c.gov.record_outcome(p.actor, alert_id, body.result, body.outcome, body.note)
    c.notifier.poke()
    return queries.alert_detail(c.gov, p.actor, alert_id)
