"""Credentials as governance keeps them: sessions, API tokens and worker tokens.

Each is a random token of which only the SHA-256 is stored (table ``api_tokens``); creating,
resolving, listing and revoking them is audited here, in the door to the store. The web layer
(``api/security.py``) only carries them: cookies, headers, CSRF and login rate limits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from ..store import repository as repo
from ..store.models import ApiToken, Deployment, User
from ..store.types import utc
from . import audit
from .errors import GovernanceError, NotFound, PermissionDenied
from .roles import SYSTEM, Actor

TOKEN_PREFIX = "olfr_"
KINDS = ("session", "api", "worker")
LAST_USED_EVERY_S = 60.0


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: only someone holding the (HttpOnly) session cookie can know it."""
    return hmac.new(session_token.encode("utf-8", "surrogatepass"), b"openlfr-csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the governance actor, and how they authenticated."""

    actor: Actor
    kind: str  # session | api | worker
    token_id: int
    user_id: int
    deployment_id: int | None = None  # worker tokens
    session_token: str | None = None  # sessions (for the CSRF token)

    @property
    def csrf(self) -> str | None:
        return csrf_token(self.session_token) if self.session_token else None

    @property
    def is_worker(self) -> bool:
        return self.kind == "worker"


class Tokens:
    """Create, resolve, list and revoke tokens (sessions, API and worker tokens); audited."""

    def __init__(self, gov):
        self.gov = gov
        self._used: dict[int, float] = {}
        self._lock = threading.Lock()

    def _audit(self, s, actor: str, action: str, target: str, details: dict) -> None:
        audit.append(s, self.gov.now(), actor, action, target, details, self.gov.key)

    def create(self, actor: Actor, kind: str, name: str = "", expires_at: datetime | None = None,
               deployment_id: int | None = None) -> tuple[str, ApiToken]:
        """A new token for ``actor`` (a logged-in user); returns (the secret, shown once; its row)."""
        if kind not in KINDS:
            raise GovernanceError(f"a token is one of {', '.join(KINDS)}")
        if actor.user_id is None:
            raise PermissionDenied("only a user can hold a token")
        secret = new_secret()
        now = self.gov.now()
        with self.gov.db.transaction() as s:
            if kind == "worker":
                d = s.get(Deployment, int(deployment_id)) if deployment_id is not None else None
                if d is None:
                    raise NotFound(f"no deployment {deployment_id}")
                if d.status not in ("authorised", "active"):
                    raise GovernanceError(f"deployment {d.id} is {d.status}; a worker token is for an authorised or active deployment")
                expires_at = d.ends_at + timedelta(hours=1)
            row = ApiToken(token_hash=token_hash(secret), kind=kind, name=(name or "")[:200], user_id=actor.user_id,
                           deployment_id=deployment_id if kind == "worker" else None, created_at=now,
                           expires_at=utc(expires_at) if expires_at else None)
            s.add(row)
            s.flush()
            action = "login.session" if kind == "session" else "token.create"
            details = {"kind": kind, "name": row.name}
            if kind == "worker":
                details["deployment_id"] = row.deployment_id
            self._audit(s, actor.name, action, f"token:{row.id}", details)
            return secret, row

    def resolve(self, secret: str, kinds: tuple[str, ...]) -> Principal | None:
        """The principal a token stands for, or None (unknown, revoked, expired, disabled user)."""
        if not secret or len(secret) > 200:
            return None
        now = self.gov.now()
        with self.gov.db.transaction() as s:
            row = s.execute(select(ApiToken).where(ApiToken.token_hash == token_hash(secret))).scalar_one_or_none()
            if row is None or row.kind not in kinds or row.revoked_at is not None:
                return None
            if row.expires_at is not None and row.expires_at <= now:
                return None
            user = s.get(User, row.user_id)
            if user is None or not user.active:
                return None
            if row.kind == "worker":
                if not Actor(name=user.name, roles=repo.roles_of(s, user.id)).can("deployment.run"):
                    return None  # its user no longer runs deployments (their tokens are revoked then too)
                actor = Actor(name=f"system:worker:{row.id}:{user.name}", roles=frozenset({SYSTEM}))  # the token and its operator
            else:
                actor = Actor(name=user.name, roles=repo.roles_of(s, user.id), user_id=user.id)
            with self._lock:
                mono = time.monotonic()
                touch = mono - self._used.get(row.id, -1e9) >= LAST_USED_EVERY_S
                if touch:
                    self._used[row.id] = mono
            if touch:
                s.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
            return Principal(actor=actor, kind=row.kind, token_id=row.id, user_id=user.id,
                             deployment_id=row.deployment_id, session_token=secret if row.kind == "session" else None)

    def still_valid(self, principal: Principal) -> bool:
        """For long-lived streams: the token is not revoked or expired and its user is active."""
        now = self.gov.now()
        with self.gov.db.transaction() as s:
            row = s.get(ApiToken, principal.token_id)
            if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
                return False
            user = s.get(User, row.user_id)
            return bool(user and user.active)

    def revoke(self, principal: Principal, token_id: int, may_revoke_any: bool = False, may_revoke_workers: bool = False) -> ApiToken:
        """Revoke a token: one's own; any worker token with ``may_revoke_workers``; any with ``may_revoke_any``."""
        with self.gov.db.transaction() as s:
            row = s.get(ApiToken, int(token_id))
            if row is None:
                raise NotFound(f"no token {token_id}")
            own = row.user_id == principal.user_id and principal.kind != "worker"
            if not (own or may_revoke_any or (may_revoke_workers and row.kind == "worker")):
                raise PermissionDenied(f"{principal.actor.name} may not revoke token {row.id} (not theirs)")
            if row.revoked_at is None:
                row.revoked_at = self.gov.now()
                action = "logout" if row.kind == "session" and own else "token.revoke"
                self._audit(s, principal.actor.name, action, f"token:{row.id}", {"kind": row.kind})
            return row

    def list(self, principal: Principal, everyone: bool = False) -> list[dict]:
        with self.gov.db.transaction() as s:
            q = select(ApiToken).order_by(ApiToken.id.desc()).limit(500)
            if not everyone:
                q = q.where(ApiToken.user_id == principal.user_id)
            out = []
            for t in s.execute(q).scalars():
                out.append({
                    "id": t.id, "kind": t.kind, "name": t.name, "user": repo.user_name(s, t.user_id),
                    "deployment_id": t.deployment_id, "created_at": _iso(t.created_at), "expires_at": _iso(t.expires_at),
                    "revoked_at": _iso(t.revoked_at), "last_used_at": _iso(t.last_used_at),
                    "current": t.id == principal.token_id,
                })
            return out


def _iso(t: datetime | None) -> str | None:
    return None if t is None else utc(t).isoformat()
