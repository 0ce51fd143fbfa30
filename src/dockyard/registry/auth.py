"""Who may do what: htpasswd accounts, an access policy, and signed tokens.

No HTTP here: :class:`Authenticator` takes the ``Authorization`` header value and
the scopes a request needs, and answers an :class:`Identity` or raises
:class:`AuthFailure` carrying the error and the challenge to send back.

Tokens are JWTs signed with ES256 (an EC P-256 key generated on first start and
kept at ``<root>/auth/token-key.pem``, mode 0600) or RS256 when the given key is
RSA. Asymmetric keys, rather than HS256, let another registry verify our tokens
with only the public key, as the Docker token flow intends.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import math
import os
import threading
import time
import uuid as uuidlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dockyard.distribution import auth as proto
from dockyard.distribution.auth import ALL, DELETE, PULL, PUSH, Scope
from dockyard.distribution.errors import ErrorCode, RegistryError

ANONYMOUS = ""


class Htpasswd:
    """``user:bcrypt-hash`` lines. Reloaded when the file changes.

    bcrypt is slow on purpose; clients send Basic credentials on every
    request, so a successful check is remembered for :attr:`REMEMBER` seconds
    (keyed by an HMAC of user and password under a per-process random key; at
    most :attr:`MAX_REMEMBERED` entries; forgotten when the file changes), and
    a good client pays bcrypt about once a minute.
    """

    REMEMBER = 60.0
    MAX_REMEMBERED = 1024

    def __init__(self, path: str | os.PathLike, clock=time.monotonic):
        self.path = Path(path)
        self._mtime = None
        self._users: dict[str, bytes] = {}
        self._ok: OrderedDict[bytes, float] = OrderedDict()   # memo -> expiry
        self._key = os.urandom(32)
        self._clock = clock
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        st = os.stat(self.path)
        key = (st.st_mtime_ns, st.st_size)
        if key == self._mtime:
            return
        users = {}
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or ":" not in line:
                continue
            user, _, h = line.partition(":")
            users[user] = h.strip().encode()
        self._users, self._ok, self._mtime = users, OrderedDict(), key

    def _memo(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, user.encode() + b"\0" + password.encode(), hashlib.sha256).digest()

    def remembered(self, user: str, password: str) -> bool:
        """True if these credentials passed bcrypt within :attr:`REMEMBER` seconds
        (no bcrypt now)."""
        with self._lock:
            self._load()
            memo = self._memo(user, password)
            until = self._ok.get(memo)
            if until is None:
                return False
            if until < self._clock():
                del self._ok[memo]
                return False
            return True

    def verify(self, user: str, password: str) -> bool:
        import bcrypt

        if self.remembered(user, password):
            return True
        with self._lock:
            h = self._users.get(user)
        if h is None or not h.startswith((b"$2a$", b"$2b$", b"$2y$")):
            return False  # only bcrypt, as distribution
        try:
            ok = bcrypt.checkpw(password.encode(), h)
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._ok[self._memo(user, password)] = self._clock() + self.REMEMBER
                while len(self._ok) > self.MAX_REMEMBERED:
                    self._ok.popitem(last=False)
        return ok


class LoginThrottle:
    """Back-off for failed logins, per client address.

    After ``limit`` failed password checks from one address within ``window``
    seconds, that address's credentialed requests are answered 429
    TOOMANYREQUESTS with a Retry-After (until its oldest counted failure leaves
    the window) and no password check is run for them: 200 bad passwords in a
    row cost at most ``limit`` bcrypt runs per window, and other clients are
    unaffected. A success does not clear the count (an attacker with an account
    of their own could otherwise keep guessing another's). At most
    ``max_clients`` addresses are tracked, least recently failed dropped first.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, max_clients: int = 4096,
                 clock=time.monotonic):
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._clock = clock
        self._fails: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        times = [t for t in self._fails.get(client, ()) if t > now - self.window]
        if times:
            self._fails[client] = times
        else:
            self._fails.pop(client, None)
        return times

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0 when it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if len(times) < self.limit:
                return 0
            return max(1, math.ceil(times[-self.limit] + self.window - now))

    def check(self, client: str) -> None:
        wait = self.retry_after(client)
        if wait:
            raise RegistryError(ErrorCode.TOO_MANY_REQUESTS,
                                f"too many failed login attempts from {client}; retry in {wait} s",
                                headers={"Retry-After": str(wait)})

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            times.append(now)
            self._fails[client] = times[-self.limit:]
            self._fails.move_to_end(client)
            while len(self._fails) > self.max_clients:
                self._fails.popitem(last=False)


def htpasswd_line(user: str, password: str, rounds: int = 10) -> str:
    import bcrypt

    if not user or ":" in user:
        raise ValueError("user names must be non-empty and hold no ':'")
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()}"


class AccessPolicy:
    """What each account may do.

    ``access`` maps an account ("*" = any authenticated user, "anonymous" = no
    credentials) either to a list of actions on every repository, or to
    ``{repository-pattern: [actions]}`` (fnmatch patterns, first match wins)::

        {"alice": ["pull", "push"], "bob": ["pull"]}
        {"alice": {"alice/*": ["pull", "push", "delete"], "*": ["pull"]}}

    Without a policy, every authenticated user may pull, push and delete.
    ``anonymous_read`` adds pull for anonymous clients.
    """

    def __init__(self, access: dict | None = None, anonymous_read: bool = False):
        self.access = access
        self.anonymous_read = anonymous_read

    def _entry(self, account: str) -> list | dict | None:
        if self.access is None:
            return [PULL, PUSH, DELETE] if account != ANONYMOUS else None
        if account == ANONYMOUS:
            return self.access.get("anonymous")
        if account in self.access:
            return self.access[account]
        return self.access.get("*")

    def allowed_actions(self, account: str, scope: Scope) -> frozenset[str]:
        acts: set[str] = set()
        if scope.type == "repository":
            entry = self._entry(account)
            if isinstance(entry, list):
                acts |= set(entry)
            elif isinstance(entry, dict):
                for pattern, actions in entry.items():
                    if fnmatch.fnmatchcase(scope.name, pattern):
                        acts |= set(actions)
                        break
            if self.anonymous_read:
                acts.add(PULL)
        elif scope.type == "registry" and scope.name == "catalog":
            if account != ANONYMOUS or self.anonymous_read:
                acts.add(ALL)
        if ALL in acts:
            acts |= {PULL, PUSH, DELETE} if scope.type == "repository" else set(scope.actions)
        return frozenset(acts)

    def grant(self, account: str, scopes: list[Scope]) -> list[Scope]:
        """The requested scopes narrowed to what ``account`` may do."""
        return [Scope(s.type, s.name, s.actions & self.allowed_actions(account, s)) for s in scopes]

    def permits(self, account: str, needed: list[Scope]) -> bool:
        return all(s.actions <= self.allowed_actions(account, s) for s in needed)


class TokenKeys:
    """The token signing key: loaded from a PEM, or generated and kept under root."""

    def __init__(self, key_path: str | os.PathLike | None, root: str | os.PathLike):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        path = Path(key_path) if key_path else Path(root) / "auth" / "token-key.pem"
        if not path.exists():
            if key_path:
                raise FileNotFoundError(f"token key {path} does not exist")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            os.replace(tmp, path)
        self.path = path
        self.private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            self.algorithm = "ES256"
        elif isinstance(self.private, rsa.RSAPrivateKey):
            self.algorithm = "RS256"
        else:
            raise ValueError(f"unsupported token key type in {path}")
        self.public = self.private.public_key()
        der = self.public.public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = _libtrust_kid(der)


def _libtrust_kid(der: bytes) -> str:
    """The key id format distribution expects: base32 of a truncated SHA-256, in 4-char groups."""
    import base64

    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class TokenService:
    def __init__(self, keys: TokenKeys, issuer: str, service: str, ttl: int = 300):
        self.keys = keys
        self.issuer = issuer
        self.service = service
        self.ttl = ttl

    def issue(self, account: str, scopes: list[Scope], refresh: bool = False) -> proto.TokenResponse:
        import jwt

        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": account, "aud": self.service,
            "exp": now + self.ttl, "nbf": now - 1, "iat": now, "jti": uuidlib.uuid4().hex,
            "access": proto.claims_from_scopes([s for s in scopes if s.actions]),
        }
        token = jwt.encode(claims, self.keys.private, algorithm=self.keys.algorithm,
                           headers={"kid": self.keys.kid})
        refresh_token = None
        if refresh and account:
            refresh_token = jwt.encode({"iss": self.issuer, "sub": account, "aud": self.service + "#refresh",
                                        "iat": now, "exp": now + 30 * 86400, "jti": uuidlib.uuid4().hex},
                                       self.keys.private, algorithm=self.keys.algorithm)
        issued = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return proto.TokenResponse(token, self.ttl, issued, refresh_token)

    def verify(self, token: str) -> tuple[str, list[Scope]]:
        """(account, granted scopes) or ValueError with the reason."""
        import jwt

        try:
            claims = jwt.decode(token, self.keys.public, algorithms=[self.keys.algorithm],
                                audience=self.service, issuer=self.issuer,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise ValueError("token expired") from None
        except jwt.PyJWTError as e:
            raise ValueError(f"invalid token: {e}") from None
        return str(claims.get("sub") or ""), proto.scopes_from_claims(claims.get("access") or [])

    def verify_refresh(self, token: str) -> str:
        import jwt

        try:
            claims = jwt.decode(token, self.keys.public, algorithms=[self.keys.algorithm],
                                audience=self.service + "#refresh", issuer=self.issuer)
        except jwt.PyJWTError as e:
            raise ValueError(f"invalid refresh token: {e}") from None
        return str(claims.get("sub") or "")


@dataclass(frozen=True)
class Identity:
    account: str  # "" for anonymous


class AuthFailure(RegistryError):
    """401 with a challenge, or 403 DENIED."""

    def __init__(self, code: ErrorCode, message: str, challenge: proto.Challenge | None = None,
                 needed: list[Scope] = ()):
        headers = {"WWW-Authenticate": challenge.render()} if challenge else {}
        detail = [{"Type": s.type, "Name": s.name, "Action": a} for s in needed for a in sorted(s.actions)]
        super().__init__(code, message, detail=detail or None, headers=headers)


class Authenticator:
    """Checks a request's Authorization against the scopes it needs."""

    def __init__(self, mode: str, policy: AccessPolicy, htpasswd: Htpasswd | None = None,
                 tokens: TokenService | None = None, realm: str | None = None,
                 basic_realm: str = "Registry Realm", throttle: LoginThrottle | None = None):
        if mode not in ("none", "basic", "token"):
            raise ValueError(f"unknown auth mode {mode!r}")
        if mode != "none" and htpasswd is None and not (mode == "token" and policy.anonymous_read):
            raise ValueError(f"auth {mode} needs an htpasswd file")
        if mode == "token" and tokens is None:
            raise ValueError("token auth needs a token service")
        self.mode = mode
        self.policy = policy
        self.htpasswd = htpasswd
        self.tokens = tokens
        self.realm = realm
        self.basic_realm = basic_realm
        self.throttle = throttle or LoginThrottle()

    def check_password(self, user: str, password: str, client: str | None = None) -> bool:
        """bcrypt against the htpasswd file. With the ``client``'s address, a client
        that failed too often is refused (RegistryError 429 with Retry-After) before
        any bcrypt, unless these credentials passed recently; a failure counts."""
        if self.htpasswd is None:
            return False
        if client is None:
            return self.htpasswd.verify(user, password)
        if self.htpasswd.remembered(user, password):
            return True
        self.throttle.check(client)
        ok = self.htpasswd.verify(user, password)
        if not ok:
            self.throttle.failed(client)
        return ok

    def _challenge(self, needed: list[Scope], realm: str, error: str | None = None) -> proto.Challenge:
        if self.mode == "basic":
            return proto.basic_challenge(self.basic_realm)
        return proto.bearer_challenge(self.realm or realm, self.tokens.service, needed, error)

    def authorize(self, authorization: str | None, needed: list[Scope], realm: str,
                  require_login: bool = False, client: str | None = None) -> Identity:
        """The identity behind ``authorization`` if it may do ``needed``.

        ``require_login`` (the /v2/ version check) refuses anonymous access even
        when anonymous reads are allowed, so that clients learn to log in.
        ``realm`` is the token URL derived from the request (used unless one
        was configured).
        """
        if self.mode == "none":
            return Identity(ANONYMOUS)
        if self.mode == "basic":
            creds = proto.parse_basic_authorization(authorization)
            if creds is None:
                if not require_login and self.policy.permits(ANONYMOUS, needed):
                    return Identity(ANONYMOUS)
                raise AuthFailure(ErrorCode.UNAUTHORIZED, "authentication required",
                                  self._challenge(needed, realm), needed)
            user, password = creds
            if not self.check_password(user, password, client):
                raise AuthFailure(ErrorCode.UNAUTHORIZED, "invalid username or password",
                                  self._challenge(needed, realm), needed)
            if not self.policy.permits(user, needed):
                raise AuthFailure(ErrorCode.DENIED, "requested access to the resource is denied",
                                  None, needed)
            return Identity(user)
        # token
        token = proto.parse_bearer_authorization(authorization)
        if token is None:
            raise AuthFailure(ErrorCode.UNAUTHORIZED, "authentication required",
                              self._challenge(needed, realm), needed)
        try:
            account, grants = self.tokens.verify(token)
        except ValueError as e:
            raise AuthFailure(ErrorCode.UNAUTHORIZED, str(e),
                              self._challenge(needed, realm, "invalid_token"), needed) from None
        if not proto.granted(grants, needed):
            raise AuthFailure(ErrorCode.UNAUTHORIZED, "insufficient scope",
                              self._challenge(needed, realm, "insufficient_scope"), needed)
        return Identity(account)

    def identify(self, authorization: str | None, client: str | None = None) -> Identity | None:
        """Who is asking, without checking any scope (for search); None if
        the credentials are bad."""
        if self.mode == "none":
            return Identity(ANONYMOUS)
        if self.mode == "basic":
            creds = proto.parse_basic_authorization(authorization)
            if creds is None:
                return Identity(ANONYMOUS)
            return Identity(creds[0]) if self.check_password(*creds, client) else None
        token = proto.parse_bearer_authorization(authorization)
        if token is None:
            return Identity(ANONYMOUS)
        try:
            account, _ = self.tokens.verify(token)
        except ValueError:
            return None
        return Identity(account)
