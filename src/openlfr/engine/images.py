"""Reading images from files and bytes into RGB uint8 arrays, with clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 100_000_000  # refuse decompression bombs and absurd sizes (e.g. 10000 x 10000)


class ImageError(ValueError):
    """An input that is not a readable image."""


def _decode(fp, name: str) -> np.ndarray:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(fp) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"{name}: image too large ({im.width}x{im.height}, limit {MAX_PIXELS:,} pixels)")
            im.load()
            im = ImageOps.exif_transpose(im)
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (format not recognised)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3), EXIF orientation applied."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such file")
    if p.is_dir():
        raise ImageError(f"{p}: is a directory, not an image")
    if p.stat().st_size == 0:
        raise ImageError(f"{p}: empty file")
    try:
        with open(p, "rb") as f:
            return _decode(f, str(p))
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None


def decode_image(data: bytes, name: str = "<upload>") -> np.ndarray:
    if not data:
        raise ImageError(f"{name}: empty data")
    return _decode(io.BytesIO(data), name)


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
