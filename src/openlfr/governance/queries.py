"""Read-only views the API and console need beyond the service methods (alert detail, images,
audit pages, the change feed).

Each public function first asks governance (``Governance.authorize``) whether the actor holds
the permission (a refusal is audited there), then reads. Nothing here writes.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, select

from ..store import repository as repo
from ..store.models import (
    Adjudication,
    AlertRow,
    AuditEvent,
    AuditHead,
    Deployment,
    Engagement,
    ReferenceImage,
    SubjectRow,
    Template,
)
from ..store.types import utc
from .common import alert_decision
from .errors import NotFound
from .roles import Actor


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat()


def probe_sharpness(jpeg: bytes) -> float | None:
    """The probe crop's sharpness in [0, 1] (the engine's measure: v / (v + 100), v the Laplacian variance)."""
    try:
        import cv2
        import numpy as np

        from ..engine.quality import sharpness_of

        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            return None
        v = sharpness_of(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return round(v / (v + 100.0), 4)
    except Exception:  # noqa: BLE001 - a quality figure must never break the page
        return None


def alert_detail(gov, actor: Actor, alert_id: int) -> dict:
    """One alert with its subject, deployment, reference images, decisions and outcomes (no crop)."""
    gov.authorize(actor, "alert.read")
    with gov.db.transaction() as s:
        a = s.get(AlertRow, int(alert_id))
        if a is None:
            raise NotFound(f"no alert {alert_id}")
        subj = s.get(SubjectRow, a.subject_id)
        d = s.get(Deployment, a.deployment_id)
        images = s.execute(select(ReferenceImage.id, ReferenceImage.source, ReferenceImage.taken_at)
                           .where(ReferenceImage.subject_id == a.subject_id).order_by(ReferenceImage.id)).all()
        quality = s.execute(select(func.max(Template.quality)).where(Template.subject_id == a.subject_id)).scalar_one_or_none()
        adjs = s.execute(select(Adjudication).where(Adjudication.alert_id == a.id).order_by(Adjudication.id)).scalars().all()
        engs = s.execute(select(Engagement).where(Engagement.alert_id == a.id).order_by(Engagement.id)).scalars().all()
        crop = a.probe_crop
        out = {
            "id": a.id, "deployment_id": a.deployment_id, "deployment_name": d.name if d else None,
            "deployment_status": d.status if d else None, "deployment_threshold": d.threshold if d else None,
            "camera": a.camera, "track": a.track, "subject_id": a.subject_id,
            "subject_name": subj.name if subj else None, "subject_ref": subj.ref if subj else None,
            "category": subj.category if subj else None, "reason": subj.reason if subj else None,
            "distance": a.distance, "distances": json.loads(a.distances or "[]"), "frame": a.frame, "media_time": a.media_time,
            "occurred_at": _iso(a.occurred_at), "recorded_at": _iso(a.recorded_at), "updated_at": _iso(a.updated_at),
            "updates": a.updates,
            "reference_images": [{"id": i, "source": src, "taken_at": _iso(t)} for i, src, t in images],
            "reference_quality": None if quality is None else round(float(quality), 4),
            "adjudications": [{"decision": j.decision, "by": repo.user_name(s, j.user_id), "at": _iso(j.decided_at), "note": j.note,
                               "reason": j.reason} for j in adjs],
            "sighting": a.sighting,
            **alert_decision(a),  # its own threshold (each face has its own), score, band, second model
            "engagements": [{"result": e.result, "outcome": e.outcome, "by": repo.user_name(s, e.user_id),
                             "at": _iso(e.recorded_at), "note": e.note} for e in engs],
        }
    out["adjudication"] = out["adjudications"][-1]["decision"] if out["adjudications"] else None
    last = out["engagements"][-1] if out["engagements"] else None
    out["engagement"] = [last["result"], last["outcome"]] if last else None
    out["probe_sharpness"] = probe_sharpness(crop)
    return out


def alert_reference(gov, actor: Actor, alert_id: int) -> tuple[bytes, str]:
    """The first reference image of the alert's subject (bytes, media type), for the operator."""
    gov.authorize(actor, "alert.read")
    with gov.db.transaction() as s:
        a = s.get(AlertRow, int(alert_id))
        if a is None:
            raise NotFound(f"no alert {alert_id}")
        im = s.execute(select(ReferenceImage).where(ReferenceImage.subject_id == a.subject_id)
                       .order_by(ReferenceImage.id).limit(1)).scalar_one_or_none()
        if im is None:
            raise NotFound(f"alert {alert_id}'s subject has no reference image")
        return im.data, im.media_type or "application/octet-stream"


def reference_image(gov, actor: Actor, image_id: int) -> tuple[bytes, str]:
    gov.authorize(actor, "watchlist.read")
    with gov.db.transaction() as s:
        im = s.get(ReferenceImage, int(image_id))
        if im is None:
            raise NotFound(f"no reference image {image_id}")
        return im.data, im.media_type or "application/octet-stream"


def audit_page(gov, actor: Actor, before: int | None = None, limit: int = 100, action: str | None = None,
               actor_name: str | None = None) -> dict:
    """Audit entries, newest first: ``before`` a seq (exclusive), optionally one action (prefix) or actor."""
    gov.authorize(actor, "audit.read")
    with gov.db.transaction() as s:
        q = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(int(limit))
        if before is not None:
            q = q.where(AuditEvent.seq < int(before))
        if action:
            q = q.where(AuditEvent.action.startswith(action, autoescape=True))
        if actor_name:
            q = q.where(AuditEvent.actor == actor_name)
        rows = s.execute(q).scalars().all()
        head = s.get(AuditHead, 1)
        return {
            "head": {"seq": head.seq, "hash": head.hash} if head else None,
            "entries": [{"seq": e.seq, "time": _iso(e.time), "actor": e.actor, "action": e.action, "target": e.target,
                         "details": json.loads(e.details or "{}"), "hash": e.hash} for e in rows],
            "next_before": rows[-1].seq if len(rows) == int(limit) and rows else None,
        }


# -- change feed for the live stream (internal: which records changed, never their content) ------

STREAM_ACTIONS = ("alert.create", "alert.update", "alert.adjudicate", "alert.outcome", "subject.erase", "purge")


def head_seq(gov) -> int:
    with gov.db.transaction() as s:
        h = s.get(AuditHead, 1)
        return int(h.seq) if h else 0


def changes_since(gov, seq: int, limit: int = 200) -> tuple[list[tuple[int, str, str]], int]:
    """(seq, action, target) of audit entries after ``seq`` that change what the console shows, and
    the seq to continue from (the head when all were read)."""
    with gov.db.transaction() as s:
        h = s.get(AuditHead, 1)
        head = int(h.seq) if h else 0
        rows = s.execute(
            select(AuditEvent.seq, AuditEvent.action, AuditEvent.target)
            .where(AuditEvent.seq > int(seq), AuditEvent.seq <= head,
                   AuditEvent.action.in_(STREAM_ACTIONS) | AuditEvent.action.startswith("deployment.")
                   | (AuditEvent.action == "snapshot.delete"))
            .order_by(AuditEvent.seq).limit(limit)
        ).all()
        last = int(rows[-1][0]) if len(rows) == limit else max(head, int(seq))
        return [(int(a), b, c) for a, b, c in rows], last
