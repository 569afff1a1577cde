"""ROC and DET plots to image files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from . import metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def roc_plot(roc: metrics.Roc, out: Path, title: str, marks: dict[str, tuple[float, float]] | None = None) -> Path:
    """TAR against FAR (log FAR axis); ``marks``: label -> (far, tar) points to annotate."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    floor = 1e-4
    ax.step(np.maximum(roc.far, floor), roc.tar, where="post", lw=1.5, color="C0")
    for label, (x, y) in (marks or {}).items():
        ax.plot([max(x, floor)], [y], "o", color="C3")
        ax.annotate(label, (max(x, floor), y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(max(0.0, float(roc.tar[np.searchsorted(roc.far, floor)]) - 0.05), 1.001)
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, plt, out)


def det_plot(det: metrics.Det, out: Path, title: str, points: list[metrics.OperatingPoint] | None = None) -> Path:
    """FNIR against FPIR, both log axes; ``points``: operating points to annotate."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    floor = 1e-4
    ok = det.fpir > 0
    ax.step(det.fpir[ok], np.maximum(det.fnir[ok], floor), where="post", lw=1.5, color="C0")
    for p in points or []:
        ax.plot([max(p.fpir, floor)], [max(p.fnir, floor)], "o", color="C3")
        ax.annotate(
            f"FPIR {p.target_fpir:g}: FNIR {p.fnir:.3f}",
            (max(p.fpir, floor), max(p.fnir, floor)),
            textcoords="offset points",
            xytext=(-4, -14),
            ha="right",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    low = float(np.min(det.fnir[ok])) if ok.any() else floor
    ax.set_ylim(max(floor, low / 3), 1.1)
    ax.set_xlabel("FPIR (false positive identification rate)")
    ax.set_ylabel("FNIR (false negative identification rate)")
    ax.set_title(_wrap(title), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, plt, out)


def _wrap(title: str, width: int = 80) -> str:
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def _save(fig, plt, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
