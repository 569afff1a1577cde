"""Stored images as responses: decoded and re-encoded, served as the type found by decoding.

A reference image or probe crop is whatever bytes were uploaded; a "JPEG" may carry HTML in a
comment or after its end, and a file named ``poly.html`` was once served as ``text/html``. So
no stored bytes are served as they are: ``engine.images.reencode`` decodes them (with the size
limits) and writes a clean JPEG (from a JPEG) or PNG (from anything else). Bytes that do not
decode are not served at all (409 ``not_an_image``).
"""

from __future__ import annotations

from fastapi.responses import Response

from ..engine.images import ImageError, reencode
from ..web.deps import ApiError

IMAGE_CONTENT = {"image/jpeg": {}, "image/png": {}}


def image_response(data: bytes, what: str) -> Response:
    try:
        clean, media_type = reencode(data, what)
    except ImageError:
        raise ApiError(409, "not_an_image", f"{what} does not decode as an image; it is not served") from None
    return Response(clean, media_type=media_type, headers={"Cache-Control": "no-store", "Content-Disposition": "inline"})
