"""What the governance modules share: categories, decisions, statuses and small records."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..store.types import utc
from . import audit

# Reasons for inclusion on a watchlist (the categories police forces publish).
CATEGORIES = ("wanted_by_courts", "wanted_on_suspicion", "missing_or_vulnerable", "risk_of_harm")
# A volunteer of a test deployment (a "blue" watchlist entry) has this category and no other.
VOLUNTEER = "volunteer"
RESULTS = ("confirmed", "unconfirmed")
OUTCOMES = ("arrest", "other_action", "no_further_action", "no_engagement")
STATUSES = ("planned", "authorised", "active", "ended", "cancelled")

DEFAULT_RETENTION_DAYS = 31
RETENTION_KEY = "alert_retention_days"
USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")


MODEL_LABELS = {"sface": "SFace"}  # how a second model's name is written for people


def model_label(name: str) -> str:
    return MODEL_LABELS.get(name, name)


def alert_decision(a) -> dict:
    """How a stored alert (an ``AlertRow``) was decided, for the alert views: its threshold, the
    score and the band's Z threshold it was compared with, the band used, the second model when
    the score was fused, and ``decided``, the same in words. None where not recorded (stored
    before migration 0009, or sent by an older camera worker)."""
    out = {"threshold": a.threshold, "score": a.score, "score_threshold": a.score_threshold, "band": a.band,
           "second_model": a.second_model}
    text = f"distance {a.distance:.3f} "
    text += "(threshold not recorded)" if a.threshold is None else f"(threshold {a.threshold:.3f} for this face)"
    if a.score is not None and a.score_threshold is not None:
        band = f" (band {a.band})" if a.band else ""
        if a.second_model:
            text += f"; fused with {model_label(a.second_model)}: score {a.score:.2f} against {a.score_threshold:.2f}{band}"
        else:
            text += f"; dlib's score {a.score:.2f} against {a.score_threshold:.2f}{band}"
    out["decided"] = text
    return out


@dataclass
class NewImage:
    """A reference image to enrol: its bytes, its template (128 floats), the second model's
    template when there is one, and where it came from."""

    data: bytes
    template: np.ndarray | bytes
    quality: float = 0.0
    source: str = ""
    taken_at: datetime | None = None
    media_type: str = "image/jpeg"
    low_quality_band: str | None = None  # enrolled below the quality gate (override): its band
    low_quality_reason: str = ""  # why (required with the band; audited)
    # the second model's (SFace's) feature of the same face (128 floats; ``Face.second``), or None
    # (or a row of NaN, as in ``Watchlist.second_templates``) when it has none
    second_template: np.ndarray | bytes | None = None


@dataclass
class AutoPurged:
    """What the automatic purge (``system:purge``, ``system:schedule``) did since the last purge a
    person ran: ``openlfr purge`` reports it, so its output is true even when nothing is left to do."""

    alerts: int = 0
    snapshots: int = 0
    deployments_ended: list[int] = field(default_factory=list)
    entries: int = 0  # the audit entries they wrote (purges that deleted something, stops, snapshot deletions)
    first_at: str | None = None
    last_at: str | None = None
    since: str | None = None  # the previous purge report (None: since the log began)

    def to_json(self) -> dict:
        return {"alerts": self.alerts, "snapshots": self.snapshots, "deployments_ended": self.deployments_ended,
                "entries": self.entries, "first_at": self.first_at, "last_at": self.last_at, "since": self.since}


@dataclass
class PurgeReport:
    alerts: int = 0
    snapshots: int = 0
    deployments_ended: list[int] = field(default_factory=list)
    retention_days: int = DEFAULT_RETENTION_DAYS
    automatic: AutoPurged | None = None  # a person's purge: what the automatic purge did before it

    @property
    def anything(self) -> bool:
        return bool(self.alerts or self.snapshots or self.deployments_ended)

    def to_json(self) -> dict:
        out = {"alerts": self.alerts, "snapshots": self.snapshots, "deployments_ended": self.deployments_ended,
               "retention_days": self.retention_days}
        if self.automatic is not None:
            out["automatic_since_last_report"] = self.automatic.to_json()
        return out


class Exported(int):
    """How many entries an export wrote, and the anchor of the last one."""

    def __new__(cls, n: int, anchor: audit.Anchor | None):
        obj = super().__new__(cls, n)
        obj.anchor = anchor
        return obj


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat()


