"""A deployment's dashboard figures and the sentence that explains them, for the API (the
deployment view and its report) and the console (the deployment page) alike."""

from __future__ import annotations

from datetime import datetime


def figures(gov, d: dict) -> dict:
    """The dashboard's figures of a deployment view (``Governance.get_deployment``)."""
    now = gov.now()
    ends = datetime.fromisoformat(d["ends_at"])
    starts = datetime.fromisoformat(d["starts_at"])
    a = d.get("alerts") or {}
    adjudicated = (a.get("true_alerts") or 0) + (a.get("false_alerts") or 0)
    left = (ends - now).total_seconds() if d["status"] in ("planned", "authorised", "active") else 0.0
    return {
        "status": d["status"],
        "seconds_left": max(0.0, left),
        "seconds_to_start": max(0.0, (starts - now).total_seconds()) if d["status"] in ("planned", "authorised") else 0.0,
        "faces_seen": (d.get("faces_seen") or {}).get("total", 0),
        "alerts": a.get("total", 0),
        "adjudicated": adjudicated,
        "unadjudicated": a.get("unadjudicated", 0),
        "true_alerts": a.get("true_alerts", 0),
        "false_alerts": a.get("false_alerts", 0),
        "false_alert_rate": d.get("false_alert_rate"),
        "alert_precision": d.get("alert_precision"),
    }


def explain(f: dict) -> str:
    from ..transparency.figures import alert_precision, false_alert_rate

    parts = [f"False alert rate = false alerts / faces seen: {false_alert_rate(f['false_alerts'], f['faces_seen'])['text']}.",
             f"Alert precision = true alerts / adjudicated alerts: {alert_precision(f['true_alerts'], f['adjudicated'])['text']}."]
    parts.append("The two differ because almost everyone who passes is not on the watchlist: a tiny false alert "
                 "rate per face can still mean that most alerts are false when watchlisted people are rare.")
    return " ".join(parts)
