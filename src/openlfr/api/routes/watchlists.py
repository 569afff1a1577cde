"""Watchlists and subjects: list, create, enrol (quality-checked uploads), expire, erase; images."""

from __future__ import annotations

from typing import Annotated, Optional

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from ...engine.images import RequestTooLarge
from ...governance import queries
from ...web.deps import ApiError, ctx, permit
from ...web.security import Principal
from ..enrol import FaceEnroller, Upload
from ..media import IMAGE_CONTENT, image_response
from ..schemas import MAX_ID, Category, Done, ErrorOut, ExpireBody, Name, When, WatchlistCreate, clean_text

router = APIRouter(prefix="/api", tags=["watchlists"])
ERR = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}}
MAX_IMAGES = 20
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")


@router.get("/watchlists", responses=ERR, summary="Watchlists with subject and template counts (watchlist.read)")
def list_watchlists(request: Request, p: Principal = Depends(permit("watchlist.read"))) -> list[dict]:
    return ctx(request).gov.list_watchlists(p.actor)


@router.post("/watchlists", status_code=201, responses=ERR, summary="Create a watchlist (watchlist.create)")
def create_watchlist(body: WatchlistCreate, request: Request, p: Principal = Depends(permit("watchlist.create"))) -> dict:
    w = ctx(request).gov.create_watchlist(p.actor, body.name, body.description)
    return {"id": w.id, "name": w.name, "description": w.description}


@router.get("/watchlists/{watchlist}/subjects", responses=ERR, summary="A watchlist's subjects (watchlist.read)")
def list_subjects(request: Request, watchlist: Name = Path(), p: Principal = Depends(permit("watchlist.read"))) -> list[dict]:
    return ctx(request).gov.list_subjects(p.actor, watchlist)


_when = TypeAdapter(Optional[When])


def _parse_when(value: str | None, field: str):
    if value is None or value == "":
        return None
    try:
        return _when.validate_python(value)
    except ValidationError:
        raise ApiError(422, "validation", f"{field}: give an ISO 8601 date/time between 1970 and 9000") from None


def enrol(request: Request, p: Principal, watchlist: str, ref: str, name: str, category: str, reason: str,
          expires_at: str, source: str, taken_at: str | None, uploads: list[Upload], low_quality_reason: str = "") -> dict:
    """Shared by the API and the console: checks, quality report, governance enrolment."""
    c = ctx(request)
    exp = _parse_when(expires_at, "expires_at")
    if exp is None:
        raise ApiError(422, "validation", "expires_at: an expiry is required")
    taken = _parse_when(taken_at, "taken_at")
    if not uploads:
        raise ApiError(422, "validation", "images: at least one reference image is needed")
    if len(uploads) > MAX_IMAGES:
        raise ApiError(422, "validation", f"images: at most {MAX_IMAGES} at a time")
    enroller = c.enroller
    if enroller is None:
        enroller = c.enroller = FaceEnroller()
    override = {"low_quality_reason": low_quality_reason} if (low_quality_reason or "").strip() else {}
    try:
        result = enroller(ref, name, category, uploads, source=source, taken_at=taken, **override)
    except RequestTooLarge as e:
        raise ApiError(413, "too_large", f"images: {e}") from None
    subj = c.gov.enrol_subject(p.actor, watchlist, ref, name, category, reason, exp, result.images)
    return {"id": subj.id, "ref": subj.ref, "name": subj.name, "category": subj.category,
            "expires_at": subj.expires_at.isoformat(), "images_added": len(result.images), "report": result.report}


async def read_uploads(images: list[UploadFile]) -> list[Upload]:
    out = []
    for f in images or []:
        data = await f.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError(413, "too_large", f"{f.filename}: an image may be at most {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
        if not data:
            continue
        out.append(Upload(filename=(f.filename or "image")[:200], data=data, media_type=f.content_type if f.content_type in IMAGE_TYPES else ""))
    return out


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


__all__ = ["router", "enrol", "read_uploads", "Done"]
