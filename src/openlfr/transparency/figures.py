"""Rates as sentences that carry their uncertainty, and refuse to be precise about too little.

A false alert rate from 40 faces printed as "0.0000%" reads as a measurement; it is not one.
Everywhere a figure is shown (console, API explanation, public records) it goes through here:
the point estimate with its 95% Wilson interval, or, below ``MIN_FACES`` faces seen, a plain
statement that there were too few faces for a rate (with the interval, which says how little
is known).
"""

from __future__ import annotations

from .rates import num, pct, wilson_interval

MIN_FACES = 1000  # below this many faces seen, a false alert rate is not stated as a figure
MIN_ADJUDICATED = 10  # below this many adjudicated alerts, the precision is flagged as rough


def interval(k: int, n: int) -> list[float] | None:
    w = wilson_interval(int(k), int(n)) if n else None
    return None if w is None else [w[0], w[1]]


def false_alert_rate(false_alerts: int, faces: int) -> dict:
    """The Met's figure: false alerts per face seen, with its interval and whether it is enough."""
    ci = interval(false_alerts, faces) if faces >= false_alerts else None
    enough = faces >= MIN_FACES
    rate = false_alerts / faces if faces else None
    if not faces:
        text = "no faces seen yet"
    elif not enough:
        text = (f"too few faces seen for a rate ({num(faces)}; at least {num(MIN_FACES)} are needed): "
                f"{false_alerts} false alert(s)" + (f", 95% CI up to {pct(ci[1], 3)}" if ci else ""))
    else:
        text = f"{pct(rate, 3)} = {false_alerts} / {num(faces)}" + (f" (95% CI {pct(ci[0], 3)} to {pct(ci[1], 3)})" if ci else "")
    return {"value": rate if enough else None, "ci95": ci, "enough": enough, "k": false_alerts, "n": faces, "text": text}


def alert_precision(true_alerts: int, adjudicated: int) -> dict:
    """The independent review's figure: true alerts per adjudicated alert, with its interval."""
    ci = interval(true_alerts, adjudicated)
    value = true_alerts / adjudicated if adjudicated else None
    if not adjudicated:
        text = "no adjudicated alert yet"
    else:
        text = f"{pct(value, 3)} = {true_alerts} / {adjudicated}" + (f" (95% CI {pct(ci[0], 3)} to {pct(ci[1], 3)})" if ci else "")
        if adjudicated < MIN_ADJUDICATED:
            text += f"; only {adjudicated} adjudicated alert(s): a rough figure"
    return {"value": value, "ci95": ci, "enough": adjudicated >= MIN_ADJUDICATED, "k": true_alerts, "n": adjudicated,
            "text": text}
