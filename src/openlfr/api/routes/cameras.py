"""Camera health over the API: a deployment's cameras (anyone who reads deployments) and the
reports camera workers post with their token (see ``openlfr.governance.cameras``)."""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from ...governance import cameras as health
from ...web.deps import ctx, permit, worker
from ...web.security import Principal
from ..schemas import MAX_ID, ErrorOut

router = APIRouter(prefix="/api", tags=["deployments"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}}


class CameraOut(BaseModel):
    deployment_id: int
    camera: str
    state: str = Field(description="up, reconnecting, down, ended, or waiting (no worker has reported it yet)")
    worker: Optional[str] = Field(None, description="The host and worker token (or user) that runs it")
    fps: Optional[float] = None
    frames: int
    dropped: int
    faces_seen: int
    last_frame_at: Optional[str] = None
    reported_at: Optional[str] = None
    down_since: Optional[str] = None
    down_for_s: Optional[float] = None
    warning: bool = Field(description="Down or reconnecting for longer than the warning delay")
    message: str = ""


class CameraReportItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera: str = Field(min_length=1, max_length=200)
    state: Literal["up", "reconnecting", "down", "ended"]
    fps: float = Field(0.0, ge=0, le=1000)
    frames: int = Field(0, ge=0, le=2**62)
    dropped: int = Field(0, ge=0, le=2**62)
    faces_seen: int = Field(0, ge=0, le=2**62)
    last_frame_at: Optional[str] = Field(None, max_length=40, description="ISO 8601 time of the last frame read")
    message: str = Field("", max_length=500)


class CameraReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field("", max_length=200, description="The worker's host name")
    cameras: list[CameraReportItem] = Field(min_length=1, max_length=64)


@router.get("/deployments/{deployment_id}/cameras", response_model=list[CameraOut], responses=ERR,
            summary="Each camera's health: state, frames/s, dropped frames, faces seen, last frame, worker (deployment.read)")
def list_cameras(request: Request, deployment_id: int = Path(ge=1, le=MAX_ID),
                 p: Principal = Depends(permit("deployment.read"))) -> list[dict]:
    return health.cameras(ctx(request).gov, p.actor, deployment_id)


@router.post("/worker/cameras", response_model=list[CameraOut], responses=ERR, tags=["workers"],
             summary="Report the health of this worker's cameras (worker token)")
def report_cameras(body: CameraReport, request: Request, p: Principal = Depends(worker)) -> list[dict]:
    c = ctx(request)
    who = f"{body.host or 'unknown host'} (worker token {p.token_id})"
    views = health.report(c.gov, p.actor, p.deployment_id, who, [x.model_dump() for x in body.cameras])
    c.notifier.poke()
    return views
