"""Video decoding on the GPU where there is one, on the CPU otherwise.

At 32 cameras of 1080p H.264 the CPU spends ~3-5 ms a frame a core decoding and converting
colours, and every frame then crosses to the GPU for detection (6 MB). NVDEC decodes on the
GPU and leaves the frame there (for the detector, ``torch_chips.DeviceChipWarper`` and the
descriptor); only boxes, landmarks and descriptors need come back.

``open_decoder(path, device)`` tries, in order (``prefer`` changes it):

1. ``torchcodec`` (``VideoDecoder(device="cuda")``: FFmpeg with NVDEC), frames as CUDA tensors;
2. ``PyNvVideoCodec`` (``SimpleDecoder``, NVIDIA's bindings), frames as CUDA tensors (DLPack);
3. PyAV (FFmpeg on the CPU, threaded), frames as numpy RGB;
4. OpenCV (``cv2.VideoCapture``), frames as numpy RGB: always there.

The GPU decoders are tried only when torch sees a CUDA device; a backend that is missing or
fails to open the file is skipped (``decoder.tried`` says why), so the same call works on a
laptop. Every decoder yields ``(frame, media_time_s)`` (``read`` returns ``(None, None)`` at the
end), frames (H, W, 3) uint8 RGB, ``on_device`` telling whether they are torch tensors on the
GPU. The live run's sources (``live/sources.py``) stay the CPU path; this is the decoder for
the GPU path of the inference service and for the benchmarks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("torchcodec", "pynvvideocodec", "pyav", "opencv")
GPU_BACKENDS = ("torchcodec", "pynvvideocodec")


class DecodeError(RuntimeError):
    """No backend could open the video."""


class VideoDecoder:
    """Base: ``read() -> (frame, t)``; ``fps``, ``frame_count``, ``backend``, ``on_device``."""

    backend = "?"
    on_device = False

    def __init__(self, path: str):
        self.path = str(path)
        self.fps = 25.0
        self.frame_count: int | None = None
        self.index = 0
        self.tried: list[tuple[str, str]] = []  # (backend, why it was not used)

    def read(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _time(self) -> float:
        t = self.index / self.fps
        self.index += 1
        return t

    def __iter__(self):
        while True:
            frame, t = self.read()
            if frame is None:
                return
            yield frame, t

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class TorchCodecDecoder(VideoDecoder):
    backend = "torchcodec"
    on_device = True

    def __init__(self, path: str, device: str = "cuda"):
        super().__init__(path)
        from torchcodec.decoders import VideoDecoder as TCDecoder

        self._dec = TCDecoder(self.path, device=device, dimension_order="NHWC")
        md = self._dec.metadata
        self.fps = float(getattr(md, "average_fps", None) or 25.0)
        self.frame_count = int(getattr(md, "num_frames", 0) or 0) or None
        self._it = iter(self._dec)

    def read(self):
        try:
            frame = next(self._it)
        except StopIteration:
            return None, None
        return frame, self._time()


class NvCodecDecoder(VideoDecoder):
    backend = "pynvvideocodec"
    on_device = True

    def __init__(self, path: str, device: str = "cuda"):
        super().__init__(path)
        import PyNvVideoCodec as nvc
        import torch

        gpu = torch.device(device).index or 0
        self._torch = torch
        self._dec = nvc.SimpleDecoder(self.path, gpu_id=gpu, use_device_memory=True,
                                      output_color_type=nvc.OutputColorType.RGB)
        try:
            md = self._dec.get_stream_metadata()
            self.fps = float(getattr(md, "average_fps", None) or getattr(md, "avg_frame_rate", None) or 25.0)
            self.frame_count = int(getattr(md, "num_frames", 0) or 0) or None
        except Exception:  # noqa: BLE001 - metadata is optional
            pass
        self._n = len(self._dec) if hasattr(self._dec, "__len__") else None

    def read(self):
        if self._n is not None and self.index >= self._n:
            return None, None
        try:
            frame = self._dec[self.index]
        except (IndexError, StopIteration):
            return None, None
        return self._torch.from_dlpack(frame), self._time()


class PyAVDecoder(VideoDecoder):
    backend = "pyav"

    def __init__(self, path: str, device: str = "cpu"):
        super().__init__(path)
        import av

        self._c = av.open(self.path)
        stream = self._c.streams.video[0]
        stream.thread_type = "AUTO"
        self.fps = float(stream.average_rate or 25.0)
        self.frame_count = int(stream.frames or 0) or None
        self._it = self._c.decode(stream)

    def read(self):
        try:
            frame = next(self._it)
        except StopIteration:
            return None, None
        return frame.to_ndarray(format="rgb24"), self._time()

    def close(self) -> None:
        self._c.close()


class OpenCVDecoder(VideoDecoder):
    backend = "opencv"

    def __init__(self, path: str, device: str = "cpu"):
        super().__init__(path)
        import cv2

        self._cv2 = cv2
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            self._cap.release()
            raise DecodeError(f"{path}: not a readable video")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1 <= fps <= 240 else 25.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None

    def read(self):
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None, None
        return np.ascontiguousarray(bgr[:, :, ::-1]), self._time()

    def close(self) -> None:
        self._cap.release()


_CLASSES = {"torchcodec": TorchCodecDecoder, "pynvvideocodec": NvCodecDecoder, "pyav": PyAVDecoder, "opencv": OpenCVDecoder}


def cuda_device(device: str | None) -> str | None:
    """The CUDA device to decode on, or None (``device``: auto, cpu, cuda, cuda:N)."""
    if device == "cpu":
        return None
    from ..engine.runtime import cuda_available

    if not cuda_available():
        if device not in (None, "auto"):
            log.warning("no CUDA device: decoding on the CPU")
        return None
    return "cuda" if device in (None, "auto") else device


def open_decoder(path, device: str | None = "auto", prefer: tuple[str, ...] = BACKENDS) -> VideoDecoder:
    """The first backend of ``prefer`` that opens ``path`` (GPU ones only with a CUDA device)."""
    p = Path(path)
    if not p.exists():
        raise DecodeError(f"{p}: no such file")
    unknown = [b for b in prefer if b not in _CLASSES]
    if unknown:
        raise ValueError(f"unknown decoder backend(s) {unknown} (known: {', '.join(BACKENDS)})")
    dev = cuda_device(device)
    tried: list[tuple[str, str]] = []
    for name in prefer:
        if name in GPU_BACKENDS and dev is None:
            tried.append((name, "no CUDA device"))
            continue
        try:
            dec = _CLASSES[name](str(p), dev or "cpu")
        except ImportError as e:
            tried.append((name, f"not installed ({e.name or e})"))
            continue
        except Exception as e:  # noqa: BLE001 - this backend cannot read it: try the next
            tried.append((name, f"{type(e).__name__}: {e}"))
            continue
        dec.tried = tried
        if tried:
            log.info("decoding %s with %s (%s)", p.name, name, "; ".join(f"{b}: {w}" for b, w in tried))
        return dec
    raise DecodeError(f"{p}: no decoder could open it (" + "; ".join(f"{b}: {w}" for b, w in tried) + ")")
