"""Watchlists and subjects: list, create, enrol (quality-checked uploads), expire, erase; images."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import Response

from ...governance import queries
from ...web.deps import ctx, permit
from ...web.enrol import backfill_second, enrol, read_uploads
from ...web.security import Principal
from ..media import IMAGE_CONTENT, image_response
from ..schemas import MAX_ID, BackfillOut, Category, Done, ErrorOut, ExpireBody, Name, WatchlistCreate, clean_text

router = APIRouter(prefix="/api", tags=["watchlists"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}


@router.get("/watchlists", responses=ERR, summary="Watchlists with subject and template counts; second_missing: unexpired subjects' templates "
                                                    "without the second model's (watchlist.read)")
def list_watchlists(request: Request, p: Principal = Depends(permit("watchlist.read"))) -> list[dict]:
    return ctx(request).gov.list_watchlists(p.actor)


@router.post("/watchlists", status_code=201, responses=ERR, summary="Create a watchlist (watchlist.create)")
def create_watchlist(body: WatchlistCreate, request: Request, p: Principal = Depends(permit("watchlist.create"))) -> dict:
    w = ctx(request).gov.create_watchlist(p.actor, body.name, body.description)
    return {"id": w.id, "name": w.name, "description": w.description}


@router.get("/watchlists/{watchlist}/subjects", responses=ERR, summary="A watchlist's subjects (watchlist.read)")
def list_subjects(request: Request, watchlist: Name = Path(), p: Principal = Depends(permit("watchlist.read"))) -> list[dict]:
    return ctx(request).gov.list_subjects(p.actor, watchlist)


@router.post("/watchlists/{watchlist}/subjects", status_code=201, responses={**ERR, 422: {"model": ErrorOut}},
             summary="Enrol a subject (or add images): each image is quality-checked; the report says why any was rejected (watchlist.enrol)")
async def enrol_subject(
    request: Request,
    watchlist: Annotated[Name, Path()],
    ref: Annotated[clean_text(200, 1), Form(description="Your reference for the subject")],
    name: Annotated[clean_text(200, 1), Form()],
    category: Annotated[Category, Form()],
    reason: Annotated[clean_text(2000, 1), Form(description="Reason for inclusion")],
    expires_at: Annotated[clean_text(40, 1), Form(description="Expiry, ISO 8601")],
    images: Annotated[list[UploadFile], File(description="Reference images")],
    p: Annotated[Principal, Depends(permit("watchlist.enrol"))],
    source: Annotated[clean_text(500), Form()] = "",
    taken_at: Annotated[Optional[clean_text(40)], Form()] = None,
    low_quality_reason: Annotated[clean_text(2000), Form(description="Accept images that fail only the size or sharpness "
                                                         "check, for this reason (audited; matches held to the stricter band)")] = "",
) -> dict:
    from starlette.concurrency import run_in_threadpool

    uploads = await read_uploads(images)
    return await run_in_threadpool(enrol, request, p, watchlist, ref, name, category.value, reason, expires_at, source, taken_at, uploads,
                                   low_quality_reason)


@router.post("/watchlists/{watchlist}/backfill-second", response_model=BackfillOut, responses={**ERR, 409: {"model": ErrorOut}},
             summary="Compute the second model's (SFace) template of every reference of unexpired subjects that lacks one, from "
                     "its stored image, with the server's face engine; a reference without a usable face is skipped and reported. "
                     "Running deployments keep their snapshot. 409 when the engine has no second model. Audited (watchlist.enrol)")
async def backfill_second_templates(request: Request, watchlist: Name = Path(), p: Principal = Depends(permit("watchlist.enrol"))) -> dict:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(backfill_second, request, p, watchlist)


@router.post("/subjects/{subject_id}/expire", responses=ERR, summary="Bring a subject's expiry forward (watchlist.expire)")
def expire_subject(request: Request, body: Optional[ExpireBody] = None, subject_id: int = Path(ge=1, le=MAX_ID),
                   p: Principal = Depends(permit("watchlist.expire"))) -> dict:
    s = ctx(request).gov.expire_subject(p.actor, subject_id, body.at if body else None)
    return {"id": s.id, "expires_at": s.expires_at.isoformat()}


@router.delete("/subjects/{subject_id}", responses=ERR,
               summary="Erase a subject: every image, template, snapshot entry and alert of theirs (subject.erase)")
def erase_subject(request: Request, subject_id: int = Path(ge=1, le=MAX_ID), p: Principal = Depends(permit("subject.erase"))) -> dict:
    c = ctx(request)
    counts = c.gov.erase_subject(p.actor, subject_id)
    c.notifier.poke()
    return {"erased": subject_id, **counts}


@router.get("/images/{image_id}", responses={**ERR, 200: {"content": IMAGE_CONTENT}, 409: {"model": ErrorOut}},
            response_class=Response, summary="A reference image, re-encoded as the type found by decoding (watchlist.read)")
def get_image(request: Request, image_id: int = Path(ge=1, le=MAX_ID), p: Principal = Depends(permit("watchlist.read"))) -> Response:
    data, _ = queries.reference_image(ctx(request).gov, p.actor, image_id)
    return image_response(data, f"reference image {image_id}")


__all__ = ["router", "Done"]
