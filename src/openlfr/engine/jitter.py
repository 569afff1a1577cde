"""dlib-style jitter of face chips (``num_jitters`` in ``compute_face_descriptor``).

Each copy is a random crop inside the central 144x144 of the 150x150 chip: shifted by up to
+-2%, scaled by 0.97-1.0, rotated by up to +-3 degrees, resampled to 150x150 (bilinear), and
mirrored left-right with probability 0.5.
"""

from __future__ import annotations

import cv2
import numpy as np


def jitter_chip(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = chip.shape[0]
    inner = size - 6  # shrink_rect(rect, 3)
    shift = rng.uniform(-0.02, 0.02, 2) * inner
    scale = rng.uniform(0.97, 1.0)
    angle = rng.uniform(-3.0, 3.0)
    side = inner * scale
    c0 = (size - 1) / 2
    # Output pixel p samples the source at c0 + shift + (side/size) * R(angle) (p - c0).
    m = cv2.getRotationMatrix2D((c0, c0), angle, side / size)
    m[:, 2] += shift
    out = cv2.warpAffine(
        chip,
        m,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    if rng.random() > 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def jitter_chips(chips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.stack([jitter_chip(c, rng) for c in chips])
