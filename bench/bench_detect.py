"""Face detection speed per 1920x1080 frame: dlib HOG, dlib CNN (MMOD) and openlfr's MMOD on
onnxruntime, at upsample 0 and 1; also checks that the two MMODs give the same boxes.

    python bench/bench_detect.py                 # first frame of crowd_walk_1920x1080.mp4
    python bench/bench_detect.py --images        # + the shared detection images (upsample 0)
    python bench/bench_detect.py --no-dlib-up1   # skip dlib CNN at upsample 1 (about a minute)

Prints a markdown table and writes bench/out/detect.json. dlib's CNN is timed once (it takes
seconds to a minute per frame); the others are the median of --repeats runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("OPENLFR_SHARED", HERE.parent.parent / "shared"))
VIDEO = SHARED / "data" / "video" / "crowd_walk_1920x1080.mp4"


def first_frame(path: Path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read a frame from {path}")
    return np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def timed(fn, repeats: int, warmup: int = 1) -> tuple[float, object]:
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def compare(ours, theirs) -> dict:
    """Boxes in order: count, min IoU, max |score diff|."""
    from openlfr.engine.detection import iou

    n = min(len(ours), len(theirs))
    return {
        "count_ours": len(ours),
        "count_dlib": len(theirs),
        "min_iou": min((iou(a.box, b.box) for a, b in zip(ours, theirs)), default=1.0) if n else None,
        "max_score_diff": max((abs(a.score - b.score) for a, b in zip(ours, theirs)), default=0.0) if n else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all cores)")
    ap.add_argument("--no-dlib-up1", action="store_true", help="skip dlib CNN at upsample 1")
    ap.add_argument("--images", action="store_true", help="also time the shared detection images")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "detect.json")
    args = ap.parse_args()

    import dlib

    from openlfr.engine.detection import Detection, HogDetector
    from openlfr.engine.mmod import MmodDetector
    from openlfr.engine.models import MMOD, model_path

    frame = first_frame(args.video)
    dlib_cnn = dlib.cnn_face_detection_model_v1(str(model_path(MMOD)))

    def run_dlib(img, up):
        return [
            Detection((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
            for d in dlib_cnn(img, up)
        ]

    rows = []
    for up in (0, 1):
        hog = HogDetector(upsample=up)
        t_hog, d_hog = timed(lambda: hog.detect(frame), args.repeats)
        ours = MmodDetector(upsample=up, threads=args.threads)
        t_ours, d_ours = timed(lambda: ours.detect(frame), args.repeats)
        row = {"upsample": up, "hog_s": t_hog, "hog_faces": len(d_hog), "ours_s": t_ours, "ours_faces": len(d_ours)}
        if up == 0 or not args.no_dlib_up1:
            t_dlib, d_dlib = timed(lambda: run_dlib(frame, up), 1, warmup=0)
            row |= {"dlib_cnn_s": t_dlib, "speedup": t_dlib / t_ours, **compare(d_ours, d_dlib)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    images = []
    if args.images:
        from PIL import Image

        ours = MmodDetector(upsample=0, threads=args.threads)
        for path in sorted((SHARED / "data" / "detection").glob("*.jpg")):
            img = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
            t_ours, d_ours = timed(lambda: ours.detect(img), args.repeats)
            t_dlib, d_dlib = timed(lambda: run_dlib(img, 0), 1, warmup=0)
            images.append(
                {"image": path.name, "size": list(img.shape[:2]), "ours_s": t_ours, "dlib_cnn_s": t_dlib,
                 "speedup": t_dlib / t_ours, **compare(d_ours, d_dlib)}
            )  # fmt: skip
            print(json.dumps(images[-1]), flush=True)

    print(f"\n1920x1080 frame ({args.video.name}), {os.cpu_count()} CPU threads, seconds per frame\n")
    print("| upsample | dlib HOG | dlib CNN | openlfr MMOD (onnxruntime) | speed-up vs dlib CNN | faces (ours/dlib) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        dl = f"{r['dlib_cnn_s']:.2f}" if "dlib_cnn_s" in r else "-"
        sp = f"{r['speedup']:.1f}x" if "speedup" in r else "-"
        faces = f"{r['ours_faces']}/{r.get('count_dlib', '-')}"
        print(f"| {r['upsample']} | {r['hog_s']:.3f} | {dl} | {r['ours_s']:.3f} | {sp} | {faces} |")
    if images:
        print("\n| image | size | dlib CNN | openlfr MMOD | speed-up | faces | min IoU | max score diff |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in images:
            iou_s = f"{r['min_iou']:.4f}" if r["min_iou"] is not None else "-"
            ds = f"{r['max_score_diff']:.1e}" if r["max_score_diff"] is not None else "-"
            print(
                f"| {r['image']} | {r['size'][1]}x{r['size'][0]} | {r['dlib_cnn_s']:.2f} | {r['ours_s']:.3f} | "
                f"{r['speedup']:.1f}x | {r['count_ours']}/{r['count_dlib']} | {iou_s} | {ds} |"
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu": platform.processor() or platform.machine(), "threads": os.cpu_count(), "video": str(args.video)}
    args.out.write_text(json.dumps({"meta": meta, "frame": rows, "images": images}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
