"""What governance refuses, and why."""

from __future__ import annotations

from ..live.sink import DeploymentEnded
from ..store.db import StoreError  # noqa: F401  (the store unreachable or not migrated: passed on to the entry points)


class GovernanceError(Exception):
    """A rule refused the action (the message says which)."""


class PermissionDenied(GovernanceError):
    """The actor's roles do not allow the action."""


class AuthenticationError(GovernanceError):
    """Unknown user, wrong password, or a disabled account."""


class NotFound(GovernanceError):
    """No such record."""


class DeploymentNotActive(GovernanceError, DeploymentEnded):
    """The deployment is not running (not started, ended, or past its end time)."""
