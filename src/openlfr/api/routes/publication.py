"""Publishing a deployment's public transparency record (administrators; audited)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from ...governance import publication
from ...web.deps import ctx, permit
from ...web.security import Principal
from ..schemas import MAX_ID, ErrorOut

router = APIRouter(prefix="/api", tags=["deployments"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut}}


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authorising_rank: str = Field(min_length=2, max_length=60, description="The authorising officer's rank (never a name)")


@router.post("/deployments/{deployment_id}/publish", responses=ERR,
             summary="Publish an ended deployment's record on /public (deployment.publish)")
def publish(body: PublishBody, request: Request, deployment_id: int = Path(ge=1, le=MAX_ID),
            p: Principal = Depends(permit("deployment.publish"))) -> dict:
    c = ctx(request)
    publication.publish(c.gov, p.actor, deployment_id, body.authorising_rank)
    c.notifier.poke()
    return {"deployment_id": deployment_id, "published": True, **publication.published(c.gov)[deployment_id]}


@router.delete("/deployments/{deployment_id}/publish", responses=ERR,
               summary="Withdraw a deployment's public record (deployment.publish)")
def unpublish(request: Request, deployment_id: int = Path(ge=1, le=MAX_ID),
              p: Principal = Depends(permit("deployment.publish"))) -> dict:
    c = ctx(request)
    was = publication.unpublish(c.gov, p.actor, deployment_id)
    return {"deployment_id": deployment_id, "published": False, "was_published": was}


@router.get("/published", responses=ERR, summary="Which deployments are published (deployment.read)")
def list_published(request: Request, p: Principal = Depends(permit("deployment.read"))) -> dict:
    return {str(k): v for k, v in publication.published(ctx(request).gov).items()}
