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
import threading
import time
from collections import defaultdict, deque

from ..governance.tokens import (  # noqa: F401  (re-exported: the API carries governance's credentials)
    KINDS,
    TOKEN_PREFIX,
    Principal,
    Tokens,
    csrf_token,
    new_secret,
    token_hash,
)

SESSION_COOKIE = "openlfr_session"
PRELOGIN_COOKIE = "openlfr_prelogin"
CSRF_HEADER = "X-CSRF-Token"
SESSION_HOURS = 12


def prelogin_csrf(value: str) -> str:
    return hmac.new(value.encode("utf-8", "surrogatepass"), b"openlfr-login", hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode("utf-8", "surrogatepass"), str(b).encode("utf-8", "surrogatepass"))


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
