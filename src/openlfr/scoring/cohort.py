"""Per-subject cohort statistics of a watchlist: the Z-norm of ``evaluate identify --norm z``.

Why: some enrolled faces sit in a crowded part of descriptor space (many strangers come close to
them), others in an empty one. One distance threshold for all gives the crowded ones most of the
false alerts. Z-norm measures, for each subject, how close its ``k`` nearest *other* subjects
are (mean and spread of those distances), and judges a probe's distance to it against them:
``z = (d - mean) / std``. The statistics depend on the watchlist only, so they are computed once
when a snapshot is frozen or a run starts; a live search costs no more than before (a subject's
z threshold is turned into a distance threshold of its own).

A small watchlist has few others to learn from: its statistics are shrunk towards a prior (the
typical subject of the calibration data) with the weight of ``m0`` pseudo-members, so a
one-subject watchlist falls back to plain distance. The same rule is used at calibration, so the
packaged thresholds hold for the statistics computed here (see ``openlfr.scoring.calibration``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COHORT = 100  # nearest other subjects (chosen on lfw-dev for evaluate identify; docs/evaluation.md)
MAX_POOL = 8192  # larger watchlists take their cohort from an evenly spaced sample of subjects


@dataclass(frozen=True)
class Prior:
    mean: float
    std: float
    weight: float  # pseudo-members


def subject_templates(templates: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One template per subject (the mean of its templates), and the subject labels in order."""
    t = np.asarray(templates, np.float64)
    lab = np.asarray(labels, np.int64)
    uniq, inv = np.unique(lab, return_inverse=True)
    sums = np.zeros((len(uniq), t.shape[1]))
    np.add.at(sums, inv, t)
    return (sums / np.bincount(inv)[:, None]).astype(np.float32), uniq


def cohort_stats(subject_tpl: np.ndarray, prior: Prior, k: int = COHORT, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per subject of its distances to its ``k`` nearest other subjects, shrunk to ``prior``."""
    g = np.asarray(subject_tpl, np.float64)
    n = len(g)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    pool = g if n <= MAX_POOL else g[np.linspace(0, n - 1, MAX_POOL).astype(np.int64)]
    pool_idx = np.arange(n) if n <= MAX_POOL else np.linspace(0, n - 1, MAX_POOL).astype(np.int64)
    m = min(k, len(pool) - (1 if n <= MAX_POOL else 0))
    mean = np.full(n, prior.mean)
    var = np.full(n, prior.std**2)
    if m <= 0:
        return mean, np.sqrt(var)
    pn = (pool * pool).sum(1)
    for s in range(0, n, chunk):
        x = g[s : s + chunk]
        d = np.sqrt(np.maximum((x * x).sum(1)[:, None] + pn[None] - 2 * x @ pool.T, 0))
        rows = np.arange(s, min(s + chunk, n))
        same = rows[:, None] == pool_idx[None, :]
        d[same] = np.inf
        near = np.partition(d, m - 1, axis=1)[:, :m] if m < d.shape[1] else d
        near = np.where(np.isfinite(near), near, np.nan)
        mu, v = np.nanmean(near, 1), np.nanvar(near, 1)
        w = m / (m + prior.weight)
        mean[rows] = w * mu + (1 - w) * prior.mean
        var[rows] = w * v + (1 - w) * prior.std**2
    return mean, np.maximum(np.sqrt(var), 1e-4)
