"""Demographic differentials: FNIR and FPIR per group at a threshold, with bootstrap intervals,
ratios to the best group, and a plain statement where a sample is too small to conclude.

Input: a CSV assigning a group to each identity (``identity,group``; the first column may also be
called ``subject``/``subject_id``/``name``), and per identity the counts of errors and trials for
each metric (from a calibration: mated probes that do not alert for FNIR; searches of a stranger's
image that alert against a simulated gallery for FPIR).

For each group and metric:

- rate = errors / trials, pooled over the group's identities;
- a 95% interval by bootstrap, resampling the group's *identities* (a person's images are not
  independent), or Wilson's interval when the group has a single identity;
- the ratio to the best group (the lowest rate among the groups whose sample suffices), with a
  bootstrap interval (each group resampled independently);
- **too small to conclude** when the group has fewer than ``min_identities`` identities or
  ``min_trials`` trials, or when fewer than ``min_expected_errors`` errors would be expected at
  the overall rate (then even a large difference could be chance). Such a group gets a rate and
  an interval, but no ratio and no verdict.

A ratio whose interval contains 1 is reported as "no clear difference in these data", which is
not the same as evidence of no difference.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .rates import pct, wilson_interval

MIN_IDENTITIES = 10
MIN_TRIALS = 30
MIN_EXPECTED_ERRORS = 5
BOOTSTRAP = 1000
ID_COLUMNS = ("identity", "subject", "subject_id", "name", "id")


class GroupsError(ValueError):
    """A groups CSV that cannot be read."""


def read_groups(path: str | Path) -> dict[str, str]:
    """``{identity: group}`` from a CSV with a header (``identity,group``)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise GroupsError(f"{path}: cannot read ({e})") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise GroupsError(f"{path}: empty")
    head = [h.strip().lower() for h in rows[0]]
    id_col = next((head.index(c) for c in ID_COLUMNS if c in head), None)
    if id_col is None or "group" not in head:
        raise GroupsError(f"{path}: the header needs an identity column ({'/'.join(ID_COLUMNS)}) and a group column")
    g_col = head.index("group")
    out: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) <= max(id_col, g_col):
            raise GroupsError(f"{path}:{line}: too few columns")
        ident, group = row[id_col].strip(), row[g_col].strip()
        if not ident or not group:
            raise GroupsError(f"{path}:{line}: empty identity or group")
        if ident in out and out[ident] != group:
            raise GroupsError(f"{path}:{line}: {ident} is assigned to two groups ({out[ident]}, {group})")
        out[ident] = group
    if not out:
        raise GroupsError(f"{path}: no identity assigned to a group")
    return out


@dataclass
class GroupRate:
    group: str
    metric: str
    identities: int
    trials: int
    errors: int
    rate: float | None
    ci95: tuple[float, float] | None
    sufficient: bool
    why_insufficient: str = ""
    ratio_to_best: float | None = None
    ratio_ci95: tuple[float, float] | None = None
    verdict: str = ""

    def to_json(self) -> dict:
        return {
            "group": self.group, "metric": self.metric, "identities": self.identities, "trials": self.trials,
            "errors": self.errors, "rate": self.rate, "ci95": None if self.ci95 is None else list(self.ci95),
            "sufficient": self.sufficient, "why_insufficient": self.why_insufficient,
            "ratio_to_best": self.ratio_to_best,
            "ratio_ci95": None if self.ratio_ci95 is None else list(self.ratio_ci95), "verdict": self.verdict,
        }


@dataclass
class Differentials:
    threshold: float
    rates: dict[str, list[GroupRate]]  # metric -> one per group
    best: dict[str, str | None]
    statements: list[str]
    unassigned: int = 0
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "threshold": self.threshold,
            "metrics": {m: [g.to_json() for g in gs] for m, gs in self.rates.items()},
            "best_group": self.best,
            "statements": self.statements,
            "identities_without_group": self.unassigned,
            "settings": self.settings,
        }


def _boot_rates(events: np.ndarray, trials: np.ndarray, rng, b: int) -> np.ndarray:
    """(b,) bootstrap rates resampling identities; nan where a replicate has no trial."""
    if events.size == 0:
        return np.full(b, np.nan)
    idx = rng.integers(0, events.size, size=(b, events.size))
    n = trials[idx].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, events[idx].sum(1) / np.where(n > 0, n, 1), np.nan)


def group_rates(
    groups: dict[str, str],
    counts: dict[str, dict[str, tuple[int, int]]],
    threshold: float,
    *,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
    min_identities: int = MIN_IDENTITIES,
    min_trials: int = MIN_TRIALS,
    min_expected_errors: float = MIN_EXPECTED_ERRORS,
) -> Differentials:
    """Per-group rates from ``counts[metric][identity] = (errors, trials)``."""
    rng = np.random.default_rng(seed)
    names = sorted(set(groups.values()))
    rates: dict[str, list[GroupRate]] = {}
    best: dict[str, str | None] = {}
    statements: list[str] = []
    seen_ids: set[str] = set()
    for metric, per_id in counts.items():
        seen_ids |= set(per_id)
        total_e = sum(e for e, _ in per_id.values())
        total_n = sum(n for _, n in per_id.values())
        overall = total_e / total_n if total_n else 0.0
        out: list[GroupRate] = []
        boots: dict[str, np.ndarray] = {}
        for g in names:
            ids = [i for i, gg in groups.items() if gg == g and i in per_id and per_id[i][1] > 0]
            ev = np.array([per_id[i][0] for i in ids], np.float64)
            tr = np.array([per_id[i][1] for i in ids], np.float64)
            e, n = int(ev.sum()), int(tr.sum())
            rate = e / n if n else None
            if len(ids) >= 2:
                br = _boot_rates(ev, tr, rng, bootstrap)
                boots[g] = br
                ci = (float(np.nanquantile(br, 0.025)), float(np.nanquantile(br, 0.975)))
            else:
                ci = wilson_interval(e, n) if n else None
            why = []
            if len(ids) < min_identities:
                why.append(f"{len(ids)} identities (at least {min_identities} needed)")
            if n < min_trials:
                why.append(f"{n} trials (at least {min_trials} needed)")
            if n * overall < min_expected_errors:
                why.append(f"about {n * overall:.1f} errors expected at the overall rate (at least "
                           f"{min_expected_errors:g} needed to tell a difference from chance)")
            out.append(GroupRate(g, metric, len(ids), n, e, rate, ci, not why, "; ".join(why)))
        ok = [r for r in out if r.sufficient and r.rate is not None]
        b = min(ok, key=lambda r: (r.rate, -r.trials)) if ok else None
        best[metric] = b.group if b else None
        for r in out:
            if not r.sufficient:
                r.verdict = "too small a sample to conclude anything"
                statements.append(
                    f"{metric.upper()} for group {r.group}: {r.errors} of {r.trials} ({pct(r.rate, 3)}) from "
                    f"{r.identities} identities - too small a sample to conclude anything ({r.why_insufficient})."
                )
                continue
            if b is None:
                continue
            if r is b:
                r.ratio_to_best, r.verdict = 1.0, "lowest rate (reference group)"
                statements.append(f"{metric.upper()} for group {r.group}: {pct(r.rate, 3)} (95% CI "
                                  f"{pct(r.ci95[0], 3)} to {pct(r.ci95[1], 3)}), the lowest; the other groups are "
                                  "compared with it.")
                continue
            if b.rate == 0:
                r.verdict = "the reference group has no error: no ratio can be given"
                statements.append(f"{metric.upper()} for group {r.group}: {pct(r.rate, 3)}; group {b.group} had no error "
                                  f"in {b.trials} trials, so no ratio can be given.")
                continue
            r.ratio_to_best = r.rate / b.rate
            if r.group in boots and b.group in boots:
                with np.errstate(invalid="ignore", divide="ignore"):
                    ratios = boots[r.group] / boots[b.group]
                ratios = ratios[np.isfinite(ratios)]
                if ratios.size >= bootstrap // 2:
                    r.ratio_ci95 = (float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975)))
            ci = r.ratio_ci95
            if ci is None:
                r.verdict = "ratio without an interval"
                statements.append(f"{metric.upper()} for group {r.group} is {r.ratio_to_best:.2f} times that of group "
                                  f"{b.group} (no reliable interval).")
            elif ci[0] > 1.0:
                r.verdict = "higher than the reference group"
                statements.append(f"{metric.upper()} for group {r.group} is {r.ratio_to_best:.2f} times that of group "
                                  f"{b.group} (95% CI {ci[0]:.2f} to {ci[1]:.2f}): a differential.")
            else:
                r.verdict = "no clear difference in these data"
                statements.append(f"{metric.upper()} for group {r.group} is {r.ratio_to_best:.2f} times that of group "
                                  f"{b.group} (95% CI {ci[0]:.2f} to {ci[1]:.2f}, which includes 1): no clear difference "
                                  "in these data - not proof that there is none.")
        rates[metric] = out
    unassigned = len(seen_ids - set(groups))
    if unassigned:
        statements.append(f"{unassigned} identities have no group in the CSV and were left out.")
    return Differentials(threshold, rates, best, statements, unassigned, {
        "bootstrap": bootstrap, "seed": seed, "min_identities": min_identities, "min_trials": min_trials,
        "min_expected_errors": min_expected_errors})


def counts_from_calibration(cal, threshold: float) -> dict[str, dict[str, tuple[int, int]]]:
    """Per-identity (errors, trials) for FNIR and FPIR at ``threshold`` from a ``Calibration``.

    FNIR: mated probes whose distance to their own reference is not below the threshold. FPIR:
    searches of an identity's images against the simulated galleries (it not being in them) whose
    nearest reference is below the threshold; without a simulation, the single-comparison false
    match rate per identity is given instead (metric ``fmr``).
    """
    cs, sc, sim = cal.data, cal.scores, cal.simulation
    names = cs.identities
    fnir: dict[str, tuple[int, int]] = {}
    miss = sc.mated >= threshold
    e = np.bincount(sc.mated_identity, weights=miss.astype(np.float64), minlength=len(names))
    n = np.bincount(sc.mated_identity, minlength=len(names))
    for i in np.flatnonzero(n):
        fnir[names[i]] = (int(e[i]), int(n[i]))
    out = {"fnir": fnir}
    if sim is not None:
        ident = cs.probe_identity[sim.probe]
        fp = sim.best < threshold
        e = np.bincount(ident, weights=fp.astype(np.float64), minlength=len(names))
        n = np.bincount(ident, minlength=len(names))
        out["fpir"] = {names[i]: (int(e[i]), int(n[i])) for i in np.flatnonzero(n)}
    else:
        fm: dict[str, tuple[int, int]] = {}
        below = sc.d < threshold
        for i in range(len(names)):
            cols = cs.probe_identity == i
            other = cs.ref_identity != i
            fm[names[i]] = (int(below[np.ix_(other, cols)].sum()), int(other.sum() * cols.sum()))
        out["fmr"] = fm
    return out


def plot_differentials(d: Differentials, out: Path | None = None) -> bytes:
    from .charts import bars_with_ci, figure_png, pyplot

    plt = pyplot()
    metrics = list(d.rates)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), dpi=110, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        rs = d.rates[m]
        labels = [r.group + ("" if r.sufficient else "*") for r in rs]
        bars_with_ci(ax, labels, [r.rate for r in rs], [r.ci95 for r in rs], colour="C3" if m != "fnir" else "C0",
                     ylabel=m.upper(), title=f"{m.upper()} by group at threshold {d.threshold:.3f}")
    fig.text(0.01, 0.01, "* too small a sample to conclude anything; whiskers: 95% bootstrap intervals", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return figure_png(fig, plt, out)


def describe(d: Differentials) -> list[str]:
    lines = [f"demographic differentials at threshold {d.threshold:.4f}:"]
    for m, rs in d.rates.items():
        for r in rs:
            ci = f" (95% CI {pct(r.ci95[0], 3)} to {pct(r.ci95[1], 3)})" if r.ci95 else ""
            ratio = f"; x{r.ratio_to_best:.2f} the best" if r.ratio_to_best is not None else ""
            lines.append(f"  {m.upper()} {r.group}: {r.errors}/{r.trials} = {pct(r.rate, 3)}{ci}, "
                         f"{r.identities} identities{ratio}{'' if r.sufficient else ' [too small to conclude]'}")
    lines += [f"  {s}" for s in d.statements]
    return lines
