"""Real face photos that installed packages ship, for the demo and benchmarks (no download).

- ``astronaut``: Eileen Collins, NASA (public domain), from scikit-image.
- ``grace_hopper``: Grace Hopper (public domain), from matplotlib's sample data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import load_image


def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def grace_hopper_path() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def grace_hopper() -> np.ndarray:
    return load_image(grace_hopper_path())


SAMPLES = {"astronaut": astronaut, "grace_hopper": grace_hopper}
