"""Times given in requests: read as UTC when they carry no zone, between the years 1970 and 9000.

``When`` is the field type of the API's bodies (``openlfr.api.schemas``) and of the enrolment
form's expiry and date taken (``openlfr.web.enrol``), which the API and the console share.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator


def _when(v: datetime) -> datetime:
    try:
        v = v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("time out of range") from None
    if not (1970 <= v.year <= 9000):
        raise ValueError("time out of range (years 1970 to 9000)")
    return v


When = Annotated[datetime, AfterValidator(_when)]
