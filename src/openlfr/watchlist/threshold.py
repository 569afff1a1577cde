"""The default alert threshold, from a target false alert rate and the watchlist's size.

Thresholds are *distances*: a face alerts against a subject when the distance between its
descriptor and the subject's nearest template is **below** the threshold.

The packaged table (``data/impostor_table.json``, made by ``bench/make_impostor_table.py``)
holds the single-comparison false match rate ``p(t)``: the fraction of non-mated pairs
(different people) whose distance is below ``t``, measured on LFW dev. For a face that is not
on a watchlist of ``N`` subjects,

    FPIR(t, N) = 1 - (1 - p(t))^N

assuming its ``N`` comparisons are independent. They are not quite (some faces lie close to
many others), which makes the formula an *overestimate* at large N: the table's
``direct_check`` compares it with a direct measurement on sampled galleries. Several templates
per subject raise the rate a little; pass the number of templates for a more cautious choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

TABLE_NAME = "impostor_table.json"


@dataclass(frozen=True)
class ImpostorTable:
    """p(t) on a grid of distances, with where it came from."""

    thresholds: np.ndarray  # (G,) ascending distances
    fmr: np.ndarray  # (G,) P(non-mated distance < t); where few pairs: max(measured, tail fit)
    fmr_measured: np.ndarray  # (G,) the raw fraction
    counts: np.ndarray  # (G,) non-mated pairs below t
    n_comparisons: int
    reliable_from: float  # smallest t whose p(t) rests on enough observed pairs
    provenance: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    def p(self, t: float | np.ndarray) -> np.ndarray | float:
        """Single-comparison false match rate at distance threshold ``t`` (interpolated)."""
        return np.interp(t, self.thresholds, self.fmr)

    def fpir(self, t: float | np.ndarray, n: int) -> np.ndarray | float:
        """1 - (1 - p(t))^n, computed without cancellation."""
        p = np.clip(self.p(t), 0.0, 1.0 - 1e-12)
        return -np.expm1(n * np.log1p(-p))


def load_impostor_table(path: str | Path | None = None) -> ImpostorTable:
    """The packaged table, or one at ``path``."""
    if path is None:
        return _packaged()
    return _parse(json.loads(Path(path).read_text()))


@lru_cache(maxsize=1)
def _packaged() -> ImpostorTable:
    text = resources.files("openlfr.watchlist").joinpath("data", TABLE_NAME).read_text()
    return _parse(json.loads(text))


def _parse(d: dict) -> ImpostorTable:
    t = np.asarray(d["thresholds"], np.float64)
    measured = np.asarray(d["fmr_measured"], np.float64)
    return ImpostorTable(
        thresholds=t,
        fmr=np.asarray(d.get("fmr", measured), np.float64),
        fmr_measured=measured,
        counts=np.asarray(d["counts"], np.int64),
        n_comparisons=int(d["n_comparisons"]),
        reliable_from=float(d.get("reliable_from", t[0])),
        provenance=d.get("provenance", {}),
        raw=d,
    )


def fpir(threshold: float, n_subjects: int, table: ImpostorTable | None = None) -> float:
    """Expected probability that a face not on an ``n_subjects`` watchlist alerts at ``threshold``."""
    return float((table or load_impostor_table()).fpir(threshold, n_subjects))


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float  # distance; alert when distance < threshold
    target_fpir: float
    n_subjects: int
    expected_fpir: float
    reason: str


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"


def _pairs(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e4 else str(n)


def choose_threshold(n_subjects: int, target_fpir: float = 0.001, table: ImpostorTable | None = None) -> ThresholdChoice:
    """The largest tabulated distance whose FPIR for ``n_subjects`` stays ≤ ``target_fpir``."""
    if n_subjects < 1:
        raise ValueError("n_subjects must be at least 1")
    if not 0.0 < target_fpir < 1.0:
        raise ValueError("target_fpir must be between 0 and 1")
    tab = table or load_impostor_table()
    rates = tab.fpir(tab.thresholds, n_subjects)
    ok = np.flatnonzero(rates <= target_fpir)
    src = tab.provenance.get("dataset_short", "LFW dev")
    basis = f"single-comparison false match rate measured on {src}, {_pairs(tab.n_comparisons)} pairs"
    if len(ok) == 0:
        t = float(tab.thresholds[0])
        exp = float(rates[0])
        reason = (
            f"{t:.3f}: the smallest tabulated distance; even there a face that is not on a "
            f"{n_subjects}-subject watchlist alerts with probability {_pct(exp)}, above the "
            f"{_pct(target_fpir)} asked for ({basis})"
        )
        return ThresholdChoice(t, target_fpir, n_subjects, exp, reason)
    i = int(ok[-1])
    t, exp = float(tab.thresholds[i]), float(rates[i])
    if t < tab.reliable_from:
        basis += f"; below {tab.reliable_from:.3f} few pairs were seen and the rate is taken from a fitted tail"
    reason = (
        f"{t:.3f}: the largest distance at which a face that is not on a {n_subjects}-subject "
        f"watchlist alerts with probability ≤ {_pct(target_fpir)} (expected {_pct(exp)}; {basis})"
    )
    return ThresholdChoice(t, target_fpir, n_subjects, exp, reason)
