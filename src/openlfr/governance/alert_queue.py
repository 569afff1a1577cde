"""The alert queue as the console pages it: filtered by deployment, camera, status and subject.

A control room with thousands of alerts needs to find the ones awaiting review on one camera,
or every alert for one subject, without the page growing without end. ``queue`` filters and
pages in the database (one query for the page, one for the count) and returns the same rows as
``Governance.list_alerts`` (no crop, no template).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from ..store.models import Adjudication, AlertRow, Engagement, SubjectRow
from ..store.types import utc
from .common import alert_decision
from .errors import GovernanceError
from .roles import Actor

STATUSES = ("pending", "true_alert", "false_alert")
PER_PAGE = 50
MAX_PER_PAGE = 200


@dataclass
class QueuePage:
    alerts: list[dict]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def queue(gov, actor: Actor, *, deployment: int | None = None, camera: str | None = None, status: str | None = None,
          subject: str | None = None, page: int = 1, per_page: int = PER_PAGE) -> QueuePage:
    """One page of alerts, newest first (``alert.read``). ``subject``: a subject id, or part of a
    subject's name or reference (case-insensitive)."""
    if status is not None and status not in STATUSES:
        raise GovernanceError(f"status is one of {', '.join(STATUSES)}")
    page, per_page = max(1, int(page)), min(max(1, int(per_page)), MAX_PER_PAGE)
    with gov._tx(actor, "alert.read") as s:
        last = (select(Adjudication.alert_id, func.max(Adjudication.id).label("adj_id"))
                .group_by(Adjudication.alert_id).subquery())
        q = (select(AlertRow, SubjectRow, Adjudication.decision)
             .join(SubjectRow, SubjectRow.id == AlertRow.subject_id, isouter=True)
             .join(last, last.c.alert_id == AlertRow.id, isouter=True)
             .join(Adjudication, Adjudication.id == last.c.adj_id, isouter=True))
        conds = []
        if deployment is not None:
            conds.append(AlertRow.deployment_id == int(deployment))
        if camera:
            conds.append(AlertRow.camera == camera)
        if status == "pending":
            conds.append(Adjudication.decision.is_(None))
        elif status:
            conds.append(Adjudication.decision == status)
        if subject:
            text = subject.strip()
            like = f"%{text.lower()}%"
            match = [func.lower(SubjectRow.name).like(like), func.lower(SubjectRow.ref).like(like)]
            if text.isdigit() and len(text) < 10:
                match.append(AlertRow.subject_id == int(text))
            conds.append(or_(*match))
        q = q.where(*conds)
        total = s.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        rows = s.execute(q.order_by(AlertRow.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
        out = []
        for a, subj, decision in rows:
            eng = s.execute(select(Engagement).where(Engagement.alert_id == a.id).order_by(Engagement.id.desc()).limit(1)).scalar_one_or_none()
            out.append({
                "id": a.id, "deployment_id": a.deployment_id, "camera": a.camera, "track": a.track,
                "subject_id": a.subject_id, "subject_name": subj.name if subj else None, "category": subj.category if subj else None,
                "distance": a.distance, "distances": json.loads(a.distances), "frame": a.frame, "media_time": a.media_time,
                "occurred_at": utc(a.occurred_at).isoformat(), "recorded_at": utc(a.recorded_at).isoformat(), "updates": a.updates,
                "adjudication": decision, "engagement": (eng.result, eng.outcome) if eng else None,
                **alert_decision(a),
            })
        return QueuePage(out, int(total), page, per_page)


def cameras_with_alerts(gov, actor: Actor, deployment: int | None = None) -> list[str]:
    """The camera names that have alerts (for the filter's choices)."""
    with gov._tx(actor, "alert.read") as s:
        q = select(AlertRow.camera).distinct().order_by(AlertRow.camera)
        if deployment is not None:
            q = q.where(AlertRow.deployment_id == int(deployment))
        return list(s.execute(q).scalars())
