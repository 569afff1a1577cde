"""Descriptor throughput: dlib against our runtimes, on the same real chips, in one process.

    python bench/bench_embed.py [--seconds 5] [--images DIR]

Chips come from LFW in ../shared when present (64 faces), else from the bundled sample photos.
Writes bench/out/embed.json and prints a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from openlfr.benchmarks.embed import bench_embed, real_chips

HERE = Path(__file__).resolve().parent
LFW = HERE.parent.parent / "shared" / "data" / "lfw-dev" / "images"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--images", type=Path, default=LFW if LFW.is_dir() else None)
    args = ap.parse_args()
    images = sorted(args.images.glob("*/*_0001.jpg"))[::40][:64] if args.images else None
    chips = real_chips(images, 64)
    rows = []
    fp32 = bench_embed(chips, seconds=args.seconds, runtimes=("onnx",))
    rows.append(fp32)
    try:
        import torch  # noqa: F401

        for prec in ("fp32", "bf16"):
            rows.append(bench_embed(chips, seconds=args.seconds, runtimes=("torch",), precision=prec))
    except ImportError:
        pass
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "embed.json").write_text(json.dumps({"load_avg": os.getloadavg(), "runs": rows}, indent=2))
    print(f"machine: {rows[0]['machine']}; load average {os.getloadavg()[0]:.2f}")
    print("| runtime | faces/s | dlib faces/s (same run) | ratio | max abs diff vs dlib |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['runtime']} | {r['faces_per_s']:.0f} | {r['dlib_faces_per_s']:.1f} | {r['ratio']:.1f}x | {r['max_abs_diff_vs_dlib']:.1e} |")


if __name__ == "__main__":
    main()
