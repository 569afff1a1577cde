"""Frame sources: files, folders, MJPEG over HTTP served here (including one that dies and comes
back, and one that stalls), the bounded queue (newest frame wins, drops counted)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from openlfr.live.sources import (
    FolderSource,
    Frame,
    FrameQueue,
    SourceError,
    SourceReader,
    default_name,
    open_source,
    redact,
    source_kind,
)


def write_video(path: Path, n: int = 12, size=(160, 120), fps: float = 20.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n):
        img = np.full((size[1], size[0], 3), (10 * i) % 250, np.uint8)
        cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        w.write(img)
    w.release()
    return path


def collect(reader: SourceReader, q: FrameQueue, timeout: float = 20.0) -> list[Frame]:
    frames = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            f = q.get(timeout=0.2)
        except EOFError:
            break
        if f is not None:
            frames.append(f)
    return frames


def test_kinds_and_names(tmp_path):
    assert source_kind("0") == "webcam" and default_name("0") == "webcam0"
    assert source_kind("rtsp://cam.local/stream") == "stream"
    assert source_kind("http://127.0.0.1:8080/x.mjpg") == "stream"
    assert source_kind(str(tmp_path)) == "folder"
    assert source_kind(str(tmp_path / "clip.mp4")) == "file"
    with pytest.raises(SourceError, match="unsupported URL scheme"):
        source_kind("ftp://host/x")
    assert redact("rtsp://admin:secret@10.0.0.5/live") == "rtsp://***@10.0.0.5/live"
    assert "secret" not in default_name("rtsp://admin:secret@cam/live")
    with pytest.raises(SourceError):
        open_source("  ")


def test_file_source_reads_every_frame_and_ends(tmp_path):
    path = write_video(tmp_path / "clip.mp4", n=12, fps=20.0)
    src = open_source(str(path))
    src.open()
    assert src.kind == "file" and not src.live and src.frame_count == 12 and src.fps == pytest.approx(20.0)
    q = FrameQueue(2, drop=False)
    events = []
    r = SourceReader(src, q, threading.Event(), events.append)
    r.start()
    frames = collect(r, q)
    r.join(5)
    assert [f.index for f in frames] == list(range(12))
    assert frames[5].time == pytest.approx(5 / 20.0)
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].grey.shape == (120, 160)
    assert [e.state for e in events] == ["ended"]
    assert q.dropped == 0


def test_file_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4")).open()
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match="empty file"):
        open_source(str(tmp_path / "empty.mp4")).open()
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 50)
    with pytest.raises(SourceError, match="not a readable video"):
        open_source(str(tmp_path / "text.mp4")).open()


def test_folder_source_order_skip_and_empty(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((40, 50, 3), i, np.uint8))
    (tmp_path / "frame3.jpg").write_bytes(b"broken")
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(str(tmp_path), folder_fps=10)
    assert isinstance(src, FolderSource)
    src.open()
    assert src.frame_count == 4
    q = FrameQueue(8, drop=False)
    r = SourceReader(src, q, threading.Event())
    r.start()
    frames = collect(r, q)
    assert [int(f.image[0, 0, 0]) for f in frames] == [1, 2, 10]  # natural order, broken one skipped
    assert frames[2].time == pytest.approx(0.3)  # media time counts the skipped file's slot
    assert len(src.skipped) == 1 and "frame3.jpg" in src.skipped[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(empty)).open()


def test_queue_newest_wins_and_counts_drops():
    q = FrameQueue(3, drop=True)
    for i in range(10):
        q.put(i)
    assert q.dropped == 7
    assert [q.get(0.1) for _ in range(3)] == [7, 8, 9]
    assert q.get(0.05) is None
    q.close()
    with pytest.raises(EOFError):
        q.get(0.1)
    blocking = FrameQueue(1, drop=False)
    blocking.put(1)
    stop = threading.Event()
    t = threading.Thread(target=lambda: blocking.put(2, stop))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()  # waits for room, drops nothing
    assert blocking.get(1) == 1
    t.join(2)
    assert blocking.get(1) == 2 and blocking.dropped == 0


# ---------------------------------------------------------------------------- MJPEG over HTTP


class MjpegServer:
    """An MJPEG-over-HTTP camera on 127.0.0.1, in a thread. ``mode``: 'ok' streams frames;
    'stall' sends a few frames then holds the connection open without sending; ``stop()`` kills it
    (connections dropped, port closed) and ``start()`` brings it back on the same port."""

    def __init__(self, frames_per_connection: int = 1000, fps: float = 50.0, mode: str = "ok"):
        self.frames_per_connection = frames_per_connection
        self.fps = fps
        self.mode = mode
        self.port = self._free_port()
        self.connections = 0
        self.server = None
        self.alive = threading.Event()

    @staticmethod
    def _free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(outer.frames_per_connection):
                    if not outer.alive.is_set():
                        return
                    if outer.mode == "stall" and i >= 5:
                        while outer.alive.is_set():
                            time.sleep(0.05)
                        return
                    img = np.full((96, 128, 3), (7 * i) % 255, np.uint8)
                    ok, jpg = cv2.imencode(".jpg", img)
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                         + jpg.tobytes() + b"\r\n")
                    except OSError:
                        return
                    time.sleep(1.0 / outer.fps)

            def log_message(self, *a):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.alive.set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.alive.clear()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def test_mjpeg_http_stream_reads_frames():
    srv = MjpegServer(frames_per_connection=1000).start()
    try:
        src = open_source(srv.url, timeout_s=3)
        assert src.kind == "stream" and src.live
        src.open()
        q = FrameQueue(4, drop=True)
        stop = threading.Event()
        r = SourceReader(src, q, stop, max_frames=20)
        r.start()
        frames = collect(r, q, timeout=15)
        r.join(5)
        assert r.frames_read == 20
        assert len(frames) + q.dropped == 20  # every frame either processed or counted as dropped
        assert frames[0].image.shape == (96, 128, 3)
    finally:
        srv.stop()


def test_unreachable_stream_fails_to_open():
    port = MjpegServer._free_port()
    with pytest.raises(SourceError, match="cannot connect"):
        open_source(f"http://127.0.0.1:{port}/nothing.mjpg", timeout_s=2).open()


def test_stream_that_dies_is_reconnected_with_backoff():
    srv = MjpegServer(frames_per_connection=15, fps=60).start()  # each connection ends after 15 frames
    events = []
    try:
        src = open_source(srv.url, timeout_s=2)
        src.open()
        q = FrameQueue(64, drop=True)
        stop = threading.Event()
        r = SourceReader(src, q, stop, events.append, reconnect_base_s=0.2, reconnect_max_s=1.0)
        r.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and r.frames_read < 10:
            time.sleep(0.05)
        srv.stop()  # the camera dies: connection closed, port refused
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.state == "reconnecting" for e in events):
            time.sleep(0.05)
        assert any(e.state == "down" for e in events)
        assert any(e.state == "reconnecting" for e in events)  # failed attempts are reported
        before = r.frames_read
        srv.start()  # it comes back
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and r.frames_read < before + 5:
            time.sleep(0.05)
        assert any(e.state == "reconnected" for e in events)
        assert r.frames_read >= before + 5
        assert r.reconnects >= 1
        stop.set()
        r.join(10)
        assert not r.is_alive()
        attempts = [e.attempt for e in events if e.state == "reconnecting"]
        assert attempts == sorted(attempts)
    finally:
        srv.stop()


def test_stalled_stream_is_reported_down():
    srv = MjpegServer(mode="stall").start()
    events = []
    try:
        src = open_source(srv.url, timeout_s=1.0)
        src.open()
        q = FrameQueue(16, drop=True)
        stop = threading.Event()
        r = SourceReader(src, q, stop, events.append, reconnect_base_s=0.2, reconnect_max_s=0.5)
        r.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.state == "down" for e in events):
            time.sleep(0.05)
        assert any(e.state == "down" for e in events), events
        assert r.frames_read >= 3
        stop.set()
        srv.stop()
        r.join(10)
        assert not r.is_alive()
    finally:
        srv.stop()


def test_realtime_file_drops_under_load(tmp_path):
    """A file read in real time (as a camera) with a slow consumer: the newest frame wins and
    every dropped frame is counted."""
    path = write_video(tmp_path / "clip.mp4", n=40, fps=100.0)
    src = open_source(str(path))
    src.open()
    q = FrameQueue(2, drop=True)
    r = SourceReader(src, q, threading.Event(), realtime=True)
    r.start()
    got = []
    while True:
        try:
            f = q.get(timeout=1)
        except EOFError:
            break
        if f is not None:
            got.append(f.index)
            time.sleep(0.05)  # a consumer 5x slower than the source
    assert r.frames_read == 40
    assert q.dropped > 0 and len(got) + q.dropped == 40
    assert got == sorted(got) and got[-1] == 39  # the last (newest) frame is processed
