"""GPU benchmark, one command: descriptors, the MMOD detector and N simulated 1080p cameras.

    python bench/gpu.py                       # on a CUDA GPU: a few minutes
    python bench/gpu.py --device cpu --quick  # anywhere: the same code paths, small sizes (tests)
    python bench/gpu.py --results bench/RESULTS.md   # also write the GPU section of RESULTS.md

Measures (``--device``, default cuda when torch sees one):

1. **Descriptors** (``TorchDescriptorModel``): faces/s on real aligned chips by batch size and
   precision: fp32 (TF32 off), fp16, bf16, fp16 ``torch.compile``'d (channels-last), fp16 with
   CUDA graphs; and each low precision's accuracy against fp32 (``precision_report``).
2. **MMOD at 1080p** (``TorchMmodDetector``, pyramid on the device): frames/s by batch of
   frames and precision, upsample 0 (faces from ~80 px) and 1 (~40 px); boxes compared with
   the onnxruntime detector's on the same frame.
3. **End to end** (``--shape processes``, the default: ``ProcessRunner``, camera processes
   around one inference service; ``--shape threads``: ``LiveRunner``, one process) on N
   cameras, each a 1080p video read as fast as it goes, with the CNN detector (batched across
   cameras; ``--detector retina``: RetinaFace, the live default, which the processes shape's
   inference service runs for all cameras, batched, in shape buckets) and the descriptor on the
   device, against ``--watchlist`` synthetic subjects plus the faces of the video's first
   frames (so that alerts happen): total frames/s, so how many 25 fps cameras one device keeps
   up with, and the GPU's utilisation (sampled twice a second); then N cameras read in real
   time (25 fps): the frames they drop and the latency from a face's first frame to its alert.
2b. **Chips from decoded frames** (``chips``): frames decoded with ``live/decode.py`` (NVDEC
   through torchcodec / PyNvVideoCodec when installed, kept on the device), chips cut on the
   device (``engine/torch_chips.DeviceChipWarper``) and fed to the descriptor: faces/s, with the
   chips' distance to the exact (dlib) chips.
4. **Gallery**: 1,000,000 templates searched on the device (``torch-exact``), ms per probe.

The video: ``--video`` or ``../shared/data/video/crowd_walk_1920x1080.mp4``, else a synthetic
1080p clip (sample faces moving over a textured background) written to a temporary file.
Writes JSON (default bench/out/gpu.json); targets (one H100/H200): >= 300,000 descriptors/s,
>= 32 cameras at 1080p 25 fps end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SHARED = Path(os.environ.get("OPENLFR_SHARED", REPO.parent / "shared")) / "data"
CROWD = SHARED / "video" / "crowd_walk_1920x1080.mp4"
MARK_BEGIN, MARK_END = "<!-- gpu:begin -->", "<!-- gpu:end -->"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rate(fn, items: int, seconds: float, device: str, min_reps: int = 2) -> float:
    """Items per second of ``fn()`` (each call does ``items``), over at least ``seconds``."""
    fn()  # warm-up
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - t0 < seconds:
        fn()
        reps += 1
    sync(device)
    return items * reps / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# Inputs


def synthetic_frame(w: int = 1920, h: int = 1080, seed: int = 0, shift: int = 0) -> np.ndarray:
    """A textured background with the bundled sample faces pasted at several sizes."""
    import cv2

    from openlfr.engine.samples import SAMPLES

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([(xx * 0.1 + yy * 0.05) % 255, (yy * 0.12) % 255, (xx * 0.07) % 255], -1)
    frame = np.clip(bg + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    faces = [f() for f in SAMPLES.values()]
    x = 40 + shift
    for i, size in enumerate((360, 240, 160, 120, 90)):
        img = faces[i % len(faces)]
        s = size / max(img.shape[:2])
        img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))))
        y = 60 + (i % 2) * 420
        if x + img.shape[1] >= w or y + img.shape[0] >= h:
            break
        frame[y : y + img.shape[0], x : x + img.shape[1]] = img[..., :3]
        x += img.shape[1] + 40
    return frame


def frame_1080p(video: Path | None) -> np.ndarray:
    import cv2

    if video is not None and video.exists():
        cap = cv2.VideoCapture(str(video))
        ok, bgr = cap.read()
        cap.release()
        if ok:
            return np.ascontiguousarray(bgr[:, :, ::-1])
    return synthetic_frame()


def synthetic_video(path: Path, frames: int, w: int, h: int, fps: float = 25.0) -> Path:
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    base = synthetic_frame(w, h)
    for i in range(frames):
        out.write(np.ascontiguousarray(np.roll(base, 4 * i, axis=1)[:, :, ::-1]))
    out.release()
    return path


def synthetic_watchlist(n: int, seed: int = 0):
    from openlfr.benchmarks.gallery import load_model
    from openlfr.watchlist.model import Subject, Watchlist

    model = load_model()
    rng = np.random.default_rng(seed)
    t = model.faces(model.identities(n, rng), rng)
    subjects = [Subject(f"S{i}", f"Synthetic {i}") for i in range(n)]
    return Watchlist(subjects, t, np.arange(n), np.ones(n, np.float32))


# ---------------------------------------------------------------------------------------------
# 1. Descriptors


def bench_descriptors(device: str, quick: bool, seconds: float) -> dict:
    import torch

    from openlfr.benchmarks.embed import real_chips
    from openlfr.engine.torch_runtime import TorchDescriptorModel, precision_report

    chips = real_chips(limit=16 if quick else 64)
    cuda = device.startswith("cuda")
    batches = [1, 4] if quick else [1, 8, 32, 128, 256, 512, 1024] + ([2048, 4096] if cuda else [])
    variants: list[tuple[str, str, dict, list[int]]] = [(p, p, {}, batches) for p in (("fp32", "bf16") if not cuda else ("fp32", "fp16", "bf16"))]
    if cuda:
        import torch._dynamo

        torch._dynamo.config.automatic_dynamic_shapes = False  # one static graph per batch size
        big = [1024, 4096] if not quick else batches[-1:]
        variants.append(("fp16+compile", "fp16", {"compile": True}, big))
        variants.append(("fp16+cuda_graphs", "fp16", {"cuda_graphs": True}, batches))
    elif not quick:
        variants.append(("bf16+compile", "bf16", {"compile": True}, batches[-2:]))
    out: dict = {"chips": "real aligned chips of the bundled sample photos", "faces_per_s": {}}
    for name, prec, opts, bs in variants:
        try:
            model = TorchDescriptorModel(prec, device=device, batch_size=max(bs), **opts)
        except Exception as e:  # noqa: BLE001 - e.g. bf16 on an old GPU
            out["faces_per_s"][name] = f"failed: {type(e).__name__}: {e}"
            continue
        row = {}
        for b in bs:
            x = np.ascontiguousarray(np.resize(chips, (b, *chips.shape[1:])))
            t0 = time.perf_counter()
            try:
                row[str(b)] = round(rate(lambda m=model, x=x: m.compute(x), b, seconds, device), 1)
            except Exception as e:  # noqa: BLE001
                row[str(b)] = f"failed: {type(e).__name__}: {e}"
            log(f"descriptor {name} batch {b}: {row[str(b)]} faces/s ({time.perf_counter() - t0:.1f} s)")
        out["faces_per_s"][name] = row
        if cuda and not opts.get("cuda_graphs") and prec == "fp16":
            # The network alone: chips already on the device (no host copy), as when chips are cut there.
            dev_row = {}
            for b in bs[-2:] if quick else [b for b in bs if b >= 1024]:
                xd = torch.from_numpy(np.ascontiguousarray(np.resize(chips, (b, *chips.shape[1:])))).to(device)
                try:
                    with torch.inference_mode():
                        dev_row[str(b)] = round(rate(lambda m=model, xd=xd: m.net(xd), b, seconds, device), 1)
                except Exception as e:  # noqa: BLE001
                    dev_row[str(b)] = f"failed: {type(e).__name__}: {e}"
                log(f"descriptor {name} on-device batch {b}: {dev_row[str(b)]} faces/s")
                del xd
            out.setdefault("on_device_faces_per_s", {})[name] = dev_row
        del model
        if cuda:
            torch.cuda.empty_cache()
    best = [v for r in out["faces_per_s"].values() if isinstance(r, dict) for v in r.values() if isinstance(v, float)]
    out["best_faces_per_s"] = max(best) if best else None
    dev = [v for r in out.get("on_device_faces_per_s", {}).values() for v in r.values() if isinstance(v, float)]
    out["best_on_device_faces_per_s"] = max(dev) if dev else None
    out["accuracy_vs_fp32"] = {}
    for prec in ("bf16",) if not cuda else ("fp16", "bf16"):
        try:
            out["accuracy_vs_fp32"][prec] = precision_report(chips, prec, device=device)
        except Exception as e:  # noqa: BLE001
            out["accuracy_vs_fp32"][prec] = f"failed: {type(e).__name__}: {e}"
    if cuda:  # the GPU's fp32 against the CPU reference (onnxruntime): parity with TF32 off
        from openlfr.engine.descriptor import DescriptorModel

        ref = DescriptorModel().compute(chips[:16])
        got = TorchDescriptorModel("fp32", device=device).compute(chips[:16])
        out["fp32_vs_onnx_cpu_max_abs"] = float(np.abs(got - ref).max())
    return out


# ---------------------------------------------------------------------------------------------
# 2. MMOD


def bench_mmod(device: str, quick: bool, seconds: float, frame: np.ndarray) -> dict:
    from openlfr.engine.detection import iou
    from openlfr.engine.mmod import MmodDetector
    from openlfr.engine.torch_mmod import TorchMmodDetector

    cuda = device.startswith("cuda")
    out: dict = {"frame": list(frame.shape), "frames_per_s": {}, "boxes": {}}
    ups = (0,) if quick else (0, 1)
    for up in ups:
        t0 = time.perf_counter()
        ref = MmodDetector(upsample=up).detect(frame)
        out["onnx_cpu_s_per_frame_upsample_%d" % up] = round(time.perf_counter() - t0, 3)
        for prec in ("fp32",) if not cuda else ("fp32", "fp16"):
            det = TorchMmodDetector(upsample=up, device=device, precision=prec)
            got = det.detect(frame)
            matched = sum(1 for g, r in zip(got, ref) if iou(g.box, r.box) > 0.9)
            out["boxes"][f"up{up}_{prec}"] = {"onnx": len(ref), "torch": len(got), "matched_iou_0.9": matched,
                                              "max_score_diff": max((abs(g.score - r.score) for g, r in zip(got, ref)), default=0.0)}
            for batch in (1,) if quick else (1, 4, 8):
                frames = [frame] * batch
                key = f"up{up}_{prec}_batch{batch}"
                try:
                    out["frames_per_s"][key] = round(rate(lambda: det.detect_batch(frames), batch, seconds, device, 1), 2)
                except Exception as e:  # noqa: BLE001 - e.g. out of memory at upsample 1, batch 8
                    out["frames_per_s"][key] = f"failed: {type(e).__name__}: {e}"
                log(f"mmod {key}: {out['frames_per_s'][key]} frames/s")
    return out


# ---------------------------------------------------------------------------------------------
# 2b. Chips cut on the device from decoded frames


def bench_device_chips(device: str, quick: bool, seconds: float, video: Path) -> dict:
    """Frames decoded (NVDEC when available) and kept on the device; chips cut there
    (``DeviceChipWarper``) and fed to the descriptor: faces/s with chips from decoded frames,
    nothing copied from host memory but the landmarks."""
    import torch

    from openlfr.engine.chips import face_chip
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.torch_chips import DeviceChipWarper, plan_chips
    from openlfr.engine.torch_runtime import TorchDescriptorModel
    from openlfr.live.decode import open_decoder

    cuda = device.startswith("cuda")
    n_frames, per_frame = (4, 16) if quick else (32, 128)
    dec = open_decoder(video, device if cuda else "cpu")
    frames, t0 = [], time.perf_counter()
    for f, _ in dec:
        frames.append(f if dec.on_device else torch.from_numpy(np.ascontiguousarray(f)).to(device))
        if len(frames) == n_frames:
            break
    sync(device)
    out: dict = {"decoder": dec.backend, "frames_on_device": dec.on_device, "not_used": dec.tried,
                 "decode_frames_per_s": round(len(frames) / (time.perf_counter() - t0), 1),
                 "frames": len(frames), "faces_per_frame": per_frame}
    dec.close()
    first = np.ascontiguousarray(frames[0].cpu().numpy())
    base = [f.landmarks for f in FaceEngine(detector="hog", upsample=1).analyze(first, descriptors=False)]
    if not base:  # no face found: a 200-px face in the middle
        from openlfr.engine.chips import TEMPLATE_5

        h, w = first.shape[:2]
        base = [np.asarray(TEMPLATE_5) * 200 + [w / 2 - 100, h / 2 - 100]]
    out["faces_found_in_first_frame"] = len(base)
    rng = np.random.default_rng(0)
    lms = np.stack([base[i % len(base)] + rng.uniform(-3, 3, 2) for i in range(per_frame)])
    warper = DeviceChipWarper(device)
    ref = np.stack([face_chip(first, lm) for lm in base])
    got = warper.chips(frames[0], base).cpu().numpy()
    out["max_pixel_diff_vs_exact_chips"] = int(np.abs(ref.astype(int) - got.astype(int)).max())
    prec = "fp16" if cuda else "fp32"
    model = TorchDescriptorModel(prec, device=device, batch_size=per_frame * len(frames))
    out["descriptor_distance_vs_exact_chips"] = float(np.linalg.norm(model.compute(ref) - model.compute(got), axis=1).max())
    t1 = time.perf_counter()
    for _ in range(10):
        plan_chips(first.shape, lms)
    out["plan_us_per_face"] = round((time.perf_counter() - t1) * 1e6 / (10 * per_frame), 2)

    def warp_all():
        return torch.cat([warper.chips(f, lms) for f in frames])

    n = per_frame * len(frames)
    out["warp_faces_per_s"] = round(rate(warp_all, n, seconds, device), 1)
    with torch.inference_mode():
        out[f"faces_per_s_{prec}_chips_from_decoded_frames"] = round(rate(lambda: model.net(warp_all()), n, seconds, device), 1)
    log(f"device chips: {out}")
    return out


# ---------------------------------------------------------------------------------------------
# 3. End to end


class GpuSampler:
    """GPU utilisation sampled twice a second during a run (``torch.cuda.utilization`` through
    NVML, else ``nvidia-smi``); nothing on a CPU."""

    def __init__(self, device: str, every_s: float = 0.5):
        import threading

        self.device, self.every_s = device, every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> float | None:
        if not self.device.startswith("cuda"):
            return None
        try:
            import torch

            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001 - no pynvml: ask nvidia-smi
            import subprocess

            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                                     capture_output=True, text=True, timeout=5).stdout
                return float(out.strip().splitlines()[0])
            except Exception:  # noqa: BLE001
                return None

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            v = self._sample()
            if v is None:
                return
            self.samples.append(v)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        return False

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        return {"mean_percent": round(sum(self.samples) / len(self.samples), 1), "max_percent": max(self.samples),
                "samples": len(self.samples)}


def crowd_subjects(video: Path, wl, frames: int = 40, step: int = 10):
    """The watchlist plus the faces of the video's first frames as subjects, so alerts happen
    (and their latency can be measured): one subject per face found on frames 0, step, ..."""
    import cv2

    from openlfr.engine.pipeline import FaceEngine
    from openlfr.watchlist.model import Subject, Watchlist

    engine = FaceEngine(detector="hog", upsample=0)
    cap = cv2.VideoCapture(str(video))
    templates = []
    for i in range(frames):
        ok, bgr = cap.read()
        if not ok:
            break
        if i % step == 0:
            templates += [f.descriptor for f in engine.analyze(np.ascontiguousarray(bgr[:, :, ::-1]))]
    cap.release()
    if not templates:
        return wl, 0
    k = len(templates)
    subjects = list(wl.subjects) + [Subject(f"V{i}", f"Video face {i}") for i in range(k)]
    t = np.concatenate([wl.templates, np.stack(templates).astype(np.float32)])
    labels = np.concatenate([wl.template_subject, len(wl.subjects) + np.arange(k)])
    return Watchlist(subjects, t, labels, np.ones(len(t), np.float32)), k


def run_cameras(n: int, video: Path, device: str, wl, frames: int, realtime: bool, precision: str, index_kind: str,
                batch_detect: bool = True, detector_precision: str = "fp32", detector_tuning: bool = True,
                shape: str = "processes", processes: int = 0, detector: str = "cnn") -> dict:
    from openlfr.engine.descriptor import make_descriptor
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.batching import BatchingDetector
    from openlfr.engine.torch_mmod import TorchMmodDetector
    from openlfr.live.config import RunConfig
    from openlfr.live.runner import LiveRunner
    from openlfr.watchlist.index import make_index

    cuda = device.startswith("cuda")
    cfg = RunConfig(sources=[f"cam{i:02d}={video}" for i in range(n)], detection={"detector": detector}, realtime=realtime,
                    max_frames=frames, embed_batch=256 if cuda else 32, embed_wait_ms=2.0 if cuda else 1.0, shape=shape,
                    detect_in="service")
    engine = FaceEngine(detector="hog", upsample=0)  # replaced below: the device runtimes
    batcher = None
    if detector == "retina":  # the processes shape's service batches it itself (ProcessRunner.service_detector)
        from openlfr.engine.retina import RetinaDetector
        from openlfr.engine.torch_retina import TorchRetinaNetwork

        engine.detector = RetinaDetector(network=TorchRetinaNetwork(device, detector_precision) if cuda else None)
    else:
        det = TorchMmodDetector(upsample=0, device=device, precision=detector_precision, cudnn_tuning=detector_tuning)
        batcher = BatchingDetector(det, max_batch=min(n, 16)) if batch_detect else None
        engine.detector = batcher or det
    engine.detector_name = detector
    engine._descriptor = make_descriptor("torch", precision=precision) if cuda else make_descriptor("onnx")
    events: list[dict] = []
    keep = lambda e: events.append(e) if e.get("event") == "alert" else None  # noqa: E731
    if shape == "processes":
        from openlfr.live.multiproc.runner import ProcessRunner

        r = ProcessRunner(cfg, on_event=keep, engine=engine, watchlist=wl, threshold=0.5, processes=processes or None)
    else:
        r = LiveRunner(cfg, on_event=keep, engine=engine, watchlist=wl, threshold=0.5)
    r.prepare()
    if index_kind != "exact" and shape != "processes":  # (camera processes search their own exact index)
        idx = make_index(index_kind, **({"device": device} if index_kind == "torch-exact" else {}))
        idx.add(wl.templates, wl.template_subject)
        r.index = idx
    try:
        with GpuSampler(device) as gpu_use:
            s = r.run()
    finally:
        if batcher is not None:
            batcher.close()
    cams = s["cameras"]
    lat = sorted(e["latency_ms"] for e in events)
    fps = s.get("fps_after_startup", s["fps"])  # processes: not counting the camera processes' start
    row = {"cameras": n, "shape": shape, "realtime": realtime, "frames": s["frames"], "elapsed_s": s["elapsed_s"],
           "startup_s": s.get("startup_s", 0.0), "fps_with_startup": s["fps"],
           "fps_total": fps, "fps_per_camera": round(fps / n, 2), "cameras_at_25fps": round(fps / 25.0, 1),
           "dropped_frames": s["dropped_frames"], "read_frames": sum(c["read"] for c in cams),
           "embedded": s["embedded"], "embed_batches": s["embed_batches"], "faces_seen": s["faces_seen"], "cpu_s": s["cpu_s"],
           "alerts": s["alerts"], "alert_latency_ms": {"p50": lat[len(lat) // 2], "p95": lat[int(0.95 * (len(lat) - 1))],
                                                       "max": lat[-1]} if lat else None,
           "gpu_utilisation": gpu_use.summary(),
           "batched_detector": None if batcher is None else {"calls": batcher.images, "network_batches": batcher.batches}}
    if shape == "processes":
        row.update(processes=len(s["processes"]), service=s["service"], restarts=s["restarts"])
    return row


def bench_end_to_end(device: str, quick: bool, video: Path, wl, cameras: list[int], frames: int, precision: str,
                     batch_detect: bool = True, detector_precision: str = "fp32", detector_tuning: bool = True,
                     shape: str = "processes", processes: int = 0, save=lambda: None, out: dict | None = None,
                     deadline: float | None = None, detector: str = "cnn") -> dict:
    index_kind = "torch-exact" if device.startswith("cuda") else "exact"
    wl, k = crowd_subjects(video, wl)
    out = {} if out is None else out
    out.update({"video": str(video), "watchlist_subjects": len(wl), "video_faces_enrolled": k, "shape": shape,
                "index": index_kind if shape != "processes" else "exact (numpy) in each camera process",
                "descriptor_precision": precision,
                "detector": "cnn (MMOD, torch, pyramid on the device)" if detector == "cnn" else
                "retina (RetinaFace, torch, in the inference service, shape buckets)", "detector_precision": detector_precision,
                "detector_cudnn_tuning": detector_tuning, "batch_detect": batch_detect, "fast": [], "realtime": []})
    opts = {"batch_detect": batch_detect, "detector_precision": detector_precision, "detector_tuning": detector_tuning,
            "shape": shape, "processes": processes, "detector": detector}
    t0 = time.perf_counter()  # untimed warm-up: cuDNN tunes its kernels once per input shape
    run_cameras(min(16, max(cameras)), video, device, wl, min(frames, 40), False, precision, index_kind, **opts)
    out["warm_up_s"] = round(time.perf_counter() - t0, 1)
    log(f"end to end: warm-up run {out['warm_up_s']} s")
    late = lambda: deadline is not None and time.monotonic() > deadline  # noqa: E731
    for n in cameras:
        if late():
            out.setdefault("skipped", []).append(f"{n} cameras as fast as possible (time budget)")
            continue
        row = run_cameras(n, video, device, wl, frames, False, precision, index_kind, **opts)
        log(f"end to end, {n} cameras as fast as possible: {row['fps_total']} frames/s ({row['cameras_at_25fps']} cameras at 25 fps), "
            f"GPU {row['gpu_utilisation']}")
        out["fast"].append(row)
        save()
    if not quick and out["fast"]:
        best = max(out["fast"], key=lambda r: r["fps_total"])
        n_rt = min(64, max(1, int(best["fps_total"] // 25)))  # (64: the decoders share the CPU)
        for n in sorted({n_rt, 32}):
            if late():
                out.setdefault("skipped", []).append(f"{n} cameras in real time (time budget)")
                continue
            row = run_cameras(n, video, device, wl, frames, True, precision, index_kind, **opts)
            row["dropped_share"] = round(row["dropped_frames"] / max(1, row["read_frames"]), 4)
            log(f"end to end, {n} cameras in real time: {row['dropped_share'] * 100:.1f}% frames dropped, "
                f"alert latency {row['alert_latency_ms']}")
            out["realtime"].append(row)
            save()
    return out


# ---------------------------------------------------------------------------------------------
# 4. Gallery on the device


def bench_gallery(device: str, n: int) -> dict:
    from openlfr.benchmarks.gallery import synthetic_gallery
    from openlfr.watchlist.faiss_index import BlockedExactIndex, TorchExactIndex

    g = synthetic_gallery(n, 2048, seed=0)
    ex = BlockedExactIndex()
    ex.add(g.templates, g.labels)
    _, ref = ex.search_rows(g.probes, 1)
    del ex
    out: dict = {"templates": n, "probes": len(g.probes)}
    for prec in ("fp32", "fp16") if device.startswith("cuda") else ("fp32",):
        idx = TorchExactIndex(device=device, precision=prec)
        idx.add(g.templates, g.labels)
        idx.search_rows(g.probes[:64], 1)
        t0 = time.perf_counter()
        _, rows = idx.search_rows(g.probes, 1)
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        for q in g.probes[:50]:
            idx.search_rows(q, 1)
        out[prec] = {"ms_per_probe_batched": round(dt * 1000 / len(g.probes), 4),
                     "ms_single_probe": round((time.perf_counter() - t1) * 1000 / 50, 3),
                     "recall_at_1_vs_exact": float((rows[:, 0] == ref[:, 0]).mean()),
                     "bytes_per_template": round(idx.memory_bytes() / len(idx), 1)}
        log(f"gallery {prec}: {out[prec]}")
        del idx
    return out


# ---------------------------------------------------------------------------------------------


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    from openlfr.benchmarks.embed import cpu_name

    return cpu_name()


def marks(block: str = "gpu") -> tuple[str, str]:
    """The markers of a RESULTS.md block (``gpu``: the GPU block; another name: its own block,
    so that e.g. an end-to-end-only run does not replace the descriptor figures)."""
    return f"<!-- {block}:begin -->", f"<!-- {block}:end -->"


def results_markdown(res: dict, block: str = "gpu") -> str:
    MARK_BEGIN, MARK_END = marks(block)
    d, m, e = res.get("descriptors", {}), res.get("mmod", {}), res.get("end_to_end", {})
    lines = [MARK_BEGIN, f"### {res['device_name']} ({res['device']}, torch {res['torch']}, {res['date']})", ""]
    if res.get("quick"):
        lines += ["*Quick mode: small sizes, not a measurement of the device.*", ""]
    if d:
        lines += [f"Descriptors, faces/s (target 300,000): best {d.get('best_faces_per_s')} with the chips sent from "
                  f"host memory, best {d.get('best_on_device_faces_per_s')} with the chips already on the device.", ""]
        tables = [("chips from host memory", d["faces_per_s"]), ("chips on the device", d.get("on_device_faces_per_s", {}))]
        for title, rows in tables:
            rows = {k: v for k, v in rows.items() if isinstance(v, dict)}
            if not rows:
                continue
            cols = sorted({b for r in rows.values() for b in r}, key=int)
            lines += [f"| {title} | " + " | ".join(f"batch {b}" for b in cols) + " |", "|---" * (1 + len(cols)) + "|"]
            lines += [f"| {name} | " + " | ".join(str(r.get(b, "")) for b in cols) + " |" for name, r in rows.items()]
            lines.append("")
        if "fp32_vs_onnx_cpu_max_abs" in d:
            lines.append(f"fp32 on the device (TF32 off) vs onnxruntime on the CPU: max abs {d['fp32_vs_onnx_cpu_max_abs']:.1e} per component.")
        for p, rep in d.get("accuracy_vs_fp32", {}).items():
            if isinstance(rep, dict):
                lines.append(f"\n{p} vs fp32: max abs {rep['max_abs']:.2e}, max L2 {rep['max_l2']:.2e}, "
                             f"largest pair-distance change {rep['max_pair_distance_change']:.2e}, "
                             f"{rep['pairs_changing_decision']} of {rep['pairs']} pairs change side of {rep['threshold']}.")
        lines.append("")
    if m:
        lines += ["MMOD at " + "x".join(str(v) for v in m["frame"][:2][::-1]) + ": "
                  + ", ".join(f"{k} {v} frames/s" for k, v in m["frames_per_s"].items()) + ".", ""]
    if e:
        lines.append(f"End to end, shape `{e.get('shape', 'threads')}`, detector {e.get('detector', 'cnn').split(' (')[0]} "
                     f"({res.get('cpu_cores')} CPU cores), "
                     f"{e.get('watchlist_subjects')} subjects ({e.get('video_faces_enrolled', 0)} of them faces of the video):")
        lines.append("")

        def gpu(row):
            g = row.get("gpu_utilisation")
            return f"GPU {g['mean_percent']}% mean, {g['max_percent']}% max" if g else "GPU utilisation n/a"

        def lat(row):
            a = row.get("alert_latency_ms")
            return f"alert latency p50 {a['p50']} ms, p95 {a['p95']} ms ({row['alerts']} alerts)" if a else "no alert"

        for row in e.get("fast", []):
            lines.append(f"- {row['cameras']} cameras, as fast as possible: {row['fps_total']} frames/s in all "
                         f"= {row['cameras_at_25fps']} cameras at 25 fps; {gpu(row)}")
        for row in e.get("realtime", []):
            lines.append(f"- {row['cameras']} cameras at 25 fps: {row.get('dropped_share', 0) * 100:.1f}% of frames dropped; "
                         f"{lat(row)}; {gpu(row)}")
        for what in e.get("skipped", []):
            lines.append(f"- not run: {what}")
        lines.append("")
    c = res.get("device_chips")
    if c:
        rate_key = next((k for k in c if k.startswith("faces_per_s_")), None)
        lines += [f"Chips cut on the device from decoded frames ({c['decoder']}, frames on the device: {c['frames_on_device']}; "
                  f"{c['frames']} frames x {c['faces_per_frame']} faces): warp {c['warp_faces_per_s']} faces/s, warp + descriptor "
                  f"{c.get(rate_key)} faces/s ({rate_key}); host geometry {c['plan_us_per_face']} us a face; against the exact chips: "
                  f"max pixel difference {c['max_pixel_diff_vs_exact_chips']}, descriptor distance "
                  f"{c['descriptor_distance_vs_exact_chips']:.1e}; decoding {c['decode_frames_per_s']} frames/s.", ""]
    gal = res.get("gallery")
    if gal:
        lines.append(f"Gallery of {gal['templates']:,} on the device: "
                     + ", ".join(f"{p} {v['ms_per_probe_batched']} ms/probe batched ({v['ms_single_probe']} single, recall {v['recall_at_1_vs_exact']})"
                                 for p, v in gal.items() if isinstance(v, dict)) + ".")
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def update_results(path: Path, block: str, name: str = "gpu") -> None:
    MARK_BEGIN, MARK_END = marks(name)
    text = path.read_text() if path.exists() else "# Benchmark results\n\n## GPU\n\n"
    if MARK_BEGIN in text and MARK_END in text:
        a, b = text.index(MARK_BEGIN), text.index(MARK_END) + len(MARK_END) + 1
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cuda (default when torch sees one) or cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes: checks the code paths (e.g. on a CPU)")
    ap.add_argument("--seconds", type=float, default=None, help="timing per measurement (default 2, quick 0.3)")
    ap.add_argument("--video", type=Path, default=None, help="a 1080p video (default: the shared crowd video, else synthetic)")
    ap.add_argument("--cameras", default=None, help="camera counts for the end-to-end run (default 8,16,32,48)")
    ap.add_argument("--frames", type=int, default=None, help="frames per camera in the end-to-end runs (default 100)")
    ap.add_argument("--watchlist", type=int, default=None, help="synthetic watchlist subjects (default 100,000)")
    ap.add_argument("--gallery", type=int, default=None, help="gallery templates on the device (default 1,000,000; 0: skip)")
    ap.add_argument("--precision", default="fp16", help="descriptor precision of the end-to-end run (cuda)")
    ap.add_argument("--detector", default="cnn", choices=("cnn", "retina"),
                    help="end to end: the MMOD CNN (default) or RetinaFace (the live default; batched by the service)")
    ap.add_argument("--detector-precision", default="fp32", help="detector precision in the end-to-end run (fp32, fp16)")
    ap.add_argument("--no-detector-tuning", action="store_true",
                    help="end to end: cuDNN's heuristic kernels for the detector, no tuning per new window shape")
    ap.add_argument("--no-batch-detect", action="store_true", help="each camera calls the detector itself (no cross-camera batches)")
    ap.add_argument("--shape", default="processes", choices=("processes", "threads"),
                    help="end to end: camera processes around one inference service (default), or threads in one process")
    ap.add_argument("--processes", type=int, default=0, help="camera processes (0: one per core but one)")
    ap.add_argument("--block", default="gpu", help="name of the RESULTS.md block to write (default gpu)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="end to end: start no new run after this many seconds from the start (what ran is kept)")
    ap.add_argument("--skip", default="", help="sections to skip: descriptors,mmod,chips,e2e,gallery")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "gpu.json")
    ap.add_argument("--results", type=Path, default=None, help="write the GPU section of this markdown file")
    args = ap.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        log("no CUDA device: use --device cpu")
        return 2
    q = args.quick
    seconds = args.seconds if args.seconds is not None else (0.3 if q else 2.0)
    cameras = [int(x) for x in (args.cameras or ("1,2" if q else "8,16,32,48")).split(",")]
    frames = args.frames or (6 if q else 100)
    skip = set(filter(None, args.skip.split(",")))
    res: dict = {"device": device, "device_name": device_name(device), "torch": torch.__version__, "quick": q,
                 "cuda": torch.version.cuda, "cpu_cores": os.cpu_count(), "python": platform.python_version(),
                 "date": time.strftime("%Y-%m-%d"), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    t_all = time.perf_counter()
    t_start = time.monotonic()
    video = args.video if args.video else (CROWD if CROWD.exists() and not q else None)
    tmp = tempfile.TemporaryDirectory(prefix="openlfr-gpu-")
    if video is None or not Path(video).exists():
        w, h = (960, 540) if q else (1920, 1080)
        video = synthetic_video(Path(tmp.name) / f"synthetic_{w}x{h}.mp4", max(frames, 25), w, h)
    frame = frame_1080p(Path(video))
    if q and frame.shape[1] > 960:  # quick: half-size frames keep the CPU run short
        import cv2

        frame = cv2.resize(frame, (960, 540))
    try:
        def save() -> None:  # after each section: a run cut short keeps what it measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(res, indent=2) + "\n")

        if "descriptors" not in skip:
            res["descriptors"] = bench_descriptors(device, q, seconds)
            save()
        if "chips" not in skip:
            res["device_chips"] = bench_device_chips(device, q, seconds, Path(video))
            save()
        if "e2e" not in skip:
            wl = synthetic_watchlist(args.watchlist or (1000 if q else 100_000))
            res["end_to_end"] = {}
            bench_end_to_end(device, q, Path(video), wl, cameras, frames, args.precision, not args.no_batch_detect,
                             args.detector_precision, not args.no_detector_tuning, args.shape, args.processes,
                             save=save, out=res["end_to_end"],
                             deadline=None if args.budget_s is None else t_start + args.budget_s, detector=args.detector)
            save()
        if "mmod" not in skip:
            res["mmod"] = bench_mmod(device, q, seconds, frame)
            save()
        n_gal = args.gallery if args.gallery is not None else (20_000 if q else 1_000_000)
        if "gallery" not in skip and n_gal:
            res["gallery"] = bench_gallery(device, n_gal)
    finally:
        tmp.cleanup()
    res["total_s"] = round(time.perf_counter() - t_all, 1)
    res["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    if args.results:
        update_results(args.results, results_markdown(res, args.block), args.block)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
