"""Frame sources: video files, RTSP/HTTP streams, webcams and image folders, through OpenCV.

``open_source(spec)`` picks the kind from the spec:

- a digit string (``"0"``) is a webcam (device index);
- ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://`` URLs are streams
  (MJPEG over HTTP, HLS, RTSP... whatever OpenCV's FFmpeg reads);
- a directory is an image folder (sorted by name, one frame per image);
- anything else is a video file.

Every source yields :class:`Frame` objects (RGB uint8). Files and folders end; live sources
(streams, webcams) are *live*: a :class:`SourceReader` keeps them going, reporting a dead or
stalled stream and reconnecting it with exponential back-off, while other cameras go on.
Frames are only ever in memory (privacy invariant): nothing here writes a frame anywhere.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own chatter (quiet); we report errors ourselves
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class SourceError(RuntimeError):
    """A source that cannot be opened or read."""


@dataclass
class Frame:
    camera: str
    index: int  # frame number in its source (counts every frame read, dropped ones included)
    time: float  # seconds since the source started (media time for files and folders)
    wall: float  # time.monotonic() when the frame was read
    image: np.ndarray = field(repr=False)  # RGB uint8 (H, W, 3)
    grey: np.ndarray | None = field(default=None, repr=False)  # (H, W) uint8, made by the reader


@dataclass
class SourceEvent:
    camera: str
    state: str  # opened | down | reconnecting | reconnected | ended | skipped | error
    message: str = ""
    attempt: int = 0
    wall: float = field(default_factory=time.monotonic)


def redact(spec: str) -> str:
    """A source spec fit for logs: any user:password in a URL is hidden."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", spec)


def default_name(spec: str) -> str:
    """A camera name: a file's or folder's name, ``webcam0``, or the (redacted) URL."""
    if _URL.match(spec) and not spec.startswith("file://"):
        return redact(spec)
    if spec.isdigit():
        return f"webcam{spec}"
    return Path(spec.rstrip("/")).name or spec


def source_kind(spec: str) -> str:
    m = _URL.match(spec)
    if m:
        scheme = m.group(1).lower()
        if scheme == "file":
            return "file"
        if scheme not in STREAM_SCHEMES:
            raise SourceError(f"{redact(spec)}: unsupported URL scheme {scheme!r} (use one of {', '.join(STREAM_SCHEMES)})")
        return "stream"
    if spec.isdigit():
        return "webcam"
    if Path(spec).is_dir():
        return "folder"
    return "file"


class FrameSource:
    """Base: ``open()`` (raises SourceError), ``read()`` -> RGB array or None at end/failure, ``close()``."""

    kind = "?"
    live = False

    def __init__(self, spec: str, name: str | None = None):
        self.spec = spec
        self.name = name or default_name(spec)
        self.fps = 25.0
        self.frame_count: int | None = None  # known for files and folders

    def open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self) -> tuple[np.ndarray | None, float | None]:
        """(RGB frame, media time or None); (None, None) at end of a file or on a failed read."""
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


class CaptureSource(FrameSource):
    """Anything cv2.VideoCapture reads: files, stream URLs, webcams."""

    def __init__(self, spec: str, name: str | None = None, kind: str = "file", timeout_s: float = 5.0):
        super().__init__(spec, name)
        self.kind = kind
        self.live = kind in ("stream", "webcam")
        self.timeout_ms = int(timeout_s * 1000)
        self.cap: cv2.VideoCapture | None = None
        self._index = 0

    def open(self) -> None:
        self.close()
        if self.kind == "file":
            p = Path(self.spec[7:] if self.spec.startswith("file://") else self.spec)
            if not p.exists():
                raise SourceError(f"{p}: no such file")
            if p.stat().st_size == 0:
                raise SourceError(f"{p}: empty file")
            cap = cv2.VideoCapture(str(p))
        elif self.kind == "webcam":
            cap = cv2.VideoCapture(int(self.spec))
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
            cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            what = {"file": "not a readable video", "webcam": "no such camera or busy", "stream": "cannot connect"}
            raise SourceError(f"{self.name}: {what[self.kind]}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else 25.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = n if self.kind == "file" and n > 0 else None
        self.cap = cap
        self._index = 0

    def read(self):
        if self.cap is None:
            return None, None
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return None, None
        t = self._index / self.fps if self.kind == "file" else None
        self._index += 1
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB), t
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class FolderSource(FrameSource):
    """Images of a folder in name order, one frame each, at ``fps`` media time."""

    kind = "folder"

    def __init__(self, spec: str, name: str | None = None, fps: float = 25.0):
        super().__init__(spec, name)
        self.fps = fps
        self.files: list[Path] = []
        self._i = 0
        self.skipped: list[str] = []

    def open(self) -> None:
        d = Path(self.spec)
        if not d.is_dir():
            raise SourceError(f"{d}: not a folder")
        key = lambda p: [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", p.name)]  # noqa: E731
        self.files = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=key)
        if not self.files:
            raise SourceError(f"{d}: no images in folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.frame_count = len(self.files)
        self._i = 0

    def read(self):
        from ..engine.images import ImageError, load_image

        while self._i < len(self.files):
            p = self.files[self._i]
            t = self._i / self.fps
            self._i += 1
            try:
                return load_image(p), t
            except ImageError as e:
                self.skipped.append(str(e))
                log.warning("folder source %s: skipped %s", self.name, e)
        return None, None


def open_source(spec: str, name: str | None = None, *, folder_fps: float = 25.0, timeout_s: float = 5.0) -> FrameSource:
    """A FrameSource for a spec (not opened yet; call ``.open()``)."""
    spec = str(spec)
    if not spec.strip():
        raise SourceError("empty source")
    kind = source_kind(spec)
    if kind == "folder":
        return FolderSource(spec, name, fps=folder_fps)
    return CaptureSource(spec, name, kind=kind, timeout_s=timeout_s)


class FrameQueue:
    """Bounded frame buffer between a source and its worker.

    ``drop=True`` (live sources): when full, the *oldest* frame is dropped so the newest wins;
    every dropped frame is counted. ``drop=False`` (files read as fast as processed): ``put``
    waits for room, nothing is dropped.
    """

    def __init__(self, maxsize: int = 4, drop: bool = True):
        self.maxsize = maxsize
        self.drop = drop
        self.dropped = 0
        self._q: deque = deque()
        self._cv = threading.Condition()
        self._closed = False

    def put(self, item, stop: threading.Event | None = None) -> bool:
        with self._cv:
            while not self.drop and len(self._q) >= self.maxsize and not self._closed:
                if stop is not None and stop.is_set():
                    return False
                self._cv.wait(0.1)
            if self._closed:
                return False
            if len(self._q) >= self.maxsize:
                self._q.popleft()
                self.dropped += 1
            self._q.append(item)
            self._cv.notify_all()
            return True

    def get(self, timeout: float | None = None):
        """Next frame; None on timeout; raises EOFError once closed and drained."""
        with self._cv:
            end = None if timeout is None else time.monotonic() + timeout
            while not self._q:
                if self._closed:
                    raise EOFError
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cv.wait(left)
            item = self._q.popleft()
            self._cv.notify_all()
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def discard(self) -> int:
        """Drop whatever is buffered (on shutdown); returns how many, counted as dropped."""
        with self._cv:
            n = len(self._q)
            self._q.clear()
            self.dropped += n
            self._cv.notify_all()
            return n

    def __len__(self) -> int:
        return len(self._q)


class SourceReader(threading.Thread):
    """Reads one source into a FrameQueue; reconnects live sources with exponential back-off.

    - End of a file or folder ends the source (``ended``).
    - A live source that fails to read (dead, or stalled beyond the capture's read timeout) is
      reported ``down``, closed, and reopened after 0.5 s, 1 s, 2 s... up to ``reconnect_max_s``;
      ``reconnecting`` is reported for each failed attempt and ``reconnected`` when it is back.
    - ``realtime``: files are paced at their frame rate (as a camera would deliver them).
    """

    def __init__(
        self,
        source: FrameSource,
        queue: FrameQueue,
        stop: threading.Event,
        on_event: Callable[[SourceEvent], None] = lambda e: None,
        realtime: bool = False,
        reconnect_base_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        max_frames: int | None = None,
        grey: bool = True,
    ):
        super().__init__(name=f"source-{source.name}", daemon=True)
        self.grey = grey  # also give a grey copy (made here, in parallel with the worker)
        self.source = source
        self.queue = queue
        self.stop = stop
        self.on_event = on_event
        self.realtime = realtime
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        self.max_frames = max_frames
        self.frames_read = 0
        self.reconnects = 0
        self.opened_at = time.monotonic()

    def _event(self, state: str, message: str = "", attempt: int = 0) -> None:
        ev = SourceEvent(self.source.name, state, message, attempt)
        try:
            self.on_event(ev)
        except Exception:  # pragma: no cover - a reporting failure must not stop the camera
            log.exception("source event handler failed")

    def _reconnect(self) -> bool:
        attempt = 0
        while not self.stop.is_set():
            attempt += 1
            delay = min(self.reconnect_max_s, self.reconnect_base_s * 2 ** (attempt - 1))
            if self.stop.wait(delay):
                return False
            try:
                self.source.open()
            except SourceError as e:
                self._event("reconnecting", f"attempt {attempt} failed: {e}; next in "
                            f"{min(self.reconnect_max_s, self.reconnect_base_s * 2 ** attempt):.1f} s", attempt)
                continue
            self.reconnects += 1
            self._event("reconnected", f"after {attempt} attempt(s)", attempt)
            return True
        return False

    def run(self) -> None:
        src = self.source
        start = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.max_frames is not None and self.frames_read >= self.max_frames:
                    self._event("ended", f"{self.frames_read} frames (frame limit)")
                    break
                image, media_t = src.read()
                now = time.monotonic()
                if image is None:
                    if not src.live:
                        self._event("ended", f"{self.frames_read} frames")
                        break
                    self._event("down", "no frame (stream dead or stalled); reconnecting")
                    src.close()
                    if not self._reconnect():
                        break
                    continue
                t = media_t if media_t is not None else now - start
                if self.realtime and media_t is not None:
                    lag = start + media_t - now
                    if lag > 0 and self.stop.wait(lag):
                        break
                grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if self.grey else None
                frame = Frame(src.name, self.frames_read, float(t), time.monotonic(), image, grey)
                self.frames_read += 1
                if not self.queue.put(frame, self.stop):
                    break
        except Exception as e:  # pragma: no cover - defensive: report, never take other cameras down
            log.exception("source %s failed", src.name)
            self._event("error", f"{type(e).__name__}: {e}")
        finally:
            src.close()
            self.queue.close()
