"""Who is asking: console sessions, bearer tokens, worker tokens, CSRF and login rate limiting.

Three kinds of credential, all random tokens of which only the SHA-256 is stored (table
``api_tokens``), all revocable:

- ``session``: the console's cookie ``openlfr_session`` (HttpOnly, SameSite=Strict; Secure over
  HTTPS), 12 hours. A state-changing request made with it needs the CSRF token, derived from
  the session token (``csrf_token``): a form field ``csrf_token`` or the header ``X-CSRF-Token``.
- ``api``: ``Authorization: Bearer olfr_...`` for scripts and other systems; acts as its user
  with the user's *current* roles (a role change or a disabled account applies at once).
- ``worker``: a camera worker's bearer token, bound to one deployment; accepted only by the
  worker endpoints (post alerts and faces seen, read the run), refused everywhere else.

Every permission decision is governance's (``Governance.authorize`` / the service methods):
nothing here knows which role may do what.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from ..governance import audit
from ..governance.errors import GovernanceError, NotFound, PermissionDenied
from ..governance.roles import SYSTEM, Actor
from ..store import repository as repo
from ..store.models import ApiToken, Deployment, User
from ..store.types import utc

SESSION_COOKIE = "openlfr_session"
PRELOGIN_COOKIE = "openlfr_prelogin"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_PREFIX = "olfr_"
SESSION_HOURS = 12
KINDS = ("session", "api", "worker")
LAST_USED_EVERY_S = 60.0


def authorize(gov, actor: Actor, permission: str) -> None:
    """Governance's own permission check (``roles.PERMISSIONS``; a refusal is audited as
    ``permission.denied``), made before acting: before expensive work, or before a read that
    uses its own query. Raises ``PermissionDenied``."""
    gov._require(actor, permission)


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: only someone holding the (HttpOnly) session cookie can know it."""
    return hmac.new(session_token.encode("utf-8", "surrogatepass"), b"openlfr-csrf", hashlib.sha256).hexdigest()


def prelogin_csrf(value: str) -> str:
    return hmac.new(value.encode("utf-8", "surrogatepass"), b"openlfr-login", hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode("utf-8", "surrogatepass"), str(b).encode("utf-8", "surrogatepass"))


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
                actor = Actor(name=f"system:worker:{row.id}", roles=frozenset({SYSTEM}))
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


def proxy_settings(trusted_proxy: str | None) -> dict:
    """uvicorn's options for ``X-Forwarded-For``: believed only from ``trusted_proxy`` (addresses,
    comma-separated, e.g. the TLS proxy in front); never by default. The login rate limit counts
    failures per client address, so a header anyone can send must not choose that address."""
    if not trusted_proxy or not trusted_proxy.strip():
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted_proxy.strip()}


class LoginLimiter:
    """Failed logins per (user name, client address) and per address, in a sliding window.

    After ``per_user`` failures for one name from one address, or ``per_address`` failures from
    one address, within ``window_s``, further attempts are refused (429) without checking the
    password until the window has moved on. A successful login clears the name's count.
    In memory: each server process keeps its own (put one server in front of many workers).
    """

    def __init__(self, per_user: int = 5, per_address: int = 30, window_s: float = 300.0, clock=time.monotonic):
        self.per_user, self.per_address, self.window_s = per_user, per_address, window_s
        self.clock = clock
        self._user: dict[tuple[str, str], deque] = defaultdict(deque)
        self._addr: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _trim(self, q: deque, now: float) -> None:
        while q and now - q[0] >= self.window_s:
            q.popleft()

    def retry_after(self, name: str, address: str) -> int:
        """0 when an attempt may go ahead, else seconds to wait."""
        now = self.clock()
        key = ((name or "").lower(), address)
        with self._lock:
            uq, aq = self._user[key], self._addr[address]
            self._trim(uq, now)
            self._trim(aq, now)
            waits = []
            if len(uq) >= self.per_user:
                waits.append(self.window_s - (now - uq[0]))
            if len(aq) >= self.per_address:
                waits.append(self.window_s - (now - aq[0]))
            if not uq:
                self._user.pop(key, None)
            if not aq:
                self._addr.pop(address, None)
            return int(max(waits) + 1) if waits else 0

    def failed(self, name: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            self._user[((name or "").lower(), address)].append(now)
            self._addr[address].append(now)

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._user.pop(((name or "").lower(), address), None)
