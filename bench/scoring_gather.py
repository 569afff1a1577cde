"""Descriptors of every lfw-dev image, clean and degraded, for ``bench/make_scoring_tables.py``.

    python bench/scoring_gather.py [--data ../shared/data/lfw-dev] [--out bench/out/scoring_lfw_dev.npz]

Per image: the face the evaluation's policy finds (``openlfr.evaluate.embedding.FaceLocator``),
its box width, landmarks geometry (inter-ocular px, yaw, roll), the chip's sharpness, and the
descriptors: plain and flip-averaged of the clean chip, and plain of the chip cut from the image
degraded to each of ``openlfr.scoring.degrade.LEVELS_PX`` (JPEG 30-70, blur for half; seeded per
image), plain and flip-averaged. With SFace installed, the second model's features too (the face
found by RetinaFace on the clean image, ``evaluate.second.SFaceLocator``; its crop aligned from the
same landmarks on the clean and on each degraded image, degraded exactly as for dlib): plain and
flip-averaged of the clean crop, plain of the degraded ones (``sface*`` columns). Resumable: an
interrupted run keeps what it saved.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    from openlfr.engine.chips import face_chip
    from openlfr.engine.images import ImageError, load_image
    from openlfr.engine.quality import pose_from_landmarks, sharpness_of
    from openlfr.evaluate.embedding import FaceLocator
    from openlfr.scoring.degrade import LEVELS_PX, degrade, draw

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent.parent / "shared" / "data" / "lfw-dev")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "scoring_lfw_dev_v2.npz")
    args = ap.parse_args(argv)
    if not (args.data / "images").is_dir():
        args.data = Path("/work/shared/data/lfw-dev")
    base = args.data / "images"
    items = [(d.name, str(f.relative_to(args.data))) for d in sorted(base.iterdir()) if d.is_dir()
             for f in sorted(d.iterdir()) if f.suffix.lower() == ".jpg"]
    rows: dict[str, dict] = {}
    if args.out.is_file():
        with np.load(args.out, allow_pickle=False) as z:
            for i, p in enumerate(z["path"]):
                rows[str(p)] = {k: z[k][i] for k in z.files}
    todo = [(who, rel) for who, rel in items if rel not in rows]
    print(f"{len(items)} images, {len(todo)} to do", file=sys.stderr)
    loc = FaceLocator("hog")
    desc = loc.engine.descriptor
    sface = _sface()
    t0 = time.time()
    for start in range(0, len(todo), 64):
        chunk = todo[start : start + 64]
        chips, meta = [], []
        for who, rel in chunk:
            try:
                rgb = load_image(args.data / rel)
            except ImageError:
                continue
            f = loc.locate(rgb)
            lm = f.chip_landmarks(False)
            iod, yaw, roll = pose_from_landmarks(f.landmarks)
            width = float(f.box[2] - f.box[0])
            clean = face_chip(rgb, lm)
            cs = [clean]
            images = [degrade(rgb, width, draw(px, Path(rel).name)) for px in LEVELS_PX]
            for im in images:
                cs.append(face_chip(im, lm))
            chips += cs
            extra = {}
            if sface is not None:
                model, sloc = sface
                smethod, det = sloc.locate(rgb)
                crops = np.stack([model.align(im, det) for im in [rgb] + images])
                feats = model.compute(crops)
                extra = {"sface_method": smethod, "sface": feats[0], "sface_flip": model.compute(crops[:1], flip=True)[0],
                         "sface_degraded": feats[1:]}
            meta.append((who, rel, f.method, width, iod, yaw, roll, [sharpness_of(c) for c in cs], extra))
        if not chips:
            continue
        c = np.stack(chips)
        d = desc.compute(c)
        k = 1 + len(LEVELS_PX)
        mirror_all = desc.compute(c[:, :, ::-1])  # every chip mirrored: flip-averaged probes too
        mirror = mirror_all[np.arange(0, len(c), k)]
        for j, (who, rel, method, width, iod, yaw, roll, sharp, extra) in enumerate(meta):
            block = d[j * k : (j + 1) * k]
            rows[rel] = {
                "path": rel, "identity": who, "method": method, "box_width": width, "iod": iod, "yaw": yaw,
                "roll": roll, "sharpness": np.array(sharp, np.float32), "plain": block[0],
                "flip": (block[0] + mirror[j]) / 2, "degraded": block[1:],
                "degraded_flip": (block[1:] + mirror_all[j * k + 1 : (j + 1) * k]) / 2, **extra,
            }
        _save(args.out, rows)
        n = start + len(chunk)
        print(f"  {n}/{len(todo)} images, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)


def _sface():
    """(SFaceModel, SFaceLocator), or None where SFace's weights are not installed."""
    from openlfr.engine.models import ModelFileError

    try:
        from openlfr.engine.sface import SFaceModel
        from openlfr.evaluate.second import SFaceLocator

        return SFaceModel(), SFaceLocator()
    except ModelFileError as e:
        print(f"no SFace features: {e}", file=sys.stderr)
        return None


def _save(out: Path, rows: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(rows)
    cols = {k: np.stack([np.asarray(rows[p][k]) for p in keys]) for k in rows[keys[0]]}
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **cols)
    tmp.replace(out)


if __name__ == "__main__":
    main()
