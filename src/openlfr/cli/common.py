"""Options and helpers shared by the CLI modules."""

from __future__ import annotations

from enum import Enum


class Detector(str, Enum):
    retina = "retina"
    hog = "hog"
    cnn = "cnn"


def engine_from_options(detector: "Detector | str", upsample: int | None, min_face: int | None, flip: bool = False):
    """The engine of ``faces`` and ``compare``: they report dlib's descriptors and distances, so the
    second model (fused only against a watchlist's cohorts) is not run for them."""
    from ..engine.pipeline import FaceEngine

    name = detector.value if isinstance(detector, Detector) else detector
    return FaceEngine(detector=name, upsample=upsample, min_face=min_face, flip=flip, second="none")


def governance_exit(e: BaseException) -> tuple[int, str] | None:
    """The exit code and message label of a governance error, the same for every command: 1 a
    broken audit chain, 4 refused (permission), 3 a failed login, 2 any other refusal or a store
    error; None: not a governance error."""
    from ..governance.audit import AuditChainBroken
    from ..governance.errors import AuthenticationError, GovernanceError, PermissionDenied, StoreError

    if isinstance(e, AuditChainBroken):
        return 1, "error"
    if isinstance(e, PermissionDenied):
        return 4, "refused"
    if isinstance(e, AuthenticationError):
        return 3, "error"
    if isinstance(e, (GovernanceError, StoreError)):
        return 2, "error"
    return None
