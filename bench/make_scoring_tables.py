"""Make the scoring model's packaged table (``src/openlfr/scoring/data/scoring_table.json``).

    python bench/scoring_gather.py          # descriptors of lfw-dev, clean and degraded (cached)
    python bench/make_scoring_tables.py [--gathered bench/out/scoring_lfw_dev.npz]

1. References: each identity's first image (by name), flip-averaged, as enrolment makes them.
2. Probes: every image, clean and degraded to faces of 64/48/32/24 px (JPEG 30-70, blur for
   half; ``openlfr.scoring.degrade``), each put in the quality band that
   ``ScoringModel.band_of`` gives it (face width, chip sharpness, yaw). The bands' sharpness
   floors are the 10th percentile of the chips' sharpness at the level each band is named after.
3. Per band, target FPIR and watchlist size (1 to 2,000): the Z-score threshold measured
   directly on random galleries (``openlfr.scoring.calibration.simulate``), made non-increasing
   with worse bands (a worse band is never more lenient than a better one). Z-scores of
   different sizes are on different scales (the cohort changes), so sizes are not forced monotone;
   between two calibrated sizes the model takes the stricter of the two.
4. A held-apart check: the same calibration on half of the identities, its thresholds measured
   on galleries drawn from the other half (``validation`` in the table).

With ``--fuse sface`` (the gathered file holds SFace's features, ``bench/scoring_gather.py``) it
writes the fused table instead (``scoring_table_sface.json``): the same bands and probes, the
score ``(1 - w) * z_dlib + w * z_sface`` (``--weight``), each model Z-normed against its own cohort
with its own prior (``openlfr.scoring.calibration.Fusion``); SFace's references flip-averaged,
its probes plain, as the product makes them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from openlfr.scoring.calibration import (  # noqa: E402
    SIZES, CalibrationData, Fusion, ProbeSet, _dist, held_apart_interval, prior_from, simulate, summarise, tail_quantiles,
)
from openlfr.scoring.cohort import COHORT  # noqa: E402
from openlfr.scoring.degrade import LEVELS_PX  # noqa: E402

TARGETS = (0.01, 0.003, 0.001, 0.0003)
BANDS = (  # name, min face px, level the sharpness floor comes from, label
    ("A", 80, "clean", "face at least 80 px wide, sharp, near-frontal"),
    ("B", 64, "64", "face at least 64 px"),
    ("C", 48, "48", "face at least 48 px"),
    ("D", 32, "32", "face at least 32 px"),
    ("E", 24, "24", "face at least 24 px"),
)
SHARP_Q = 10  # percentile of the level's chip sharpness that a band requires
YAW_Q = 99  # |yaw| beyond this percentile of lfw-dev is outside what was calibrated: not searched
P_GRID = np.logspace(-9, -2, 57)


def load(path: Path):
    """The gathered arrays sorted by (identity, path); LFW's known label errors (one person under two
    names, ``make_impostor_table.SAME_PERSON``) merged into one identity, so they are never strangers."""
    from make_impostor_table import SAME_PERSON

    z = np.load(path, allow_pickle=False)
    who = z["identity"].astype(str)
    for a, b in SAME_PERSON:
        who = np.where(who == b, a, who)
    order = np.lexsort((z["path"], who))
    g = {k: z[k][order] for k in z.files}
    g["identity"] = who[order]
    names, ident = np.unique(g["identity"], return_inverse=True)
    first = np.r_[True, ident[1:] != ident[:-1]]
    return g, names, ident, first


def normalised_sharpness(v):
    return v / (v + 100.0)


def make_bands(g) -> list[dict]:
    sharp = normalised_sharpness(g["sharpness"])  # (P, 1 + levels)
    cols = {"clean": 0, **{str(px): i + 1 for i, px in enumerate(LEVELS_PX)}}
    yaw = float(np.percentile(np.abs(g["yaw"]), YAW_Q))
    return [{"name": n, "label": lab, "min_face_px": px, "min_sharpness": round(float(np.percentile(sharp[:, cols[lv]], SHARP_Q)), 4),
             "max_yaw": round(yaw, 3), "calibrated_on": f"lfw-dev probes that fall in this band (clean and degraded to {lv if lv != 'clean' else 'none'})"}
            for n, px, lv, lab in BANDS]


def band_probes(g, ident, first, bands, model_cls, flip: bool = True, second: bool = False) -> dict[str, ProbeSet]:
    """Every (image, level) probe, put in its band; descriptors flip-averaged unless ``flip`` is False;
    with ``second``, SFace's plain features of the same probes too."""
    m = model_cls(bands)
    sharp = normalised_sharpness(g["sharpness"])
    descs, ids, refs, which, seconds = [], [], [], [], []
    for j in range(1 + len(LEVELS_PX)):
        px = g["box_width"] if j == 0 else np.minimum(g["box_width"], LEVELS_PX[j - 1])
        b = np.array([m.band_of(px[i], sharp[i, j], g["yaw"][i]) for i in range(len(px))], object)
        if flip:
            descs.append(g["flip"] if j == 0 else g["degraded_flip"][:, j - 1])
        else:
            descs.append(g["plain"] if j == 0 else g["degraded"][:, j - 1])
        if second:
            seconds.append(g["sface"] if j == 0 else g["sface_degraded"][:, j - 1])
        ids.append(ident)
        refs.append(first)
        which.append(b)
    desc, ids, refs, which = np.concatenate(descs), np.concatenate(ids), np.concatenate(refs), np.concatenate(which)
    sec = np.concatenate(seconds).astype(np.float32) if second else None
    out = {}
    for k, bd in enumerate(bands):
        sel = np.array([w == k for w in which])
        out[bd["name"]] = ProbeSet(desc[sel].astype(np.float32), ids[sel], refs[sel], None if sec is None else sec[sel])
    poor = np.array([w is None for w in which], bool)
    out["too_poor"] = ProbeSet(desc[poor], ids[poor], refs[poor], None if sec is None else sec[poor])
    return out


class _Bands:
    def __init__(self, bands):
        from openlfr.scoring.model import Band

        self.bands = [Band(b["name"], b["min_face_px"], b["min_sharpness"], b["max_yaw"], b["calibrated_on"]) for b in bands]

    def band_of(self, px, sharp, yaw):
        for i, b in enumerate(self.bands):
            if b.admits(px, sharp, yaw):
                return i
        return None


def calibrate_all(data: CalibrationData, bands, prior, targets, sizes, seed=0, log=print, fusion: Fusion | None = None) -> dict:
    d_refs = _dist(data.refs, data.refs)
    d_refs2 = _dist(data.second_refs, data.second_refs) if fusion is not None else None
    out = {}
    per = {}
    for bd in bands:
        name = bd["name"]
        ps = data.probes[name]
        d_all = _dist(data.refs, ps.desc)
        d_all2 = _dist(data.second_refs, ps.second) if fusion is not None else None
        per[name] = {}
        for n in sizes:
            if n >= len(data.refs) - 10:
                continue
            t0 = time.time()
            # one simulation per size; thresholds for every target from the pooled best Z-scores
            last = n == max(s for s in sizes if s < len(data.refs) - 10)
            r = simulate(data, name, n, targets[0], prior, seed=seed, d_all=d_all, d_refs=d_refs, keep_tail=last, keep_best=True,
                         fusion=fusion, d_all2=d_all2, d_refs2=d_refs2)
            sims = {t: summarise(r["raw"], t) for t in targets}
            if last:
                sims[targets[0]].update(tail=r["tail"], tail_total=r["tail_total"])
            per[name][n] = sims
            log(f"  band {name} n={n}: " + ", ".join(f"{t:g}: z {s['threshold']:+.3f} fnir {s.get('fnir', float('nan')):.3f}"
                                                     for t, s in sims.items()) + f" ({time.time() - t0:.1f} s)")
    for t in targets:
        row = {"target": t, "sizes": [], "z": {}, "measured": {}, "extrapolation": {}}
        prev = None
        for bd in bands:
            name = bd["name"]
            ns = sorted(per[name])
            z = np.array([per[name][n][t]["threshold"] for n in ns])
            if prev is not None:
                z = np.minimum(z, prev)  # never more lenient for a worse band
            prev = z
            row["sizes"] = ns
            row["z"][name] = [round(float(v), 4) for v in z]
            row["measured"][name] = [{k: (round(v, 6) if isinstance(v, float) else [round(x, 6) for x in v] if isinstance(v, list) else v)
                                      for k, v in per[name][n][t].items() if k not in ("tail", "tail_total", "threshold", "level")} for n in ns]
            big = per[name][ns[-1]][targets[0]]
            zz = tail_quantiles(big["tail"], big["tail_total"], P_GRID)
            row["extrapolation"][name] = {"p": [float(f"{p:.4g}") for p in P_GRID], "z": [round(v, 4) for v in zz],
                                          "from_size": ns[-1], "comparisons": big["tail_total"]}
        out[f"{t:g}"] = row
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gathered", type=Path, default=REPO / "bench" / "out" / "scoring_lfw_dev_v2.npz")
    ap.add_argument("--plain-probes", action="store_true", help="probes plain, not flip-averaged (the default)")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "openlfr" / "scoring" / "data" / "scoring_table.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default="", help="comma-separated watchlist sizes (default: all of SIZES)")
    ap.add_argument("--fuse", choices=["sface"], help="write the fused table (dlib + this second model)")
    ap.add_argument("--weight", type=float, default=0.5, help="the second model's weight in the fused score")
    args = ap.parse_args(argv)
    if args.fuse and args.out.name == "scoring_table.json":
        args.out = args.out.with_name("scoring_table_sface.json")
    g, names, ident, first = load(args.gathered)
    bands = make_bands(g)
    refs = np.zeros((len(names), 128), np.float32)
    refs[ident[first]] = g["flip"][first]
    probes = band_probes(g, ident, first, bands, _Bands, flip=not args.plain_probes, second=bool(args.fuse))
    for k, v in probes.items():
        print(f"band {k}: {len(v.desc)} probes", file=sys.stderr)
    second_refs = None
    if args.fuse:
        second_refs = np.zeros((len(names), g["sface_flip"].shape[1]), np.float32)
        second_refs[ident[first]] = g["sface_flip"][first]
    data = CalibrationData(refs, probes, second_refs)
    prior = prior_from(data)
    print(f"prior: mean {prior.mean:.4f} std {prior.std:.4f}", file=sys.stderr)
    fusion = None
    if args.fuse:
        p2 = prior_from(CalibrationData(second_refs, {}))
        fusion = Fusion(p2, args.weight)
        print(f"second prior: mean {p2.mean:.4f} std {p2.std:.4f}; weight {args.weight:g}", file=sys.stderr)
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else SIZES
    targets = calibrate_all(data, bands, prior, TARGETS, sizes, args.seed, log=lambda s: print(s, file=sys.stderr), fusion=fusion)

    # held apart: calibrate on the even identities, measure on the odd ones
    half = np.arange(len(names)) % 2 == 0
    val = validate(refs, probes, half, bands, prior, args.seed, second_refs, fusion)

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    table = {
        "kind": "openlfr scoring table",
        "version": 1,
        "description": "Z-score thresholds per probe quality band, target FPIR and watchlist size",
        "score": "z = (distance - mean_s) / std_s; mean_s, std_s: distances of subject s's template to its "
                 f"{COHORT} nearest other subjects in the watchlist, shrunk towards the prior with {prior.weight:g} pseudo-members",
        "probe_flip": not args.plain_probes,
        "cohort": {"k": COHORT, "prior": {"mean": round(prior.mean, 5), "std": round(prior.std, 5), "weight": prior.weight}},
        **({"fusion": {
            "second_model": args.fuse, "weight": args.weight,
            "score": f"z = {1 - args.weight:g} * z_dlib + {args.weight:g} * z_{args.fuse}; each z = (distance - mean_s) / std_s "
                     f"against that model's own cohort (Euclidean distance; {args.fuse}'s features unit length)",
            "second_cohort": {"k": COHORT, "prior": {"mean": round(fusion.prior.mean, 5), "std": round(fusion.prior.std, 5),
                                                     "weight": fusion.prior.weight}},
            "second_faces": "RetinaFace on the clean image (openlfr.evaluate.second.SFaceLocator), SFace's crop aligned from "
                            "its 5 landmarks on the clean and on each degraded image",
        }} if fusion is not None else {}),
        "bands": bands,
        "band_rule": f"the first band whose face width, sharpness floor (the {SHARP_Q}th percentile of lfw-dev chips at its level) "
                     f"and |yaw| limit (the {YAW_Q}th percentile of lfw-dev) the face meets; none: too poor to search",
        "targets": targets,
        "validation": val,
        "provenance": {
            "dataset": "lfw-dev (../shared/data/lfw-dev): 6,157 images of 2,829 identities",
            "references": "first image of each identity (by name), descriptor averaged with the mirrored chip",
            "probes": ("every image, " + ("plain" if args.plain_probes else "flip-averaged") + " descriptor; clean and degraded")
                      + " (openlfr.scoring.degrade: 64/48/32/24 px, JPEG 30-70, blur for half)",
            "faces": "evaluation policy (openlfr.evaluate.embedding.FaceLocator, HOG first)",
            "sizes": list(SIZES), "seed": args.seed,
            "date": dt.date.today().isoformat(), "commit": commit,
            "command": "python bench/scoring_gather.py && python bench/make_scoring_tables.py"
                       + (" --plain-probes" if args.plain_probes else "") + (f" --fuse {args.fuse} --weight {args.weight:g}" if args.fuse else ""),
            "probes_per_band": {k: int(len(v.desc)) for k, v in probes.items()},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


def validate(refs, probes, half, bands, prior, seed, second_refs=None, fusion=None) -> dict:
    """Calibrate on identities ``half``, measure on the others (sizes 10, 100, 500; target 0.001)."""
    def subset(mask):
        idx = np.flatnonzero(mask)
        remap = -np.ones(len(mask), np.int64)
        remap[idx] = np.arange(len(idx))
        ps = {}
        for k, p in probes.items():
            keep = mask[p.ident]
            ps[k] = ProbeSet(p.desc[keep], remap[p.ident[keep]], p.is_ref[keep], None if p.second is None else p.second[keep])
        return CalibrationData(refs[idx], ps, None if second_refs is None else second_refs[idx])

    cal, test = subset(half), subset(~half)
    rows = []
    for bd in bands:
        for n in (10, 100, 500):
            t = 0.001
            a = simulate(cal, bd["name"], n, t, prior, seed=seed, keep_best=True, fusion=fusion)
            b = simulate(test, bd["name"], n, t, prior, seed=seed + 1, keep_best=True, fusion=fusion)
            h = held_apart_interval(a["raw"], b["raw"], t, seed)
            rows.append({"band": bd["name"], "n": n, "target": t,
                         **{k: (round(v, 6) if isinstance(v, float) else [round(x, 6) for x in v] if isinstance(v, list) else v)
                            for k, v in h.items()}, "target_in_interval": bool(h["interval"][0] <= t <= h["interval"][1])})
            print(f"  validation band {bd['name']} n={n}: held-apart FPIR {h['fpir']:.5f}, interval {h['interval']}", file=sys.stderr)
    return {"method": "calibrated on even-numbered identities, measured on galleries and strangers from the odd-numbered "
                      "ones; interval: the held-apart FPIR at the ends of the calibrated threshold's 95% interval "
                      "(resampling galleries), each with its own 95% interval", "rows": rows}


if __name__ == "__main__":
    main()
