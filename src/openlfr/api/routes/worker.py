"""Camera workers (``openlfr run --server URL --deployment ID``): the run, alerts, faces seen, status.

Only a worker token (bound to one deployment) is accepted here. An alert or a faces-seen count
carries an idempotency key, committed in the same transaction as what it delivers: delivering
it again (after a lost reply, or from the worker's disk buffer) changes nothing and answers
with the same alert id.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends, Request
from sqlalchemy.exc import IntegrityError

from ...web.deps import ApiError, ctx, worker
from ...web.security import Principal
from ..schemas import (
    ErrorOut,
    FacesSeenBody,
    WorkerAlert,
    WorkerAlertOut,
    WorkerStatus,
)

router = APIRouter(prefix="/api/worker", tags=["workers"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}}


@router.get("/run", responses=ERR, summary="The deployment's frozen watchlist snapshot, threshold and cameras")
def run(request: Request, p: Principal = Depends(worker)) -> dict:
    gov = ctx(request).gov
    r = gov.open_run(p.actor, p.deployment_id)
    return {
        "deployment_id": r.deployment_id, "name": r.name, "threshold": r.threshold, "cameras": r.cameras,
        "starts_at": r.starts_at.isoformat(), "ends_at": r.ends_at.isoformat(),
        "subjects": [{"id": s.id, "name": s.name, "category": s.category} for s in r.subjects],
        "template_subject_ids": [int(i) for i in r.template_subject_ids],
        "templates": base64.b64encode(r.watchlist_templates.astype("<f4").tobytes()).decode("ascii"),
        "threshold_evidence": r.threshold_evidence,
        "template_low_quality_band": list(r.template_low_quality_band),
        # the second model's templates, row-aligned with ``templates`` (NaN rows: none); null: none has one
        "second_templates": None if r.second_templates is None
        else base64.b64encode(np.asarray(r.second_templates).astype("<f4").tobytes()).decode("ascii"),
    }


@router.post("/alerts", response_model=WorkerAlertOut, responses=ERR, summary="Record (or update) one alert")
def post_alert(body: WorkerAlert, request: Request, p: Principal = Depends(worker)) -> WorkerAlertOut:
    c = ctx(request)
    seen, alert_id = c.gov.delivery(body.idempotency_key, p.token_id)
    if seen:
        return WorkerAlertOut(alert_id=alert_id or 0, duplicate=True)
    try:
        record = body.record()
    except ValueError as e:
        raise ApiError(422, "validation", str(e)) from None
    try:  # the alert and its idempotency key commit together: a re-delivery can never make a second one
        alert_id = c.gov.record_alert(p.actor, p.deployment_id, record, delivery=(body.idempotency_key, p.token_id))
    except IntegrityError:  # a concurrent delivery of the same key won the race
        seen, alert_id = c.gov.delivery(body.idempotency_key, p.token_id)
        if not seen:
            raise
        return WorkerAlertOut(alert_id=alert_id or 0, duplicate=True)
    c.gov.forget_deliveries()
    c.notifier.poke()
    return WorkerAlertOut(alert_id=alert_id, duplicate=False)


@router.post("/faces-seen", responses=ERR, summary="Add faces seen (finished tracks) on a camera")
def faces_seen(body: FacesSeenBody, request: Request, p: Principal = Depends(worker)) -> dict:
    c = ctx(request)
    seen, _ = c.gov.delivery(body.idempotency_key, p.token_id)
    if not seen:
        try:  # the count and its idempotency key commit together: counted exactly once
            c.gov.count_faces_seen(p.actor, p.deployment_id, body.camera, body.count, delivery=(body.idempotency_key, p.token_id),
                                   too_poor=body.too_poor)
        except IntegrityError:
            seen, _ = c.gov.delivery(body.idempotency_key, p.token_id)
            if not seen:
                raise
            return {"ok": True, "duplicate": True}
        c.gov.forget_deliveries()
        c.notifier.poke()
    return {"ok": True, "duplicate": seen}


@router.get("/status", response_model=WorkerStatus, responses=ERR, summary="Is the deployment still running?")
def status(request: Request, p: Principal = Depends(worker)) -> WorkerStatus:
    gov = ctx(request).gov
    gov.enforce_schedule()
    d = gov.get_deployment(p.actor, p.deployment_id)
    return WorkerStatus(deployment_id=d["id"], active=gov.is_running(d["id"]), status=d["status"], ends_at=d["ends_at"])


