"""Alert decisions: one alert per track and subject, updates, a per-subject cool-down per camera.

A track's template is searched against the watchlist each time it improves. For every subject
whose distance is *below* the threshold:

- no alert yet for (camera, track, subject) and none for (camera, subject) within the
  cool-down: a new **alert** is raised;
- an alert exists for this (track, subject) and the new distance beats it by at least
  ``min_improvement``: the alert is **updated** (same alert id, better shot), not repeated;
- the subject matched on this camera less than ``cooldown_s`` ago (the cool-down runs from the
  latest sighting, so someone lingering in view does not re-alert every ``cooldown_s``) from another track (the same
  person whose track was broken, or who walks past again): the track is linked to that alert
  and may update it, and no second alert is raised (counted as ``suppressed``).

So the number of alerts for a person is bounded by the number of their tracks, and within the
cool-down by one per camera. Alerts keep the probe chip and template in memory for whoever
persists them (the store); nothing here writes or logs them.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Alert:
    id: int
    camera: str
    track: int
    subject: str  # subject id
    name: str
    subject_index: int
    distance: float
    threshold: float
    frame: int
    time: float  # media time of the frame in its source (s)
    wall: float  # monotonic clock when raised or last updated
    latency_s: float  # from the track's first frame being read to this alert
    category: str = ""
    # how it was decided (the scoring model's; None for a run with one fixed threshold): the score
    # compared (fused when ``second_model``, else dlib's Z), the band's Z threshold it was compared
    # with, the probe's band used (after the reference band rule)
    score: float | None = None
    score_threshold: float | None = None
    band: str | None = None
    second_model: str | None = None
    updates: int = 0
    tracks: list[int] = field(default_factory=list)  # tracks linked to this alert
    chip: np.ndarray | None = field(default=None, repr=False)  # probe crop (memory; the store persists it)
    template: np.ndarray | None = field(default=None, repr=False)

    def to_json(self, event: str = "alert") -> dict:
        return {
            "event": event,
            "camera": self.camera,
            "track": self.track,
            "subject": self.subject,
            "name": self.name,
            "distance": round(float(self.distance), 4),
            "frame": int(self.frame),
            "time": round(float(self.time), 3),
            "alert": self.id,
            "threshold": round(float(self.threshold), 4),
            "score": None if self.score is None else round(float(self.score), 4),
            "score_threshold": None if self.score_threshold is None else round(float(self.score_threshold), 4),
            "band": self.band,
            "second_model": self.second_model,
            "latency_ms": round(1000 * self.latency_s, 1),
        }

    def decided(self, threshold: float, how: "AlertDecision | None") -> None:
        """Set the threshold and how the current shot was decided."""
        self.threshold = float(threshold)
        if how is None:
            self.score = self.score_threshold = self.band = self.second_model = None
        else:
            self.score = None if how.score is None else float(how.score)
            self.score_threshold = None if how.score_threshold is None else float(how.score_threshold)
            self.band = how.band
            self.second_model = how.second_model


@dataclass(frozen=True)
class AlertDecision:
    """How a match was decided, beside its threshold (the optional 4th element of a match):
    the score compared, the band's Z threshold, the band used, the second model when fused."""

    score: float | None
    score_threshold: float | None
    band: str | None = None
    second_model: str | None = None


@dataclass
class AlertEvent:
    kind: str  # "alert" | "update"
    alert: Alert
    track: int  # the track whose shot caused it (may differ from alert.track for a linked track)


class AlertPolicy:
    def __init__(self, threshold: float, cooldown_s: float = 30.0, min_improvement: float = 0.01, subjects=None):
        self.threshold = float(threshold)
        self.cooldown_s = float(cooldown_s)
        self.min_improvement = float(min_improvement)
        self.subjects = subjects  # list of watchlist Subjects (id, name, category), optional
        self.alerts: list[Alert] = []
        self.suppressed = 0
        self.updates = 0
        self._by_track: dict[tuple[str, int, int], Alert] = {}
        self._last: dict[tuple[str, int], Alert] = {}
        self._seen: dict[tuple[str, int], float] = {}  # latest media time a subject matched, per camera
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _subject(self, index: int) -> tuple[str, str, str]:
        if self.subjects is None:
            return str(index), str(index), ""
        s = self.subjects[index]
        return s.id, s.name, getattr(s, "category", "")

    def consider(
        self,
        camera: str,
        track: int,
        matches: list[tuple[int, float]],
        frame: int,
        t: float,
        first_wall: float,
        chip: np.ndarray | None = None,
        template: np.ndarray | None = None,
        now: float | None = None,
    ) -> list[AlertEvent]:
        """Decide on a track's (subject index, distance[, threshold[, how]]) search results; returns new
        alerts and updates. A per-match threshold (the scoring model's, for that subject and the
        probe's band) replaces the policy's single one; ``how`` (an ``AlertDecision``, or anything
        with its attributes) says how it was decided, and is kept on the alert with the threshold
        (an update's, with its better shot)."""
        now = time.monotonic() if now is None else now
        out: list[AlertEvent] = []
        with self._lock:
            for m in matches:  # (subject, distance[, that subject's threshold[, how it was decided]])
                subj, dist = int(m[0]), float(m[1])
                limit = float(m[2]) if len(m) > 2 else self.threshold
                how = m[3] if len(m) > 3 else None
                if subj < 0 or not dist < limit:
                    continue
                key = (camera, track, subj)
                alert = self._by_track.get(key)
                prev_seen = self._seen.get((camera, subj))
                self._seen[(camera, subj)] = t if prev_seen is None else max(prev_seen, t)
                if alert is None:
                    last = self._last.get((camera, subj))
                    seen = prev_seen
                    if last is not None and (track in last.tracks or (seen is not None and 0 <= t - seen < self.cooldown_s)):
                        self._by_track[key] = last
                        last.tracks.append(track)
                        self.suppressed += 1
                        alert = last
                    else:
                        sid, name, cat = self._subject(subj)
                        alert = Alert(
                            next(self._ids), camera, track, sid, name, subj, dist, limit, frame, t, now,
                            max(0.0, now - first_wall), cat, tracks=[track],
                            chip=None if chip is None else chip.copy(),
                            template=None if template is None else np.array(template, np.float32),
                        )
                        alert.decided(limit, how)
                        self.alerts.append(alert)
                        self._by_track[key] = alert
                        self._last[(camera, subj)] = alert
                        out.append(AlertEvent("alert", alert, track))
                        continue
                if dist < alert.distance - self.min_improvement:
                    alert.distance, alert.frame, alert.time, alert.wall = dist, frame, t, now
                    alert.decided(limit, how)
                    alert.updates += 1
                    if chip is not None:
                        alert.chip = chip.copy()
                    if template is not None:
                        alert.template = np.array(template, np.float32)
                    self.updates += 1
                    out.append(AlertEvent("update", alert, track))
        return out

    def track_ended(self, camera: str, track: int) -> None:
        """Forget the per-track keys of an ended track (its alerts stay)."""
        with self._lock:
            for key in [k for k in self._by_track if k[0] == camera and k[1] == track]:
                del self._by_track[key]

    def merge_tracks(self, camera: str, keep: int, other: int) -> None:
        """Two tracks turned out to be one person: ``other``'s alerts now belong to ``keep``."""
        with self._lock:
            for (cam, tr, subj), alert in list(self._by_track.items()):
                if cam == camera and tr == other:
                    del self._by_track[(cam, tr, subj)]
                    self._by_track.setdefault((cam, keep, subj), alert)
                    if keep not in alert.tracks:
                        alert.tracks.append(keep)

    def per_subject(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.alerts:
            out[a.subject] = out.get(a.subject, 0) + 1
        return out
