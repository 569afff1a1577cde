"""The second model's cost: SFace (int8, OpenCV DNN) against dlib's descriptor (onnxruntime), per face.

    python bench/bench_sface.py [--faces 64] [--seconds 4]

What adopting SFace in the live path would add per embedded face (issue 14, item 5). Faces: the
first image of every 40th lfw-dev identity (../shared), found by RetinaFace; SFace's 112x112 crops
and dlib's 150x150 chips of the same faces. Each network runs with 1 thread and with all cores,
batches of 1 and of 16, for ``--seconds`` each after a warm-up; the ratio is measured in the same
run. Prints a markdown table and writes bench/out/sface.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LFW = HERE.parent.parent / "shared" / "data" / "lfw-dev" / "images"


def per_face_ms(fn, items: np.ndarray, batch: int, seconds: float) -> float:
    fn(items[:batch])  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, len(items) - batch + 1, batch):
            fn(items[i : i + batch])
            n += batch
    return 1000 * (time.perf_counter() - t0) / max(n, 1)


def main() -> None:
    import cv2

    from openlfr.engine.descriptor import DescriptorModel
    from openlfr.engine.images import load_image
    from openlfr.engine.pipeline import FaceEngine
    from openlfr.engine.sface import SFaceModel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    engine = FaceEngine()
    sface = SFaceModel()
    crops, chips = [], []
    for p in sorted(LFW.glob("*/*_0001.jpg"))[::40]:
        rgb = load_image(p)
        dets = engine.detect(rgb)
        if not dets:
            continue
        d = max(dets, key=lambda x: x.width)
        crops.append(sface.align(rgb, d))
        chips.append(engine.align(rgb, [d])[0].chip)
        if len(crops) == args.faces:
            break
    crops, chips = np.stack(crops), np.stack(chips)
    rows = []
    cores = os.cpu_count() or 1
    for threads in sorted({1, cores}):
        cv2.setNumThreads(threads)
        dlib_model = DescriptorModel(threads=threads)
        for batch in (1, 16):
            s = per_face_ms(sface.compute, crops, batch, args.seconds)
            d = per_face_ms(dlib_model.compute, chips, batch, args.seconds)
            rows.append({"threads": threads, "batch": batch, "sface_ms": round(s, 2), "dlib_ms": round(d, 2),
                         "sface_over_dlib": round(s / d, 2)})
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                       "load_avg_at_end": list(os.getloadavg())}, "faces": int(len(crops)), "rows": rows}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "sface.json").write_text(json.dumps(out, indent=1) + "\n")
    print("| threads | batch | SFace ms/face | dlib ms/face | SFace / dlib |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['threads']} | {r['batch']} | {r['sface_ms']} | {r['dlib_ms']} | {r['sface_over_dlib']} |")
    print(json.dumps(out["machine"]))


if __name__ == "__main__":
    main()
