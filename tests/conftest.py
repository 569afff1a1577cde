"""Shared test fixtures: real data from ../shared when present (skipped cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from dbtesting import db_url, fast_passwords  # noqa: F401  (fixtures offered to every test)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OPENLFR_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real face photo that scikit-image ships (RGB uint8, 512x512)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(autouse=True, scope="session")
def _audit_key_outside_home(tmp_path_factory):
    """The audit chain's key (governance/audit_key.py) in a test folder, never in ~/.config."""
    if not os.environ.get("OPENLFR_AUDIT_KEY") and not os.environ.get("OPENLFR_AUDIT_KEY_FILE"):
        os.environ["OPENLFR_AUDIT_KEY_FILE"] = str(tmp_path_factory.mktemp("audit-key") / "audit.key")
    yield
