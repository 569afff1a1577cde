"""The published figures of a deployment, the base-rate arithmetic behind them, and its explanation.

Two figures describe a deployment's false alerts, and they answer different questions:

- **false alert rate** = false alerts / faces seen: how often a passer-by is wrongly flagged
  (the Met's published figure). It is governed by the FPIR, the chance that a face that is not on
  the watchlist alerts.
- **alert precision** = true alerts / alerts: how often an alert is right (the 2019 independent
  review's figure: 8 of 42). It depends on the FPIR *and* on how rare watchlisted people are
  among the passers-by (the base rate).

With K watchlisted passers among F faces, a true positive identification rate TPIR and a false
positive identification rate FPIR, one expects ``K * TPIR`` true alerts and ``(F - K) * FPIR``
false alerts. When K is tiny compared with F, even a small FPIR gives many more false alerts
than true ones: the false alert rate is small while the alert precision is low. Everything
here is pure arithmetic (no numpy needed), so that every figure can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def ratio(num: float, den: float) -> float | None:
    """``num / den``, or None when ``den`` is 0 (no figure rather than a made-up one)."""
    return None if not den else num / den


def false_alert_rate(false_alerts: int, faces_seen: int) -> float | None:
    """False alerts / faces seen (None when no face was seen)."""
    return ratio(false_alerts, faces_seen)


def alert_precision(true_alerts: int, false_alerts: int) -> float | None:
    """True alerts / adjudicated alerts (None when no alert was adjudicated)."""
    return ratio(true_alerts, true_alerts + false_alerts)


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion ``k / n`` (95% by default); None when ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and is usable at 0 or ``n`` events
    (e.g. 0 of 300 gives an upper bound near 3/300, the "rule of three").
    """
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k must be within 0..n, got {k} of {n}")
    p = k / n
    z2 = z * z
    den = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / den
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    if k == 0:
        lo = 0.0
    if k == n:
        hi = 1.0
    return lo, hi


@dataclass(frozen=True)
class BaseRates:
    """Expected alerts for ``faces`` faces of which ``watchlisted_passers`` are watchlisted."""

    faces: int
    watchlisted_passers: float
    tpir: float
    fpir: float
    expected_true_alerts: float
    expected_false_alerts: float
    alert_precision: float | None  # expected true / expected alerts
    false_alert_rate: float | None  # expected false / faces

    def to_json(self) -> dict:
        return asdict(self)


def expected_alerts(faces: int, watchlisted_passers: float, tpir: float, fpir: float) -> BaseRates:
    """Expected true and false alerts, the alert precision and the false alert rate.

    true = K * TPIR; false = (F - K) * FPIR (the K watchlisted passers are not strangers);
    precision = true / (true + false); false alert rate = false / F.
    """
    if faces < 0 or watchlisted_passers < 0:
        raise ValueError("faces and watchlisted passers cannot be negative")
    if watchlisted_passers > faces:
        raise ValueError("there cannot be more watchlisted passers than faces")
    for name, v in (("tpir", tpir), ("fpir", fpir)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} is a rate between 0 and 1, got {v}")
    true = watchlisted_passers * tpir
    false = (faces - watchlisted_passers) * fpir
    return BaseRates(
        faces=faces,
        watchlisted_passers=watchlisted_passers,
        tpir=tpir,
        fpir=fpir,
        expected_true_alerts=true,
        expected_false_alerts=false,
        alert_precision=ratio(true, true + false),
        false_alert_rate=ratio(false, faces),
    )


# --------------------------------------------------------------------------- wording


def pct(x: float | None, digits: int = 2) -> str:
    """A rate as a percentage with ``digits`` significant figures (``-`` for None)."""
    if x is None:
        return "-"
    if x == 0:
        return "0%"
    text = f"{x * 100:#.{digits}g}"
    if "e" in text:
        text = f"{x * 100:.{digits}g}"
    return text.rstrip(".") + "%"


def num(x: float, digits: int = 1) -> str:
    """A count: whole numbers as such, others rounded (``6.99`` -> ``7.0``; ``99.99`` -> ``100``)."""
    if abs(x - round(x)) < 1e-9:
        return f"{round(x):,}"
    if abs(x) >= 20:
        return f"{round(x):,}"
    return f"{x:,.{digits}f}"


def one_in(x: float | None) -> str:
    """``0.001`` -> ``1 in 1,000``."""
    if not x:
        return "none"
    n = 1 / x
    if n < 10:
        return f"1 in {n:.1f}"
    return f"1 in {round(n):,}"


def explain(r: BaseRates) -> str:
    """A plain-language explanation of why the false alert rate and the alert precision differ."""
    lines = [
        f"Of {num(r.faces)} faces passing the cameras, {num(r.watchlisted_passers)} belong to people on the "
        f"watchlist and {num(r.faces - r.watchlisted_passers)} do not.",
        f"The system recognises a watchlisted person with probability {pct(r.tpir)} (TPIR), so about "
        f"{num(r.expected_true_alerts)} true alerts are expected.",
        f"It wrongly flags a face that is not on the watchlist with probability {pct(r.fpir, 3)} (FPIR, "
        f"{one_in(r.fpir)}), so about {num(r.expected_false_alerts)} false alerts are expected.",
    ]
    total = r.expected_true_alerts + r.expected_false_alerts
    if total == 0:
        lines.append("No alert is expected at all, so there is no alert precision to speak of.")
        return "\n".join(lines)
    lines.append(
        f"False alert rate (false alerts / faces seen): {pct(r.false_alert_rate, 3)} - "
        f"{one_in(r.false_alert_rate)} faces seen leads to a false alert."
    )
    lines.append(
        f"Alert precision (true alerts / alerts): {pct(r.alert_precision, 3)} - of about {num(total)} alerts, "
        f"{num(r.expected_true_alerts)} would be right and {num(r.expected_false_alerts)} wrong."
    )
    prec = r.alert_precision or 0.0
    if r.false_alert_rate is not None and prec < 0.5 and r.false_alert_rate < 0.01:
        lines.append(
            "Both figures are true at once. The false alert rate is small because nearly every face is compared "
            "and almost all of them are correctly ignored. The precision is low because watchlisted people are "
            f"rare ({one_in(r.watchlisted_passers / r.faces) if r.faces else 'none'} faces): the few false alerts "
            "among the very many strangers outnumber the true alerts among the very few watchlisted people. "
            "A low false alert rate therefore does not mean that an alert is probably right."
        )
    elif prec >= 0.5:
        lines.append(
            "Here more alerts are right than wrong: watchlisted people are common enough among the passers-by, "
            "or the FPIR small enough, for true alerts to outnumber false ones."
        )
    else:
        lines.append(
            "The false alert rate counts false alerts against everyone who passed; the precision counts them "
            "against the alerts only. They differ because most passers are not on the watchlist."
        )
    return "\n".join(lines)


def explain_observed(faces_seen: int, true_alerts: int, false_alerts: int, other_false_alerts: int = 0) -> str:
    """The same explanation for a deployment's observed (adjudicated) figures.

    ``other_false_alerts``: false alerts that count in the false alert rate but not in the
    precision (false alerts against volunteers of a test deployment).
    """
    all_false = false_alerts + other_false_alerts
    far, prec = false_alert_rate(all_false, faces_seen), alert_precision(true_alerts, false_alerts)
    if not faces_seen:
        return "No face was counted, so no false alert rate can be given."
    lines = [
        f"{num(faces_seen)} faces were seen; {true_alerts} alert(s) were adjudicated true and {false_alerts} false"
        + (f" (and {other_false_alerts} false against volunteers' images)." if other_false_alerts else "."),
        f"False alert rate (false alerts / faces seen): {pct(far, 3)}"
        + (f" ({one_in(far)} faces seen)." if far else "."),
    ]
    if prec is None:
        lines.append("No alert was adjudicated, so there is no alert precision.")
    else:
        lines.append(f"Alert precision (true alerts / adjudicated alerts): {pct(prec, 3)} ({true_alerts} of "
                     f"{true_alerts + false_alerts}).")
        if far is not None and prec < 0.5:
            lines.append(
                "The false alert rate is small because it is spread over every face that passed; the precision "
                "is lower because people on the watchlist are rare among passers-by, so even a few false alerts "
                "weigh heavily against the true ones. Both figures are needed to judge the deployment."
            )
    return "\n".join(lines)
