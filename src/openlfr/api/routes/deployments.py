"""Deployments: plan, authorise, start, stop, list, show (with the dashboard figures), report."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Path, Request

from ...web.dashboard import explain, figures
from ...web.deps import ctx, permit
from ...web.security import Principal
from ..schemas import MAX_ID, DeploymentPlan, ErrorOut, NoteBody, StopBody

router = APIRouter(prefix="/api", tags=["deployments"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}}
DepId = Path(ge=1, le=MAX_ID)


def _view(gov, actor, deployment_id: int) -> dict:
    d = gov.get_deployment(actor, deployment_id)
    d["figures"] = figures(gov, d)
    return d


@router.get("/deployments", responses=ERR, summary="All deployments (deployment.read)")
def list_deployments(request: Request, p: Principal = Depends(permit("deployment.read"))) -> list[dict]:
    return ctx(request).gov.list_deployments(p.actor)


@router.post("/deployments", status_code=201, responses=ERR, summary="Plan a deployment (deployment.plan)")
def plan_deployment(body: DeploymentPlan, request: Request, p: Principal = Depends(permit("deployment.plan"))) -> dict:
    gov = ctx(request).gov
    d = gov.plan_deployment(p.actor, **body.model_dump())
    return _view(gov, p.actor, d.id)


@router.get("/deployments/{deployment_id}", responses=ERR,
            summary="One deployment with faces seen, alerts, adjudications and both published figures (deployment.read)")
def get_deployment(request: Request, deployment_id: int = DepId, p: Principal = Depends(permit("deployment.read"))) -> dict:
    return _view(ctx(request).gov, p.actor, deployment_id)


@router.get("/deployments/{deployment_id}/report", responses=ERR, summary="The deployment report (deployment.read)")
def report(request: Request, deployment_id: int = DepId, p: Principal = Depends(permit("deployment.read"))) -> dict:
    gov = ctx(request).gov
    d = _view(gov, p.actor, deployment_id)
    f = d["figures"]
    d["explanation"] = explain(f)
    return d


@router.post("/deployments/{deployment_id}/authorise", responses=ERR, summary="Authorise a planned deployment (deployment.authorise)")
def authorise(request: Request, body: Optional[NoteBody] = None, deployment_id: int = DepId,
              p: Principal = Depends(permit("deployment.authorise"))) -> dict:
    gov = ctx(request).gov
    gov.authorise_deployment(p.actor, deployment_id, body.note if body else "")
    return _view(gov, p.actor, deployment_id)


@router.post("/deployments/{deployment_id}/start", responses=ERR, summary="Start an authorised deployment in its window (deployment.start)")
def start(request: Request, deployment_id: int = DepId, p: Principal = Depends(permit("deployment.start"))) -> dict:
    c = ctx(request)
    c.gov.start_deployment(p.actor, deployment_id)
    c.notifier.poke()
    return _view(c.gov, p.actor, deployment_id)


@router.post("/deployments/{deployment_id}/stop", responses=ERR,
             summary="Stop an active deployment (its snapshot is deleted) or cancel a planned one (deployment.stop)")
def stop(request: Request, body: Optional[StopBody] = None, deployment_id: int = DepId,
         p: Principal = Depends(permit("deployment.stop"))) -> dict:
    c = ctx(request)
    c.gov.stop_deployment(p.actor, deployment_id, body.reason if body else "stopped")
    c.notifier.poke()
    return _view(c.gov, p.actor, deployment_id)
