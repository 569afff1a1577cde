"""Governance: roles, users, watchlists, deployments, alerts, retention and the audit log.

The rules are enforced here, in code, whatever calls them (CLI, API, console, live run)::

    from openlfr.governance import Governance, Actor, TestClock
    gov = Governance("sqlite:///x.db")            # or None: --db / $OPENLFR_DB / data dir
    actor = gov.login("alice", password)
    gov.plan_deployment(actor, ...)

See docs/governance.md for the rules, roles, retention and the audit chain.
"""

from .clock import Clock, SystemClock, TestClock
from .errors import AuthenticationError, DeploymentNotActive, GovernanceError, NotFound, PermissionDenied
from .live import DeploymentRun, DeploymentSink, RunSubject, open_deployment_run
from .roles import PERMISSIONS, ROLES, Actor, require
from .service import CATEGORIES, DECISIONS, OUTCOMES, RESULTS, Governance, NewImage, PurgeReport

__all__ = [
    "Actor", "AuthenticationError", "CATEGORIES", "Clock", "DECISIONS", "DeploymentNotActive",
    "DeploymentRun", "DeploymentSink", "Governance", "GovernanceError", "NewImage", "NotFound", "OUTCOMES", "PERMISSIONS",
    "PermissionDenied", "PurgeReport", "RESULTS", "ROLES", "RunSubject", "SystemClock", "TestClock",
    "open_deployment_run", "require",
]
