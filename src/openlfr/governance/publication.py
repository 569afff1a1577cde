"""Public transparency records: what the public may read about each ended deployment.

Police forces that use live facial recognition publish, for each deployment, when and where it
ran, why, the rank of the officer who authorised it, the watchlist's size, how many faces were
seen, the alerts and what came of them. An administrator chooses which ended deployments are
published (``publish`` / ``unpublish``, both audited, with the authorising officer's rank:
openlfr keeps users' names, never their ranks); ``transparency.public.public_records`` builds
the records for the public pages (``/public``, ``/public/deployments.json`` and ``.csv``), which need no login.

A record never holds a name (of a subject, a user or anyone else), an image or a template: it is
built from counts, times and the deployment's own description (``openlfr.transparency.public``).
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select

from ..store.models import Deployment, Publication, User
from ..store.types import utc
from .errors import GovernanceError, NotFound
from .roles import Actor

RANK = re.compile(r"^[A-Za-z][A-Za-z .'-]{1,59}$")


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


def records_version(gov) -> int:
    """The audit head's seq: every change a report or a public record could show moves it (a cache key)."""
    from ..store.models import AuditHead

    with gov.db.transaction() as s:
        h = s.get(AuditHead, 1)
        return int(h.seq) if h else 0
