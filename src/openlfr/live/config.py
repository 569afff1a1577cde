"""One validated model for the options of a live run (``openlfr run``), from which the runner starts.

Every knob that changes what is detected, tracked, embedded or alerted lives here, with its
default and its unit, so a deployment can record exactly how it ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class DetectionConfig(BaseModel):
    """Where and how often the detector runs (see docs/live.md for how these were chosen)."""

    model_config = ConfigDict(extra="forbid")

    detector: Literal["retina", "hog", "cnn"] = "retina"
    upsample: int = Field(0, ge=0, le=2, description="detector upsampling of the (scaled) image")
    threshold: float = Field(0.0, ge=-2, le=2, description="HOG detection threshold (dlib's adjust_threshold)")
    window_threshold: float = Field(
        -0.5, ge=-2, le=2,
        description="HOG threshold in the windows around tracks (lower keeps turned faces tracked)",
    )
    score_threshold: float = Field(0.5, gt=0, lt=1, description="RetinaFace score threshold in full scans")
    window_score_threshold: float = Field(
        0.3, gt=0, lt=1, description="RetinaFace score threshold in the windows around tracks (keeps turned faces)",
    )
    scale: float = Field(
        0.0, ge=0.0, le=4.0,
        description="resize factor of the frame for the full-frame scan; 0 = automatic (min_face_px, scan_pixels)",
    )
    min_face_px: int = Field(24, ge=8, description="automatic scale: enlarge small frames to find faces this small")
    scan_pixels: Optional[int] = Field(
        None, ge=10_000,
        description="automatic scale: most pixels a full scan looks at; None = the detector's (scheduler.PROFILES)",
    )
    every: int = Field(0, ge=0, le=1000, description="scan every N frames; 0 = automatic (2 per second)")
    motion: bool = Field(True, description="between full scans, scan only what changed since the previous scan")
    full_every: int = Field(0, ge=0, le=10000, description="scan the whole zone every N frames; 0 = every 2 s")
    track_every: int = Field(
        2, ge=1, le=100, description="re-detect around each live track every N frames (tracking in between)"
    )
    track_face_px: Optional[int] = Field(
        None, ge=24, le=400,
        description="windows around tracks are scaled so the face is about this wide; None = the detector's",
    )
    min_face: Optional[int] = Field(None, ge=8, description="ignore detections smaller than this (px, full frame)")
    roi: Optional[tuple[float, float, float, float]] = Field(
        None, description="scan only this region (left, top, right, bottom as fractions of the frame)"
    )

    @field_validator("roi")
    @classmethod
    def _roi_ok(cls, v):
        if v is not None:
            l, t, r, b = v
            if not (0 <= l < r <= 1 and 0 <= t < b <= 1):
                raise ValueError("roi must be fractions 0 <= left < right <= 1, 0 <= top < bottom <= 1")
        return v


class TrackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_absence_s: float = Field(1.0, gt=0, description="a track ends after this long without a detection")
    min_hits: int = Field(2, ge=1, description="detections before a track counts as a face seen")
    iou_gate: float = Field(0.1, ge=0, le=1, description="least overlap of a detection with a track's prediction")
    appearance_weight: float = Field(0.3, ge=0, le=1, description="weight of colour appearance in association")
    reid_distance: float = Field(
        0.45, ge=0, le=2, description="a new track whose template is this close to a lost track's continues it"
    )


class BestShotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shots: int = Field(3, ge=1, le=20, description="best shots kept (and fused) per track")
    min_gain: float = Field(0.05, ge=0, le=1, description="quality gain over the worst kept shot to embed again")
    min_gap_frames: int = Field(3, ge=0, description="frames between two embeddings of one track")


class AlertConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: Optional[float] = Field(None, gt=0, lt=2, description="distance threshold; None = from target_fpir")
    target_fpir: float = Field(0.001, gt=0, lt=1, description="target false alerts per face seen (default threshold)")
    cooldown_s: float = Field(30.0, ge=0, description="per subject and camera: no second alert within this time")
    min_improvement: float = Field(0.01, ge=0, description="distance gain for an alert update")


class RunConfig(BaseModel):
    """Options of one live run."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(min_length=1)
    watchlist: Optional[Path] = None  # from the deployment's snapshot when run for a deployment
    detection: DetectionConfig = DetectionConfig()
    tracking: TrackingConfig = TrackingConfig()
    bestshot: BestShotConfig = BestShotConfig()
    alerts: AlertConfig = AlertConfig()
    queue_size: int = Field(4, ge=1, le=256, description="frames buffered per camera")
    realtime: Optional[bool] = Field(
        None,
        description="read files at their frame rate, newest frame wins (as a camera); "
        "default: files as fast as processed without dropping, live sources in real time",
    )
    folder_fps: float = Field(25.0, gt=0, description="frame rate given to image folders")
    reconnect_max_s: float = Field(30.0, gt=0, description="longest wait between reconnection attempts")
    stall_timeout_s: float = Field(5.0, gt=0, description="a live source with no frame for this long is reconnected")
    second_model: Literal["auto", "sface", "none"] = Field(
        "auto", description="the second face model fused in the score (SFace, with RetinaFace): auto = when installed; "
        "sface = required; none = dlib's descriptor alone",
    )
    embed_batch: int = Field(32, ge=1, le=512)
    embed_threads: int = Field(1, ge=1, le=256, description="onnxruntime threads of the shared embedder")
    embed_wait_ms: float = Field(2.0, ge=0, description="the shared embedder waits this long to fill a batch")
    annotate: Optional[Path] = None
    max_frames: Optional[int] = Field(None, ge=1, description="stop each source after this many frames")
    maintain_every_s: float = Field(30.0, gt=0, description="deployment runs: purge and schedule check interval")
    health_every_s: float = Field(2.0, gt=0, description="deployment runs: camera health report interval (and at once on a change)")
    shape: Literal["auto", "threads", "processes"] = Field(
        "auto",
        description="threads: one process, a thread per camera; processes: camera processes around one "
        "inference service (live/multiproc); auto: from the hardware and the number of cameras",
    )
    camera_processes: int = Field(0, ge=0, le=1024, description="processes shape: camera processes; 0 = one per core but one")
    detect_in: Literal["auto", "camera", "service"] = Field(
        "auto",
        description="processes shape: where RetinaFace runs: in each camera process (camera) or in the inference "
        "service, batched across cameras (service); auto: the service when the engine's runtime is CUDA, else each "
        "camera. The CNN always runs in the service, HOG always in the cameras",
    )

    @model_validator(mode="after")
    def _unique_sources(self):
        if len(set(self.sources)) != len(self.sources):
            raise ValueError("the same source is given twice")
        return self
