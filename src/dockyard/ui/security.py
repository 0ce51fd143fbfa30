"""Who may use the UI: the login token or htpasswd users, sessions, CSRF tokens.

Plain logic, no HTTP (the routes in :mod:`dockyard.ui.app` apply it):

- a login is the token printed at start (compared in constant time) or an
  htpasswd user (bcrypt, :class:`dockyard.registry.auth.Htpasswd`), failures
  throttled per client (:class:`dockyard.registry.auth.LoginThrottle`);
- a session is a random id (the cookie) mapped in memory to its user, its CSRF
  token and its expiry (idle 12 hours); restarting the UI logs everyone out;
- every state-changing request, and every stream (logs, stats, events,
  terminal), must carry the session's CSRF token too, so another site's page
  can neither act nor read through the user's browser.
"""

from __future__ import annotations

import hmac
import secrets
import time

SESSION_COOKIE = "dockyard_ui_session"
CSRF_HEADER = "X-CSRF-Token"
IDLE = 12 * 3600.0
MAX_SESSIONS = 10000


class Session:
    __slots__ = ("id", "user", "csrf", "seen")

    def __init__(self, user: str) -> None:
        self.id = secrets.token_urlsafe(32)
        self.user = user
        self.csrf = secrets.token_urlsafe(32)
        self.seen = time.monotonic()


class Sessions:
    def __init__(self, clock=time.monotonic) -> None:
        self._by_id: dict[str, Session] = {}
        self._clock = clock

    def create(self, user: str) -> Session:
        now = self._clock()
        if len(self._by_id) >= MAX_SESSIONS:
            for sid, s in list(self._by_id.items()):
                if now - s.seen > IDLE:
                    del self._by_id[sid]
            if len(self._by_id) >= MAX_SESSIONS:   # the oldest goes
                oldest = min(self._by_id.values(), key=lambda s: s.seen)
                del self._by_id[oldest.id]
        s = Session(user)
        s.seen = now
        self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._by_id.get(sid)
        if s is None:
            return None
        now = self._clock()
        if now - s.seen > IDLE:
            del self._by_id[sid]
            return None
        s.seen = now
        return s

    def drop(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)


def csrf_ok(session: Session | None, presented: str | None) -> bool:
    return bool(session and presented and hmac.compare_digest(session.csrf.encode(), presented.encode()))


class Authenticator:
    """Checks a login: the start token, or a user in an htpasswd file."""

    def __init__(self, token: str | None, htpasswd: str | None = None) -> None:
        self.token = token
        self.htpasswd = None
        if htpasswd:
            from dockyard.registry.auth import Htpasswd

            self.htpasswd = Htpasswd(htpasswd)
        from dockyard.registry.auth import LoginThrottle

        self.throttle = LoginThrottle()

    def check_token(self, presented: str | None) -> bool:
        return bool(self.token and presented and
                    hmac.compare_digest(self.token.encode(), presented.encode()))

    def check_user(self, user: str | None, password: str | None) -> bool:
        return bool(self.htpasswd and user and password is not None and
                    self.htpasswd.verify(user, password))


def new_token() -> str:
    return secrets.token_urlsafe(24)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
