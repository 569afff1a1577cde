"""Figures of the scoring model on lfw-dev (docs/evaluation.md, "Scoring model").

    python bench/scoring_figures.py [--gathered bench/out/scoring_lfw_dev.npz]

1. The evaluate-identify protocol (gallery: first image of the 806 identities with two or more
   images; mated probes: their other images; non-mated: the 2,023 single-image identities) as the
   product embeds: references flip-averaged, probes as the scoring model says (``probe_flip``). FNIR at FPIR 0.001 for raw distance and
   for the scoring model's Z-score (threshold measured on this data), and FNIR/FPIR at the
   packaged thresholds for 806 subjects, per probe band.
2. Probes degraded to 32 px against the 2,829-subject watchlist (every identity's first image;
   each probe's own identity left out): FPIR at the live threshold of before (raw distance from
   the impostor table) and with the scoring model (bands, per-subject thresholds; a probe too
   poor to search never alerts and is counted).

3. Clean probes at the packaged band A thresholds of larger watchlists (811 to 20,000 subjects):
   how FNIR falls as the threshold tightens with N.

With the fused table packaged and SFace's features gathered, the same for the fused score
(``fused``: dlib's and SFace's Z-scores weighted as the table says; SFace's references flip-averaged,
its probes plain): every subject is compared, where a live run decides among the nearest five by
dlib's distance, so the FPIR here is an upper bound of the live one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from openlfr.evaluate import metrics  # noqa: E402
from openlfr.scoring import load_scoring_model  # noqa: E402
from openlfr.scoring.calibration import wilson  # noqa: E402
from openlfr.scoring.cohort import cohort_stats  # noqa: E402
from openlfr.scoring.degrade import LEVELS_PX  # noqa: E402


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def ci(k, n):
    lo, hi = wilson(k, n)
    return [round(lo, 5), round(hi, 5)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gathered", type=Path, default=REPO / "bench" / "out" / "scoring_lfw_dev_v2.npz")
    args = ap.parse_args(argv)
    from make_scoring_tables import load

    g, names, inv, first = load(args.gathered)  # LFW's known label errors merged (one person, two names)
    ident = g["identity"]
    cnt = np.bincount(inv)
    multi = cnt[inv] >= 2
    m = load_scoring_model()
    sharp = g["sharpness"] / (g["sharpness"] + 100.0)
    out = {}

    # 1. evaluate protocol, product embedding
    gi = np.flatnonzero(first & multi)
    mated = np.flatnonzero(multi & ~first)
    nonm = np.flatnonzero(~multi)
    G = g["flip"][gi]
    gid = ident[gi]
    mean, std = cohort_stats(G, m.prior, m.k)
    f = m.fused if "sface" in g else None
    if f is not None:
        G2 = unit(g["sface_flip"][gi])
        fm1, fs1 = cohort_stats(G, f.prior, f.k)
        fm2, fs2 = cohort_stats(G2, f.second_prior, f.second_k)
        w = f.second_weight
    res = {}
    for label, lvl in [("clean", 0)] + [(f"{px}px", i + 1) for i, px in enumerate(LEVELS_PX)]:
        if m.probe_flip:  # probes embedded as the product embeds them
            P = g["flip"] if lvl == 0 else g["degraded_flip"][:, lvl - 1]
        else:
            P = g["plain"] if lvl == 0 else g["degraded"][:, lvl - 1]
        px = g["box_width"] if lvl == 0 else np.minimum(g["box_width"], LEVELS_PX[lvl - 1])
        bands = np.array([m.band_of(px[i], sharp[i, lvl], g["yaw"][i]) for i in range(len(P))], object)
        d_m, d_n = metrics.pairwise_distances(P[mated], G), metrics.pairwise_distances(P[nonm], G)
        row = {}
        scores = [("raw", d_m, d_n, None), ("model", (d_m - mean) / std, (d_n - mean) / std, m)]
        if f is not None:
            P2 = g["sface"] if lvl == 0 else g["sface_degraded"][:, lvl - 1]
            e_m, e_n = metrics.pairwise_distances(P2[mated], G2), metrics.pairwise_distances(P2[nonm], G2)
            scores.append(("fused", (1 - w) * (d_m - fm1) / fs1 + w * (e_m - fm2) / fs2,
                           (1 - w) * (d_n - fm1) / fs1 + w * (e_n - fm2) / fs2, f))
        for sc_name, sm, sn, mm in scores:
            a, b = metrics.search(sm, gid), metrics.search(sn, gid)
            hit = a.best_id == ident[mated]
            row[sc_name] = {f"fnir_at_fpir_{t:g}": round(metrics.fnir_at_fpir(a.best, hit, b.best, t).fnir, 4) for t in (0.01, 0.003, 0.001)}
            if mm is not None:
                # at the packaged thresholds: per probe, its band's threshold (too poor: not searched)
                n = len(gi)
                zt = {k: mm.z_threshold(k, n, 0.001) for k in range(len(mm.bands))}
                bm, bn = bands[mated], bands[nonm]
                alert_m = np.array([bb is not None and s < zt[bb] for bb, s in zip(bm, a.best)])
                alert_n = np.array([bb is not None and s < zt[bb] for bb, s in zip(bn, b.best)])
                fn = int((~(alert_m & hit)).sum())
                fp = int(alert_n.sum())
                per = {}
                for k, bd in enumerate(m.bands):
                    sm_, sn_ = bm == k, bn == k
                    per[bd.name] = {"mated": int(sm_.sum()), "nonmated": int(sn_.sum()),
                                    "fnir": round(float((~(alert_m & hit))[sm_].mean()), 4) if sm_.any() else None,
                                    "fnir_ci95": ci(int((~(alert_m & hit))[sm_].sum()), int(sm_.sum())) if sm_.any() else None,
                                    "fpir": round(float(alert_n[sn_].mean()), 5) if sn_.any() else None,
                                    "fpir_ci95": ci(int(alert_n[sn_].sum()), int(sn_.sum())) if sn_.any() else None}
                row[sc_name]["at_packaged_thresholds_0.001"] = {
                    "fnir": round(fn / len(mated), 4), "fnir_ci95": ci(fn, len(mated)),
                    "fpir": round(fp / len(nonm), 5), "fpir_ci95": ci(fp, len(nonm)),
                    "too_poor_to_search": {"mated": int(sum(bb is None for bb in bm)), "nonmated": int(sum(bb is None for bb in bn))},
                    "per_band": per}
        res[label] = row
        print(label, json.dumps(row), file=sys.stderr)
    out["evaluate_protocol"] = {"gallery": int(len(gi)), "mated": int(len(mated)), "nonmated": int(len(nonm)), "levels": res}

    # 2. 32 px probes against the 2,829-subject watchlist, own identity left out
    from openlfr.watchlist.threshold import choose_threshold

    W = np.zeros((len(names), 128), np.float32)
    W[inv[first]] = g["flip"][first]
    j = 1 + LEVELS_PX.index(32)
    P = g["degraded_flip" if m.probe_flip else "degraded"][:, j - 1]
    D = metrics.pairwise_distances(P, W)
    D[np.arange(len(P)), inv] = np.inf
    before = choose_threshold(len(names), 0.001)
    nearest = D.min(1)
    fp_before = int((nearest < before.threshold).sum())
    ws = m.for_watchlist(W, np.arange(len(names)), 0.001)
    bands = [m.band_of(min(g["box_width"][i], 32), sharp[i, j], g["yaw"][i]) for i in range(len(P))]
    fp_after, poor = 0, 0
    per_band = {bd.name: [0, 0] for bd in m.bands}
    fused_fp, fused_band = 0, {bd.name: [0, 0] for bd in m.bands}
    if f is not None:
        W2 = np.zeros((len(names), g["sface_flip"].shape[1]), np.float32)
        W2[inv[first]] = g["sface_flip"][first]
        wsf = m.for_watchlist(W, np.arange(len(names)), 0.001, second_templates=W2).second
        D2 = metrics.pairwise_distances(g["sface_degraded"][:, j - 1], unit(W2))
    for i, bnd in enumerate(bands):
        if bnd is None:
            poor += 1
            continue
        thr = ws.mean + ws.z[bnd] * ws.std  # every subject's threshold for this band
        hit = bool((D[i] < thr).any())
        fp_after += hit
        per_band[m.bands[bnd].name][0] += hit
        per_band[m.bands[bnd].name][1] += 1
        if f is not None:
            z = (1 - wsf.weight) * (D[i] - wsf.mean1) / wsf.std1 + wsf.weight * (D2[i] - wsf.mean2) / wsf.std2
            z[inv[i]] = np.inf
            fh = bool((z < wsf.z[bnd]).any())
            fused_fp += fh
            fused_band[m.bands[bnd].name][0] += fh
            fused_band[m.bands[bnd].name][1] += 1
    out["degraded_32px_vs_2829"] = {
        "probes": int(len(P)),
        "before": {"threshold": before.threshold, "reason": before.reason, "false_alerts": fp_before,
                   "fpir": round(fp_before / len(P), 5), "fpir_ci95": ci(fp_before, len(P))},
        "scoring_model": {"false_alerts": fp_after, "fpir": round(fp_after / len(P), 5), "fpir_ci95": ci(fp_after, len(P)),
                          "too_poor_to_search": poor,
                          "per_band": {k: {"false_alerts": v[0], "searched": v[1]} for k, v in per_band.items()}},
        **({"fused": {"false_alerts": fused_fp, "fpir": round(fused_fp / len(P), 5), "fpir_ci95": ci(fused_fp, len(P)),
                      "too_poor_to_search": poor,
                      "per_band": {k: {"false_alerts": v[0], "searched": v[1]} for k, v in fused_band.items()}}}
           if f is not None else {}),
    }
    print(json.dumps(out["degraded_32px_vs_2829"], indent=1), file=sys.stderr)

    # 3. clean probes of the evaluate protocol at the packaged band A thresholds of larger watchlists
    # (the probes' own Z-scores against the 811-identity gallery; only the threshold follows N)
    sizes = (811, 1000, 2000, 2829, 5000, 10000, 20000)
    at_size = {}
    Dm = metrics.pairwise_distances(g["flip" if m.probe_flip else "plain"][mated], G)
    models = [("dlib", (Dm - mean) / std, m)]
    if f is not None:
        zf1 = (Dm - fm1) / fs1
        zf2 = (metrics.pairwise_distances(g["sface"][mated], G2) - fm2) / fs2
        models.append(("fused", (1 - w) * zf1 + w * zf2, f))
    for name, z, mm in models:
        a = metrics.search(z, gid)
        hit = a.best_id == ident[mated]
        at_size[name] = {str(n): {"z": round(mm.z_threshold(0, n, 0.001), 3),
                                  "fnir": round(float(1 - np.mean(hit & (a.best < mm.z_threshold(0, n, 0.001)))), 4)} for n in sizes}
    out["fnir_at_larger_watchlists_0.001"] = at_size
    print(json.dumps(at_size), file=sys.stderr)
    (REPO / "bench" / "out" / "scoring_figures.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
