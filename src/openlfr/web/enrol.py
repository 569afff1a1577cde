"""Enrolment of uploaded reference images, for the API and the console alike: the same quality
checks as ``openlfr watchlist add``.

``read_uploads`` reads a request's images (each at most ``MAX_IMAGE_BYTES``); ``enrol`` checks
the form's fields, runs the enroller and enrols the subject through governance (one function,
called by the API's ``POST /api/watchlists/{watchlist}/subjects`` and the console's enrolment
form). ``FaceEnroller`` loads the face engine on first use (once per process) and runs
``openlfr.watchlist.enrol.enrol_subjects`` on the uploads, written for the duration of the check
to a private temporary folder (mode 0700) that is removed straight after.

``backfill_second`` runs ``Governance.backfill_second_templates`` (the second model's templates of
references enrolled without it) with the same engine, the server's one, holding it for the run
(``FaceEnroller.engine_held``): an enrolment meanwhile waits, as it does for another enrolment.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from fastapi import Request, UploadFile
from PIL import Image
from pydantic import TypeAdapter, ValidationError

from ..engine.images import RequestTooLarge
from ..governance.errors import GovernanceError
from ..governance.service import NewImage
from .deps import ApiError, ctx
from .security import Principal
from .times import When

MAX_IMAGES = 20
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")


class EnrolmentRejected(Exception):
    """No upload passed the quality checks (the report says why each failed)."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass
class Upload:
    filename: str
    data: bytes
    media_type: str = ""


@dataclass
class EnrolResult:
    images: list[NewImage]
    report: dict = field(default_factory=dict)


def _safe_name(i: int, name: str) -> str:
    suffix = Path(name or "").suffix.lower()
    if not suffix.isascii() or len(suffix) > 6 or not suffix[1:].isalnum():
        suffix = ".img"
    return f"{i:03d}{suffix}"


class FaceEnroller:
    """Quality-checked templates for uploaded images, with the engine's report."""

    def __init__(self, min_face: int = 40, engine=None):
        self.min_face = min_face
        self._engine = engine
        self._lock = threading.Lock()

    def engine(self):
        if self._engine is None:
            from ..engine.pipeline import FaceEngine

            self._engine = FaceEngine()
        return self._engine

    @contextmanager
    def engine_held(self):
        """The engine, for another use than enrolment (the backfill), one user at a time."""
        with self._lock:
            yield self.engine()

    def __call__(self, ref: str, name: str, category: str, uploads: list[Upload], source: str = "", taken_at=None,
                 low_quality_reason: str = "") -> EnrolResult:
        """``low_quality_reason``: accept images that fail only the size or sharpness check (audited)."""
        from ..engine.images import ImageError, PixelBudget, RequestTooLarge, probe
        from ..watchlist.enrol import EnrolmentReport, NoAcceptedImage, enrol_subjects
        from ..watchlist.model import Subject

        # Headers first (nothing decoded): each image's size and the request's pixels in all.
        budget, early, kinds = PixelBudget(), [], {}
        for i, up in enumerate(uploads):
            label = up.filename or f"image {i + 1}"
            try:
                w, h, fmt = probe(up.data, label)
            except RequestTooLarge:
                raise
            except ImageError as e:
                early.append((i, str(e).removeprefix(f"{label}: ")))
                continue
            budget.take(w, h, label)  # RequestTooLarge: the whole request is refused (413)
            kinds[i] = fmt
        with self._lock, tempfile.TemporaryDirectory(prefix="openlfr-enrol-") as tmp:
            os.chmod(tmp, 0o700)
            paths, names, index = [], {}, {}
            for i, up in enumerate(uploads):
                p = Path(tmp) / _safe_name(i, up.filename)
                names[str(p)] = up.filename or p.name
                if i in kinds:
                    p.write_bytes(up.data)
                    paths.append(str(p))
                    index[str(p)] = i
            rejected_early = [(str(Path(tmp) / _safe_name(i, uploads[i].filename)), why) for i, why in early]
            try:
                if not paths:
                    raise NoAcceptedImage("no image passed the quality checks", EnrolmentReport(ref, excluded_subjects=[ref]))
                wl, report = enrol_subjects([Subject(ref, name, category, paths)], self.engine(), min_face=self.min_face, source=ref,
                                            accept_low_quality=bool(low_quality_reason.strip()))
            except NoAcceptedImage as e:  # the checks' own report: no image is decoded again
                e.report.rejected[:0] = rejected_early
                raise EnrolmentRejected("no image passed the quality checks", _report(e.report, names)) from None
            report.rejected[:0] = rejected_early
            images = []
            for j in range(wl.n_templates):
                i = index[wl.template_image[j]]
                up = uploads[i]
                images.append(NewImage(
                    data=up.data, template=wl.templates[j], quality=float(wl.template_quality[j]),
                    source=source or up.filename or "upload", taken_at=taken_at,
                    low_quality_band=wl.template_low_quality_band[j] if wl.template_low_quality_band else None,
                    second_template=None if wl.second_templates is None else wl.second_templates[j],
                    low_quality_reason=low_quality_reason.strip(),
                    media_type=Image.MIME.get(kinds[i]) or "application/octet-stream"))
            return EnrolResult(images, _report(report, names))


def _report(report, names: dict[str, str]) -> dict:
    j = report.to_json()
    for a in j["accepted"]:
        a["path"] = names.get(a["path"], a["path"])
    for r in j["rejected"]:
        r["path"] = names.get(r["path"], r["path"])
    j["source"] = "upload"
    return j


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
    enroller = server_enroller(request)
    override = {"low_quality_reason": low_quality_reason} if (low_quality_reason or "").strip() else {}
    try:
        result = enroller(ref, name, category, uploads, source=source, taken_at=taken, **override)
    except RequestTooLarge as e:
        raise ApiError(413, "too_large", f"images: {e}") from None
    subj = c.gov.enrol_subject(p.actor, watchlist, ref, name, category, reason, exp, result.images)
    return {"id": subj.id, "ref": subj.ref, "name": subj.name, "category": subj.category,
            "expires_at": subj.expires_at.isoformat(), "images_added": len(result.images), "report": result.report}


def server_enroller(request: Request):
    """The app's enroller (``create_app(enroller=...)``), else a ``FaceEnroller`` made on first use."""
    c = ctx(request)
    if c.enroller is None:
        c.enroller = FaceEnroller()
    return c.enroller


def backfill_second(request: Request, p: Principal, watchlist: int | str) -> dict:
    """Shared by the API and the console: ``Governance.backfill_second_templates`` with the
    server's face engine (the enroller's). An enroller without one (a test's stand-in) is refused
    as an engine without the second model is (``GovernanceError``)."""
    c = ctx(request)
    held = getattr(server_enroller(request), "engine_held", None)
    if held is None:
        raise GovernanceError("this server's enroller has no face engine to compute the second model's templates with")
    with held() as engine:
        return c.gov.backfill_second_templates(p.actor, watchlist, engine)


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
