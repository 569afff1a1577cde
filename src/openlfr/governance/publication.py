"""Public transparency records: what the public may read about each ended deployment.

Police forces that use live facial recognition publish, for each deployment, when and where it
ran, why, the rank of the officer who authorised it, the watchlist's size, how many faces were
seen, the alerts and what came of them. An administrator chooses which ended deployments are
published (``publish`` / ``unpublish``, both audited, with the authorising officer's rank:
openlfr keeps users' names, never their ranks); ``public_records`` builds the records for the
public pages (``/public``, ``/public/deployments.json`` and ``.csv``), which need no login.

A record never holds a name (of a subject, a user or anyone else), an image or a template: it is
built from counts, times and the deployment's own description, through ``PUBLIC_FIELDS``.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select

from ..store.models import Deployment, Publication, User
from ..store.types import utc
from .errors import GovernanceError, NotFound
from .roles import AUDITOR, Actor

RANK = re.compile(r"^[A-Za-z][A-Za-z .'-]{1,59}$")
PUBLIC_FIELDS = ("deployment", "date", "started_at", "ended_at", "location", "zone", "use_case", "authorising_rank",
                 "watchlist_size", "faces_seen", "alerts", "true_alerts", "false_alerts", "unadjudicated",
                 "engagements_confirmed", "engagements_unconfirmed", "outcome_arrest", "outcome_other_action",
                 "outcome_no_further_action", "outcome_no_engagement", "false_alert_rate", "false_alert_rate_ci95_low",
                 "false_alert_rate_ci95_high", "false_alert_rate_note", "alert_precision", "alert_precision_ci95_low",
                 "alert_precision_ci95_high", "alert_precision_note", "published_at")
# The report is read by the system with the auditor's (read-only) rights; reads are not audited.
READER = Actor(name="system:transparency", roles=frozenset({AUDITOR}))


def publish(gov, actor: Actor, deployment_id: int, authorising_rank: str) -> Publication:
    """Publish an ended deployment's record (``deployment.publish``, administrators; audited)."""
    rank = " ".join(str(authorising_rank or "").split())
    if not RANK.match(rank):
        raise GovernanceError("give the authorising officer's rank (2-60 letters, e.g. Superintendent), not a name")
    with gov._tx(actor, "deployment.publish") as s:
        d = s.get(Deployment, int(deployment_id))
        if d is None:
            raise NotFound(f"no deployment {deployment_id}")
        if d.status != "ended":
            raise GovernanceError(f"deployment {d.id} is {d.status}: only an ended deployment is published")
        names = {n.lower() for n in s.execute(select(User.name)).scalars()}
        if rank.lower() in names or any(w.lower() in names for w in rank.split() if len(w) > 2):
            raise GovernanceError("the rank looks like a user's name: give a rank (e.g. Superintendent)")
        row = s.get(Publication, d.id)
        if row is None:
            row = Publication(deployment_id=d.id, published_at=gov.now(), published_by_id=actor.user_id, authorising_rank=rank)
            s.add(row)
        else:
            row.authorising_rank, row.published_at, row.published_by_id = rank, gov.now(), actor.user_id
        s.flush()
        gov._audit(s, actor, "deployment.publish", f"deployment:{d.id}", {"authorising_rank": rank})
        return row


def unpublish(gov, actor: Actor, deployment_id: int) -> bool:
    """Withdraw a deployment's public record (audited); False when it was not published."""
    with gov._tx(actor, "deployment.publish") as s:
        if s.get(Deployment, int(deployment_id)) is None:
            raise NotFound(f"no deployment {deployment_id}")
        n = s.execute(delete(Publication).where(Publication.deployment_id == int(deployment_id))).rowcount or 0
        if n:
            gov._audit(s, actor, "deployment.unpublish", f"deployment:{int(deployment_id)}", {})
        return bool(n)


def published(gov) -> dict[int, dict]:
    """{deployment id: {"published_at", "authorising_rank"}} of the published deployments."""
    with gov.db.transaction() as s:
        return {p.deployment_id: {"published_at": utc(p.published_at).isoformat(), "authorising_rank": p.authorising_rank}
                for p in s.execute(select(Publication).order_by(Publication.deployment_id)).scalars()}


def record(gov, deployment_id: int, pub: dict) -> dict:
    """One deployment's public record (see the module docstring)."""
    from ..transparency.figures import alert_precision, false_alert_rate
    from ..transparency.report import collect

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
    with gov.db.transaction() as s:
        ended = {d.id for d in s.execute(select(Deployment).where(Deployment.id.in_(list(pubs)), Deployment.status == "ended")).scalars()}
    return [record(gov, i, pubs[i]) for i in sorted(ended, reverse=True)]
