"""Request and response bodies (Pydantic): validated before anything reaches governance.

Strings refuse NUL characters and unpaired surrogates (neither database stores them), numbers
refuse NaN and infinities, ids fit a 32-bit integer, times are between 1970 and 9000 and are
read as UTC when they carry no zone. Unknown fields are refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from enum import Enum
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from ..governance.roles import ROLES
from ..live.sink import AlertRecord
from ..web.times import When

MAX_ID = 2**31 - 1


def _clean(v: str) -> str:
    if "\x00" in v:
        raise ValueError("text may not contain NUL characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (unpaired surrogate)") from None
    return v


def clean_text(max_length: int, min_length: int = 0, pattern: str | None = None):
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern), AfterValidator(_clean)]


Text = clean_text(10_000)
Name = clean_text(200, 1)
Note = clean_text(2_000)
Password = clean_text(1_000, 1)
UserName = clean_text(100, 1, r"^[A-Za-z0-9._@-]+$")
Camera = clean_text(200, 1)
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
IdempotencyKey = clean_text(80, 8, r"^[A-Za-z0-9._:-]+$")


def _track(v):
    if isinstance(v, bool):
        raise ValueError("a track is a number or a short text")
    if isinstance(v, int):
        return str(v)
    return v


Track = Annotated[Union[str], BeforeValidator(_track), StringConstraints(min_length=1, max_length=100), AfterValidator(_clean)]

Role = Enum("Role", {r: r for r in ROLES}, type=str)


class Category(str, Enum):
    wanted_by_courts = "wanted_by_courts"
    wanted_on_suspicion = "wanted_on_suspicion"
    missing_or_vulnerable = "missing_or_vulnerable"
    risk_of_harm = "risk_of_harm"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# -- errors -----------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    detail: str = Field(description="What went wrong, in words")
    error: str = Field(description="unauthenticated, forbidden, not_found, refused, not_active, validation, "
                                   "rate_limited, csrf, too_large, unavailable, ...")


class ValidationItem(BaseModel):
    loc: list[str] = Field(description="Where: body, query, path or header, then the field")
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """What a 422 from request validation is (the OpenAPI document says so for every operation)."""

    detail: str = Field(description="Every problem, in words: 'field: message; ...'")
    error: str = Field(description="validation (or quality: no uploaded image passed the checks)")
    errors: list[ValidationItem] = Field(default_factory=list, description="Each problem, by field")
    report: Optional[dict] = Field(None, description="Enrolment: the quality report (why each image was rejected)")


# -- auth and tokens ----------------------------------------------------------------------------


class TokenRequest(Strict):
    username: Name
    password: Password
    name: clean_text(200) = Field("", description="A label for the token (e.g. the script using it)")
    expires_in_days: int = Field(30, ge=1, le=365)


class WorkerTokenRequest(Strict):
    deployment_id: Id
    name: clean_text(200) = Field("", description="A label (e.g. the camera host)")


class TokenOut(BaseModel):
    id: int
    kind: str
    name: str
    token: str = Field(description="The secret: shown once, stored only as a hash")
    expires_at: Optional[str]
    deployment_id: Optional[int] = None


class TokenInfo(BaseModel):
    id: int
    kind: str
    name: str
    user: Optional[str]
    deployment_id: Optional[int]
    created_at: Optional[str]
    expires_at: Optional[str]
    revoked_at: Optional[str]
    last_used_at: Optional[str]
    current: bool


class Me(BaseModel):
    name: str
    roles: list[str]
    permissions: list[str]
    kind: str
    csrf_token: Optional[str] = None


# -- users --------------------------------------------------------------------------------------


class UserCreate(Strict):
    name: UserName
    roles: list[Role] = Field(min_length=1, max_length=len(ROLES))
    password: Password


class UserChange(Strict):
    roles: Optional[list[Role]] = Field(None, min_length=1, max_length=len(ROLES))
    active: Optional[bool] = None


class PasswordChange(Strict):
    password: Password
    old_password: Optional[str] = Field(None, max_length=1000, description="Your current password: needed to change your own")


class RetentionBody(Strict):
    days: int = Field(ge=1, le=3650)


# -- watchlists -----------------------------------------------------------------------------


class WatchlistCreate(Strict):
    name: Name
    description: clean_text(5_000) = ""


class ExpireBody(Strict):
    at: Optional[When] = Field(None, description="The new expiry (default: now); an expiry is only ever brought forward")


class SkippedTemplate(BaseModel):
    template_id: int
    subject_id: int
    reason: str = Field(description="Why no second template was computed: no stored reference image, image cannot be decoded, "
                                    "no face found, no dominant face, no landmarks for the second model, the face found is not "
                                    "the template's, face engine error")
    detail: str = Field(description="About this image (may be empty)")


class BackfillOut(BaseModel):
    watchlist_id: int
    watchlist: str
    filled: int = Field(description="Templates given the second model's template")
    skipped: int = Field(description="Templates left without one (each in skipped_templates)")
    subjects: int = Field(description="Subjects that gained a template")
    reasons: dict[str, int] = Field(description="Skipped templates by reason")
    skipped_templates: list[SkippedTemplate]


# -- deployments ----------------------------------------------------------------------------


class DeploymentPlan(Strict):
    name: Name
    use_case: Name
    location: Name
    zone: Name = Field(description="Zone of recognition")
    starts_at: When
    ends_at: When
    cameras: list[Camera] = Field(min_length=1, max_length=64)
    threshold: Optional[float] = Field(None, gt=0, lt=2, description="A manual descriptor distance below which a face "
                                       "alerts (needs threshold_reason); none: the calibrated scoring model")
    threshold_reason: clean_text(500) = ""
    target_fpir: float = Field(0.001, gt=0, lt=1, description="Target false alerts per face seen")
    watchlist: Name = Field(description="Watchlist name or id")
    signage_confirmed: bool = False
    notices_confirmed: bool = False
    dpia_ref: clean_text(200) = ""
    authorising_officer: Optional[UserName] = None


class NoteBody(Strict):
    note: Note = ""


class StopBody(Strict):
    reason: clean_text(500, 1) = "stopped"


# -- alerts -----------------------------------------------------------------------------------


class AdjudicationBody(Strict):
    decision: Literal["true_alert", "false_alert"]
    note: Note = ""
    reason: Note = ""  # why an earlier decision is changed: required to change one (supervisor after an outcome or the end)


class OutcomeBody(Strict):
    result: Literal["confirmed", "unconfirmed"]
    outcome: Literal["arrest", "other_action", "no_further_action", "no_engagement"]
    note: Note = ""


# -- camera workers ---------------------------------------------------------------------------

MAX_CROP_B64 = 4 * 1024 * 1024


def decode_b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class WorkerAlert(Strict):
    """One alert from a camera worker. ``idempotency_key`` makes re-delivery a no-op."""

    idempotency_key: IdempotencyKey
    camera: Camera
    track: Track
    subject_id: Id
    distance: float = Field(ge=0, le=4)
    distances: list[Annotated[float, Field(ge=0, le=4)]] = Field(default_factory=list, max_length=64)
    frame: Optional[int] = Field(None, ge=0, le=2**62)
    media_time: Optional[float] = Field(None, ge=0, le=1e9)
    occurred_at: Optional[When] = None
    crop: str = Field(min_length=4, max_length=MAX_CROP_B64, description="The probe crop: a JPEG, base64")
    template: Union[Annotated[list[float], Field(min_length=128, max_length=128)], Annotated[str, Field(min_length=684, max_length=684)]] = Field(
        description="The probe template: 128 floats, or their 512 little-endian float32 bytes in base64")
    # how it was decided (optional: an older worker does not say)
    threshold: Optional[float] = Field(None, ge=0, le=100, description="The distance threshold of this face (the subject's, for this probe)")
    score: Optional[float] = Field(None, ge=-1e4, le=1e4, description="The scoring model's score compared (fused when second_model is named, else dlib's Z)")
    score_threshold: Optional[float] = Field(None, ge=-1e4, le=1e4, description="The probe band's Z threshold it was compared with")
    band: Optional[clean_text(8, 1, r"^[A-Za-z0-9._-]+$")] = Field(None, description="The probe's quality band used")
    second_model: Optional[clean_text(16, 1, r"^[A-Za-z0-9._-]+$")] = Field(None, description="The second model whose score was fused (e.g. sface)")

    def record(self) -> AlertRecord:
        """The alert as governance records it; ValueError for a crop or template that does not decode."""
        if isinstance(self.template, str):
            raw = decode_b64(self.template, "template")
            if len(raw) != 512:
                raise ValueError(f"template is 512 bytes (128 float32) in base64, got {len(raw)}")
            template = np.frombuffer(raw, "<f4").astype(np.float32)
        else:
            template = np.array(self.template, np.float32)
        return AlertRecord(
            camera=self.camera, track=self.track, subject_id=self.subject_id, distance=self.distance,
            crop=decode_b64(self.crop, "crop"), template=template, distances=tuple(self.distances),
            frame=self.frame, media_time=self.media_time, occurred_at=self.occurred_at, threshold=self.threshold,
            score=self.score, score_threshold=self.score_threshold, band=self.band, second_model=self.second_model)


class WorkerAlertOut(BaseModel):
    alert_id: int
    duplicate: bool = Field(description="True when this idempotency key was delivered before (nothing changed)")


class FacesSeenBody(Strict):
    idempotency_key: IdempotencyKey
    camera: Camera
    count: int = Field(ge=0, le=10_000_000)
    too_poor: int = Field(0, ge=0, le=10_000_000, description="Of which too poor to search (below the lowest quality band)")


class WorkerStatus(BaseModel):
    deployment_id: int
    active: bool
    status: str
    ends_at: str


class Done(BaseModel):
    ok: bool = True
    detail: str = ""
