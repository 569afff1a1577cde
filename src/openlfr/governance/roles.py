"""Roles and permissions, as code.

Each service function starts with ``require(actor, PERMISSION)``. The table below is the only
place where a role gains an action; no role may do another's job without holding that role
too (a user may hold several). ``system`` is not a role a user can hold: it is the actor of
automatic jobs (schedule enforcement, purge) and of the live pipeline's alert sink.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import PermissionDenied

OPERATOR = "operator"  # runs deployments, sees and adjudicates alerts
ENGAGEMENT_OFFICER = "engagement_officer"  # records engagement outcomes
WATCHLIST_MANAGER = "watchlist_manager"  # enrols, expires and erases subjects
AUTHORISING_OFFICER = "authorising_officer"  # authorises deployments
AUDITOR = "auditor"  # reads everything, changes nothing
ADMINISTRATOR = "administrator"  # users, retention settings, purge
SUPERVISOR = "supervisor"  # reviews alerts; the only role that may change a decision once acted on (alert.revise)
SYSTEM = "system"

ROLES = (OPERATOR, ENGAGEMENT_OFFICER, WATCHLIST_MANAGER, AUTHORISING_OFFICER, AUDITOR, ADMINISTRATOR, SUPERVISOR)

_ALL = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[str]] = {
    # users
    "user.create": frozenset({ADMINISTRATOR}),
    "user.change": frozenset({ADMINISTRATOR}),
    "user.list": frozenset({ADMINISTRATOR, AUDITOR}),
    # watchlists and subjects
    "watchlist.create": frozenset({WATCHLIST_MANAGER}),
    "watchlist.enrol": frozenset({WATCHLIST_MANAGER}),
    "watchlist.expire": frozenset({WATCHLIST_MANAGER}),
    "watchlist.read": frozenset({WATCHLIST_MANAGER, AUTHORISING_OFFICER, AUDITOR}),
    "subject.erase": frozenset({WATCHLIST_MANAGER}),
    # deployments
    "deployment.plan": frozenset({OPERATOR}),
    "deployment.authorise": frozenset({AUTHORISING_OFFICER}),
    "deployment.start": frozenset({OPERATOR}),
    "deployment.stop": frozenset({OPERATOR, AUTHORISING_OFFICER, SYSTEM}),
    "deployment.read": _ALL | {SYSTEM},
    "deployment.run": frozenset({OPERATOR, SYSTEM}),
    "deployment.enforce": frozenset({SYSTEM}),
    "deployment.publish": frozenset({ADMINISTRATOR}),  # choose what the public transparency pages show
    # alerts
    "alert.record": frozenset({OPERATOR, SYSTEM}),
    "alert.read": frozenset({OPERATOR, ENGAGEMENT_OFFICER, AUDITOR, SUPERVISOR}),
    "alert.adjudicate": frozenset({OPERATOR}),  # first decisions; an operator's own correction while it runs (governance/adjudication.py)
    "alert.revise": frozenset({SUPERVISOR}),  # change a decision (with a reason) at any time, after an outcome or the end too
    "alert.outcome": frozenset({ENGAGEMENT_OFFICER}),
    "volunteer.record": frozenset({OPERATOR}),  # passes of test-deployment volunteers (field TPIR)
    # retention
    "retention.configure": frozenset({ADMINISTRATOR}),
    "purge.run": frozenset({ADMINISTRATOR, SYSTEM}),
    # audit
    "audit.read": frozenset({AUDITOR, ADMINISTRATOR}),
}


@dataclass(frozen=True)
class Actor:
    """Who acts: a logged-in user (with their roles) or the system."""

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    user_id: int | None = None

    @classmethod
    def system(cls, job: str = "system") -> "Actor":
        return cls(name=f"system:{job}" if job != "system" else "system", roles=frozenset({SYSTEM}))

    @property
    def is_system(self) -> bool:
        return SYSTEM in self.roles

    def can(self, permission: str) -> bool:
        return bool(self.roles & PERMISSIONS[permission])


def require(actor: Actor, permission: str) -> None:
    """Raise ``PermissionDenied`` unless one of ``actor``'s roles allows ``permission``."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    if not actor.can(permission):
        allowed = ", ".join(sorted(PERMISSIONS[permission]))
        raise PermissionDenied(f"{actor.name} may not {permission} (needs one of: {allowed})")


def check_roles(roles) -> frozenset[str]:
    out = frozenset(roles)
    bad = sorted(out - set(ROLES))
    if bad:
        raise ValueError(f"unknown role(s) {', '.join(bad)}; roles are {', '.join(ROLES)}")
    if not out:
        raise ValueError("at least one role is needed")
    return out
