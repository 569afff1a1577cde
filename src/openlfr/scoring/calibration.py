"""Calibration of the scoring model: a Z-score threshold per quality band and watchlist size.

Why: a threshold is only as good as the evidence that it meets its target false alert rate for
the faces a deployment will see. For each band the evidence is direct: galleries of ``n``
identities are drawn at random from the calibration data (their first image, enrolled as
enrolment does), their cohort statistics computed as a live run computes them
(``openlfr.scoring.cohort``), and every image of every identity *outside* the gallery, degraded
to the band's lower edge, is searched against it. The threshold for ``(band, n)`` is the largest
Z-score threshold at which at most ``target`` of those searches alert (pooled over galleries),
with a 95% Wilson interval on the FPIR reached. Mated images (the gallery identities' other
images, degraded alike) give the FNIR expected there.

Watchlists larger than the largest simulated size use the single-comparison false match rate of
that size's Z-scores with the independence formula ``1 - (1 - p)^n`` (an over-estimate of FPIR,
so a cautious threshold), never a looser threshold than the largest simulated size's.

Fusion with a second model (``Fusion``; SFace, ``engine/sface.py``): each model's distance is
Z-normed against its own cohort (the same rule, its own prior) and the score is their weighted
mean, ``z = (1 - w) * z_first + w * z_second``; the calibration above runs on that score.

Everything is numpy and seeded; ``bench/make_scoring_tables.py`` runs it on lfw-dev and writes
the packaged table, and the tests run it on held-apart identities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cohort import COHORT, Prior, cohort_stats

SIZES = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
TAIL_KEEP = 200_000
PRIOR_WEIGHT = 100.0  # pseudo-members of the prior (chosen on lfw-dev from 30, 100, 300: docs/evaluation.md)  # lowest single-comparison Z-scores kept for the extrapolation


@dataclass
class ProbeSet:
    """Probe descriptors (P, 128) with the identity index of each and whether the image is its
    identity's reference image (a reference's own image, even degraded, is not a mated probe)."""

    desc: np.ndarray
    ident: np.ndarray
    is_ref: np.ndarray
    second: np.ndarray | None = None  # (P, D2) the second model's features of the same probes


@dataclass
class CalibrationData:
    """``refs[i]`` is identity ``i``'s reference descriptor (enrolled: flip-averaged);
    ``probes[name]`` a probe set (a quality band's probes, or a degradation level's);
    ``second_refs`` the second model's reference features, when fused."""

    refs: np.ndarray
    probes: dict[str, ProbeSet]
    second_refs: np.ndarray | None = None


@dataclass(frozen=True)
class Fusion:
    """Score fusion with the second model: its cohort prior, and its weight in the fused score."""

    prior: Prior
    weight: float = 0.5


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0)).astype(np.float32)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


def prior_from(data: CalibrationData, k: int = COHORT, weight: float = PRIOR_WEIGHT) -> Prior:
    """The typical subject's cohort statistics: medians over all references (no shrinkage)."""
    mean, std = cohort_stats(data.refs, Prior(0.0, 1.0, 0.0), k)
    return Prior(float(np.median(mean)), float(np.median(std)), weight)


def threshold_at(best: np.ndarray, target: float) -> float:
    """Largest threshold with at most floor(target * n) of ``best`` strictly below it."""
    s = np.sort(best)
    allowed = int(math.floor(target * s.size + 1e-9))
    return float(s[allowed]) if allowed < s.size else math.inf


def replicates_for(n: int, n_ids: int) -> int:
    """Galleries per size: small galleries differ much from one draw to the next."""
    return 400 if n <= 20 else 200 if n <= 200 else 60 if n <= 500 else 30


def simulate(data: CalibrationData, level: str, n: int, target: float, prior: Prior, *, k: int = COHORT,
             seed: int = 0, replicates: int | None = None, d_all: np.ndarray | None = None,
             d_refs: np.ndarray | None = None, keep_tail: bool = False, keep_best: bool = False,
             fusion: Fusion | None = None, d_all2: np.ndarray | None = None, d_refs2: np.ndarray | None = None) -> dict:
    """Direct FPIR/FNIR for galleries of ``n`` identities at one degradation level (of the fused
    score when ``fusion`` is given: ``data`` then holds the second model's features too)."""
    n_ids = len(data.refs)
    if n >= n_ids:
        raise ValueError(f"cannot draw {n}-identity galleries from {n_ids} identities and keep strangers out")
    ps = data.probes[level]
    d_all = _dist(data.refs, ps.desc) if d_all is None else d_all
    if fusion is not None:
        if data.second_refs is None or ps.second is None:
            raise ValueError("fusion needs the second model's reference and probe features")
        d_all2 = _dist(data.second_refs, ps.second) if d_all2 is None else d_all2

    def gallery_stats(g, refs, d_r, pr):
        if d_r is not None and n > 1:
            return _stats_from_matrix(d_r[np.ix_(g, g)], pr, k)
        return cohort_stats(refs[g], pr, k)

    def scores(g, cols, stats):
        (m1, s1), second = stats
        z = (d_all[np.ix_(g, cols)] - m1[:, None]) / s1[:, None]
        if second is None:
            return z
        m2, s2 = second
        z2 = (d_all2[np.ix_(g, cols)] - m2[:, None]) / s2[:, None]
        return (1.0 - fusion.weight) * z + fusion.weight * z2
    reps = replicates or replicates_for(n, n_ids)
    rng = np.random.default_rng(seed + 7919 * n)
    nm_best, m_best, m_hit, m_probe, tails, tail_total, rep_of, who_of, near_of = [], [], [], [], [], 0, [], [], []
    for _ in range(reps):
        g = np.sort(rng.choice(n_ids, n, replace=False))
        inside = np.zeros(n_ids, bool)
        inside[g] = True
        stats = (gallery_stats(g, data.refs, d_refs, prior),
                 gallery_stats(g, data.second_refs, d_refs2, fusion.prior) if fusion is not None else None)
        out = np.flatnonzero(~inside[ps.ident])
        z = scores(g, out, stats)
        nm_best.append(z.min(0))
        near_of.append(g[z.argmin(0)])
        rep_of.append(np.full(out.size, len(rep_of), np.int64))
        who_of.append(ps.ident[out])
        if keep_tail:
            flat = z.ravel()
            kk = min(TAIL_KEEP // reps, flat.size)
            tails.append(np.partition(flat, kk - 1)[:kk])
            tail_total += flat.size
        mated = np.flatnonzero(inside[ps.ident] & ~ps.is_ref)
        if mated.size:
            zm = scores(g, mated, stats)
            pos = np.searchsorted(g, ps.ident[mated])
            m_best.append(zm[pos, np.arange(mated.size)])
            m_hit.append(zm.argmin(0) == pos)
            m_probe.append(mated)
    raw = {"n": n, "level": level, "replicates": reps, "best": np.concatenate(nm_best), "replicate": np.concatenate(rep_of),
           "probe_identity": np.concatenate(who_of), "nearest_identity": np.concatenate(near_of),
           "mated_best": np.concatenate(m_best) if m_best else np.zeros(0), "mated_hit": np.concatenate(m_hit) if m_hit else np.zeros(0, bool),
           "mated_probe": np.concatenate(m_probe) if m_probe else np.zeros(0, np.int64)}
    res = summarise(raw, target)
    if keep_best:
        res["best"] = raw["best"]
        res["raw"] = raw
    if keep_tail:
        res["tail"] = np.sort(np.concatenate(tails))
        res["tail_total"] = int(tail_total)
    return res


def summarise(raw: dict, target: float) -> dict:
    """Threshold at ``target`` from a simulation's pooled scores; FPIR reached and FNIR, with intervals."""
    nm = raw["best"]
    t = threshold_at(nm, target)
    fp = fpir_at(nm, t, raw.get("probe_identity"), raw.get("nearest_identity"))
    res = {"n": raw["n"], "level": raw["level"], "replicates": raw["replicates"], "threshold": t, **fp}
    mb, mh = raw["mated_best"], raw["mated_hit"]
    if mb.size:
        miss = int((~(mh & (mb < t))).sum())
        flo, fhi = wilson(miss, mb.size)
        res.update({"mated": int(mb.size), "fnir": miss / mb.size, "fnir_ci95": [flo, fhi]})
    return res


def _stats_from_matrix(d: np.ndarray, prior: Prior, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``cohort_stats`` from a precomputed subject x subject distance matrix (same rule)."""
    n = len(d)
    m = min(k, n - 1)
    dd = d.astype(np.float64, copy=True)
    np.fill_diagonal(dd, np.inf)
    near = np.partition(dd, m - 1, axis=1)[:, :m]
    w = m / (m + prior.weight)
    mean = w * near.mean(1) + (1 - w) * prior.mean
    var = w * near.var(1) + (1 - w) * prior.std**2
    return mean, np.maximum(np.sqrt(var), 1e-4)


def tail_quantiles(tail: np.ndarray, total: int, p_grid: np.ndarray) -> list[float]:
    """Single-comparison Z-score at each false match rate of ``p_grid`` (from the lowest ``tail`` of
    ``total`` comparisons): the look-up the model extrapolates with (independence formula)."""
    return [float(tail[min(int(math.floor(p * total)), len(tail) - 1)]) for p in p_grid]


def fpir_at(best: np.ndarray, threshold: float, cluster: np.ndarray | None = None, nearest: np.ndarray | None = None,
            seed: int = 0) -> dict:
    """FPIR of pooled nearest Z-scores at a fixed threshold, with a 95% interval from resampling
    identities (``cluster``: each search's stranger; ``nearest``: the enrolled identity it came
    closest to). Some people look like many others, as strangers or as enrolled subjects, so
    searches are not independent: an identity drawn k times weighs k in both roles. Widened to at
    least Wilson's interval."""
    best = np.asarray(best)
    hit = best < threshold
    k, n = int(hit.sum()), int(best.size)
    lo, hi = wilson(k, n)
    if cluster is not None and cluster.size == n and n:
        ids = np.unique(cluster if nearest is None else np.concatenate([cluster, nearest]))
        pc = np.searchsorted(ids, cluster)
        tr = np.bincount(pc, minlength=len(ids)).astype(np.float64)
        hp = pc[hit]
        hg = np.searchsorted(ids, nearest[hit]) if nearest is not None else None
        rng = np.random.default_rng(seed)
        rates = []
        for _ in range(1000):
            w = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)).astype(np.float64)
            ev = (w[hp] * (w[hg] if hg is not None else 1.0)).sum()
            rates.append(ev / max((w * tr).sum(), 1.0))
        lo, hi = float(min(lo, np.quantile(rates, 0.025))), float(max(hi, np.quantile(rates, 0.975)))
    return {"trials": n, "false_alerts": k, "fpir": k / max(n, 1), "fpir_ci95": [lo, hi]}


def threshold_interval(raw: dict, target: float, b: int = 400, seed: int = 0) -> tuple[float, float]:
    """95% interval of the calibrated threshold, resampling the calibration data's stranger
    identities: how much the threshold itself would move with other strangers."""
    ids = np.unique(np.concatenate([raw["probe_identity"], raw["nearest_identity"]]))
    pc, gc = np.searchsorted(ids, raw["probe_identity"]), np.searchsorted(ids, raw["nearest_identity"])
    best = raw["best"]
    order = np.argsort(best)
    rng = np.random.default_rng(seed)
    ts = []
    for _ in range(b):
        w = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)).astype(np.float64)
        tw = w[pc][order]  # a search's weight as a trial
        hw = (w[pc] * w[gc])[order]  # and as a false alert below a threshold
        allowed = target * tw.sum()
        k = int(np.searchsorted(np.cumsum(hw), allowed, side="right"))
        ts.append(float(best[order][min(k, len(best) - 1)]))
    return float(np.quantile(ts, 0.025)), float(np.quantile(ts, 0.975))


def held_apart_interval(cal_raw: dict, test_raw: dict, target: float, seed: int = 0) -> dict:
    """FPIR on held-apart identities at the threshold calibrated on others, with an interval
    that carries both the calibration's uncertainty (its threshold's interval) and the held-apart
    measurement's (resampling its galleries): the target should lie inside it."""
    t = threshold_at(cal_raw["best"], target)
    t_lo, t_hi = threshold_interval(cal_raw, target, seed=seed)
    c, g = test_raw["probe_identity"], test_raw["nearest_identity"]
    at = fpir_at(test_raw["best"], t, c, g, seed)
    lo = fpir_at(test_raw["best"], t_lo, c, g, seed)["fpir_ci95"][0]
    hi = fpir_at(test_raw["best"], t_hi, c, g, seed)["fpir_ci95"][1]
    return {"threshold": t, "threshold_ci95": [t_lo, t_hi], **at, "interval": [lo, hi]}
