"""Charts for reports: matplotlib on the Agg backend, returned as PNG bytes (no display needed)."""

from __future__ import annotations

import base64
import io
from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig, plt, out: Path | None = None) -> bytes:
    """The figure as PNG bytes (written to ``out`` too when given); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(data)
    return data


def figure_bytes(fig, plt, fmt: str = "png") -> bytes:
    """The figure as PNG or SVG bytes; the figure is closed."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"chart format {fmt!r}: png or svg")
    buf = io.BytesIO()
    if fmt == "svg":
        import matplotlib

        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "openlfr"}):
            fig.savefig(buf, format="svg")
    else:
        fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def bars_with_ci(ax, labels, values, cis=None, colour="C0", ylabel="", title="", note_none="no data"):
    """Bars with 95% interval whiskers; None values are drawn as a labelled gap."""
    import numpy as np

    x = np.arange(len(labels))
    vals = [0.0 if v is None else float(v) for v in values]
    ax.bar(x, vals, color=colour, alpha=0.8)
    if cis is not None:
        for i, (v, ci) in enumerate(zip(values, cis)):
            if v is None or ci is None:
                continue
            ax.errorbar([i], [v], yerr=[[max(v - ci[0], 0)], [max(ci[1] - v, 0)]], color="k", capsize=4, lw=1)
    for i, v in enumerate(values):
        if v is None:
            ax.annotate(note_none, (i, 0), ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8, rotation=0 if len(labels) < 6 else 30)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
