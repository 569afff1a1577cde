"""Reading images from files and bytes into RGB uint8 arrays, with clear errors and bounded cost.

Every image that comes from a user (``openlfr faces``, enrolment, API uploads, folder sources,
stored images served back) goes through here, so the limits live here:

- only the still-image formats in ``FORMATS`` are opened (no Pillow plugin that runs an
  external program, such as EPS through Ghostscript);
- the size is checked from the header, before any pixel is decoded: at most ``MAX_PIXELS``
  pixels, ``MAX_SIDE`` pixels a side and, past ``ASPECT_FROM`` pixels a side, an aspect ratio of ``MAX_ASPECT``:1 (a 12 KB PNG of
  100000x1000 pixels would otherwise cost gigabytes in the detector's image pyramid);
- a request that brings several images shares a ``PixelBudget`` (``MAX_REQUEST_PIXELS``);
- each image is decoded once; 16-bit grey images are scaled to 8 bits (not saturated).

``reencode`` turns stored bytes into a clean image of the type found by decoding (JPEG stays
JPEG, anything else becomes PNG), without metadata or trailing bytes: what the API and console
serve, so that a "JPEG" with HTML in a comment never reaches a browser as anything but pixels.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # e.g. 8660 x 5773; a 50 MP camera photo still passes
MAX_SIDE = 20_000
MAX_ASPECT = 10.0  # longest side / shortest side (a 360-degree panorama is 2:1, 32:9 is 3.6:1)
ASPECT_FROM = 2048  # the aspect limit applies to images with a side longer than this (a small strip is harmless)
MAX_REQUEST_PIXELS = 100_000_000  # all the images of one request (an enrolment of up to 20 images)
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")  # a JPEG with several pictures opens as MPO
JPEG_QUALITY = 95
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(ValueError):
    """An input that is not a readable image, or one too large to decode safely."""


class RequestTooLarge(ImageError):
    """The images of one request bring more pixels in all than ``MAX_REQUEST_PIXELS``."""


class PixelBudget:
    """The pixels one request may decode in all; ``take`` raises ``RequestTooLarge`` past the limit."""

    def __init__(self, limit: int = MAX_REQUEST_PIXELS):
        self.limit, self.used = int(limit), 0

    def take(self, width: int, height: int, name: str) -> None:
        n = int(width) * int(height)
        if self.used + n > self.limit:
            raise RequestTooLarge(f"{name}: the images of this request exceed {self.limit:,} pixels in all "
                             f"({self.used:,} before this {width}x{height} image)")
        self.used += n


def check_size(width: int, height: int, name: str) -> None:
    """Refuse sizes that would cost too much to decode or to search for faces (from the header)."""
    if width < 1 or height < 1:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name}: image too large ({width}x{height} = {width * height:,} pixels, limit {MAX_PIXELS:,})")
    if max(width, height) > MAX_SIDE:
        raise ImageError(f"{name}: image too large ({width}x{height}, limit {MAX_SIDE:,} pixels a side)")
    aspect = max(width, height) / min(width, height)
    if aspect > MAX_ASPECT and max(width, height) > ASPECT_FROM:
        raise ImageError(f"{name}: image too elongated ({width}x{height}, aspect ratio {aspect:.0f}:1, limit {MAX_ASPECT:g}:1)")


def _open(fp, name: str) -> Image.Image:
    """Open lazily (the header only) and check the size; the caller decodes."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():  # the size is refused below, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (format not recognised; accepted: {', '.join(FORMATS)})") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None
    try:
        check_size(im.width, im.height, name)
    except ImageError:
        im.close()
        raise
    return im


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in SIXTEEN_BIT:
        a = np.asarray(im).astype(np.uint32)  # 0..65535 for 16-bit images
        a = ((np.minimum(a, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _decode(fp, name: str, budget: PixelBudget | None = None) -> tuple[np.ndarray, str]:
    """(RGB uint8 array, format): header checked, decoded once, EXIF orientation applied."""
    im = _open(fp, name)
    try:
        with im:
            if budget is not None:
                budget.take(im.width, im.height, name)
            fmt = im.format or ""
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im), fmt
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None


def _readable(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file")
    return p


def load_image(path: str | Path, budget: PixelBudget | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), EXIF orientation applied; bounded (see module)."""
    p = _readable(path)
    try:
        with open(p, "rb") as f:
            return _decode(f, str(p), budget)[0]
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None


def decode_image(data: bytes, name: str = "<upload>", budget: PixelBudget | None = None) -> np.ndarray:
    if not data:
        raise ImageError(f"{name}: empty data")
    return _decode(io.BytesIO(data), name, budget)[0]


def probe(data: bytes, name: str = "<upload>") -> tuple[int, int, str]:
    """(width, height, format) from the header alone, size limits checked; nothing is decoded."""
    if not data:
        raise ImageError(f"{name}: empty data")
    with _open(io.BytesIO(data), name) as im:
        return im.width, im.height, im.format or ""


def reencode(data: bytes, name: str = "<stored image>") -> tuple[bytes, str]:
    """(clean bytes, media type) of an image: decoded and written again, nothing else kept.

    A JPEG stays a JPEG (quality 95); every other format becomes a PNG (lossless). Raises
    ``ImageError`` for bytes that are not an image within the limits.
    """
    rgb, fmt = _decode(io.BytesIO(data), name) if data else (None, "")
    if rgb is None:
        raise ImageError(f"{name}: empty data")
    out = io.BytesIO()
    if fmt in ("JPEG", "MPO"):
        Image.fromarray(rgb).save(out, "JPEG", quality=JPEG_QUALITY)
        return out.getvalue(), "image/jpeg"
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue(), "image/png"


def media_type(data: bytes, name: str = "<upload>") -> str:
    """The media type of an image found from its header (``ImageError`` when it is none)."""
    return Image.MIME.get(probe(data, name)[2], "application/octet-stream")


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept grey (H, W), RGB or RGBA uint8 arrays; return contiguous RGB uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ImageError(f"image must be uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    elif not (a.ndim == 3 and a.shape[2] == 3):
        raise ImageError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    return np.ascontiguousarray(a)
