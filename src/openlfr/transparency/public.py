"""The public transparency records of published deployments (``/public``, ``.json``, ``.csv``).

For each ended deployment an administrator published (``governance.publication``): when and where
it ran, why, the authorising officer's rank, the watchlist's size, faces seen, alerts, true and
false alerts, engagements and outcomes, and the two rates with their 95% intervals. Built from
the deployment report (``report.collect``) through ``PUBLIC_FIELDS`` only: never a name (of a
subject, a user or anyone else), an image or a template.
"""

from __future__ import annotations

from ..governance.publication import published
from ..governance.roles import AUDITOR, Actor
from .figures import alert_precision, false_alert_rate

PUBLIC_FIELDS = ("deployment", "date", "started_at", "ended_at", "location", "zone", "use_case", "authorising_rank",
                 "watchlist_size", "faces_seen", "alerts", "true_alerts", "false_alerts", "unadjudicated",
                 "engagements_confirmed", "engagements_unconfirmed", "outcome_arrest", "outcome_other_action",
                 "outcome_no_further_action", "outcome_no_engagement", "false_alert_rate", "false_alert_rate_ci95_low",
                 "false_alert_rate_ci95_high", "false_alert_rate_note", "alert_precision", "alert_precision_ci95_low",
                 "alert_precision_ci95_high", "alert_precision_note", "published_at")
# Reports are read by the system with the auditor's (read-only) rights; reads are not audited.
READER = Actor(name="system:transparency", roles=frozenset({AUDITOR}))


def record(gov, deployment_id: int, pub: dict) -> dict:
    """One deployment's public record (see the module docstring)."""
    from .report import collect

    r = collect(gov, READER, deployment_id).data
    dep, al, fig = r["deployment"], r["alerts"], r["figures"]
    op, table = al["operational"], al["table"]
    far = false_alert_rate(fig["false_alerts"], fig["faces_seen"])
    prec = alert_precision(fig["true_alerts"], fig["true_alerts"] + fig["operational_false_alerts"])
    started = dep.get("started_at") or dep.get("starts_at")
    rec = {
        "deployment": dep["id"], "date": (started or "")[:10], "started_at": dep.get("started_at"), "ended_at": dep.get("ended_at"),
        "location": dep["location"], "zone": dep["zone"], "use_case": dep["use_case"],
        "authorising_rank": pub["authorising_rank"], "watchlist_size": r["watchlist"]["operational_subjects"],
        "faces_seen": fig["faces_seen"], "alerts": op["total"], "true_alerts": op["true_alerts"],
        "false_alerts": fig["false_alerts"], "unadjudicated": op["unadjudicated"],
        "engagements_confirmed": sum(row["confirmed"] for row in table.values()),
        "engagements_unconfirmed": sum(row["unconfirmed"] for row in table.values()),
        **{f"outcome_{k}": v for k, v in r["outcomes"].items()},
        "false_alert_rate": far["value"], "false_alert_rate_ci95_low": far["ci95"][0] if far["ci95"] else None,
        "false_alert_rate_ci95_high": far["ci95"][1] if far["ci95"] else None, "false_alert_rate_note": far["text"],
        "alert_precision": prec["value"], "alert_precision_ci95_low": prec["ci95"][0] if prec["ci95"] else None,
        "alert_precision_ci95_high": prec["ci95"][1] if prec["ci95"] else None, "alert_precision_note": prec["text"],
        "published_at": pub["published_at"],
    }
    return {k: rec.get(k) for k in PUBLIC_FIELDS}


def public_records(gov) -> list[dict]:
    """The records of every published deployment that has ended, newest first."""
    pubs = published(gov)
    ended = [d["id"] for d in gov.list_deployments(READER) if d["id"] in pubs and d["status"] == "ended"]
    return [record(gov, i, pubs[i]) for i in sorted(ended, reverse=True)]
