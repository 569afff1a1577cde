"""Adjudications are append-only: who may decide, who may change a decision, and when.

- The first decision on an alert (true or false alert) is an operator's (``alert.adjudicate``).
- The same decision again changes nothing (no new row, no entry).
- A *different* decision is a revision: a new row beside the old one (the history stays, in
  time order), with a reason, always. An operator may revise only while the deployment runs
  and before an engagement outcome is recorded (a mistaken key press, corrected at once).
  After an outcome, or once the deployment has ended, only a supervisor (``alert.revise``)
  may revise: the decision has been acted on or published.
- A supervisor revises; they do not make first decisions.

The same rule holds for the CLI (``alert adjudicate``), the API and the console's T/F keys:
they all call ``Governance.adjudicate``, which calls ``decide`` here.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store.models import Adjudication, AlertRow, Deployment, Engagement
from .errors import GovernanceError, NotFound, PermissionDenied
from .roles import Actor

DECISIONS = ("true_alert", "false_alert")
MAX_REASON = 2000


def normalise(decision: str) -> str:
    decision = {"true": "true_alert", "false": "false_alert"}.get(decision, decision)
    if decision not in DECISIONS:
        raise GovernanceError(f"an adjudication is one of {', '.join(DECISIONS)}")
    return decision


def decide(s: Session, actor: Actor, alert_id: int, decision: str, note: str, reason: str, now) -> tuple[Adjudication, bool]:
    """(the standing adjudication, whether it is new). Raises ``PermissionDenied`` (to be audited
    by the caller) or ``GovernanceError`` when the rule refuses."""
    decision = normalise(decision)
    reason = (reason or "").strip()
    if len(reason) > MAX_REASON:
        raise GovernanceError(f"a reason is at most {MAX_REASON} characters")
    a = s.execute(select(AlertRow).where(AlertRow.id == int(alert_id)).with_for_update()).scalar_one_or_none()
    if a is None:
        raise NotFound(f"no alert {alert_id}")
    latest = s.execute(select(Adjudication).where(Adjudication.alert_id == a.id)
                       .order_by(Adjudication.id.desc()).limit(1)).scalar_one_or_none()
    if latest is None:
        if not actor.can("alert.adjudicate"):
            raise PermissionDenied(f"{actor.name} may not alert.adjudicate (the first decision is an operator's)")
        if reason:
            raise GovernanceError("a reason is for changing a decision; this is the first one (use a note)")
    elif latest.decision == decision:
        return latest, False
    else:
        if not reason:
            raise GovernanceError(f"alert {a.id} was adjudicated {latest.decision}: changing it needs a reason")
        if not actor.can("alert.revise"):
            if not actor.can("alert.adjudicate"):
                raise PermissionDenied(f"{actor.name} may not alert.revise (needs: supervisor)")
            has_outcome = s.execute(select(Engagement.id).where(Engagement.alert_id == a.id).limit(1)).first() is not None
            if has_outcome:
                raise GovernanceError(f"alert {a.id} has an engagement outcome: only a supervisor may change its adjudication")
            d = s.get(Deployment, a.deployment_id)
            if d is None or d.status != "active" or now >= d.ends_at:
                raise GovernanceError(f"deployment {a.deployment_id} has ended: only a supervisor may change alert {a.id}'s adjudication")
    j = Adjudication(alert_id=a.id, user_id=actor.user_id, decision=decision, decided_at=now, note=note or "", reason=reason)
    s.add(j)
    s.flush()
    return j, True
