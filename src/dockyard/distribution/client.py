"""A registry client's auth state, without I/O: which Authorization to send,
and what to do with a 401.

The caller owns the sockets::

    auth = ClientAuth(credentials=("alice", "pw"))
    step = auth.before_request(scopes, now)
    if isinstance(step, FetchToken):            # a token is needed first
        status, body = GET(step.url, step.headers)
        auth.token_fetched(step, status, body, now)
        step = auth.before_request(scopes, now)
    response = send(request, headers=step.headers)
    if response.status == 401:
        step = auth.on_unauthorized(response.headers["WWW-Authenticate"], scopes, now,
                                    sent=step.headers.get("Authorization"))
        # FetchToken -> fetch and retry; Retry -> resend; GiveUp -> raise step.error

It learns the scheme from the first challenge (Basic or Bearer), caches tokens
per scope set until shortly before they expire, and never loops: a 401 to a
request that carried the credentials (or the live token) it would send again is
a GiveUp (DENIED when the registry said insufficient_scope, as a pull-only user
pushing gets). Requests in flight together each get their own 401 before any
of them learnt the scheme: each is retried with credentials, not refused
because another one already learnt it (``sent``: the Authorization the refused
request carried).

Identity tokens (OAuth2 refresh tokens, the distribution spec's token auth):
``ClientAuth(offline=True)`` (``docker login``) asks the token server for one
(``offline_token=true``, as dockerd's login does) and keeps it in
``refresh_token``; credentials given as :class:`IdentityToken` are one, so
tokens are fetched with a ``POST`` of ``grant_type=refresh_token`` (against a
Basic registry they are sent as the password, as before).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

from dockyard.distribution import auth as proto
from dockyard.distribution.auth import Challenge, Scope
from dockyard.distribution.errors import ErrorCode, RegistryError, parse_error_response

EXPIRY_MARGIN = 10.0  # seconds before expiry a cached token is no longer used
CLIENT_ID = "docker"  # what dockerd sends as the OAuth2 client_id


class IdentityToken(tuple):
    """Credentials ``(username, identity token)``: the token is a refresh token from an
    earlier login, not a password."""


@dataclass(frozen=True)
class Send:
    """Send the request with these headers (maybe none)."""

    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FetchToken:
    """GET ``url`` with ``headers`` (or, ``method`` POST, send ``body`` as a form),
    then hand the answer to token_fetched()."""

    url: str
    headers: dict
    scopes: tuple[Scope, ...]
    method: str = "GET"
    body: bytes | None = None


@dataclass(frozen=True)
class Retry:
    """Resend the request: before_request() now knows what to add."""


@dataclass(frozen=True)
class GiveUp:
    error: RegistryError


@dataclass
class _Token:
    scopes: tuple[Scope, ...]
    token: str
    expires_at: float


class ClientAuth:
    def __init__(self, credentials: tuple[str, str] | None = None, offline: bool = False):
        self.credentials = credentials
        self.offline = offline  # ask the token server for a refresh token (login)
        self.refresh_token: str | None = (
            credentials[1] if isinstance(credentials, IdentityToken) else None)
        self.scheme: str | None = None  # learned from the first challenge
        self.challenge: Challenge | None = None
        self._tokens: list[_Token] = []

    def _basic(self) -> dict:
        return {"Authorization": proto.basic_authorization(*self.credentials)} if self.credentials else {}

    def _cached(self, scopes: list[Scope], now: float) -> _Token | None:
        for t in self._tokens:
            if t.expires_at - EXPIRY_MARGIN > now and proto.granted(list(t.scopes), scopes):
                return t
        return None

    def before_request(self, scopes: list[Scope], now: float) -> Send | FetchToken:
        if self.scheme == "basic":
            return Send(self._basic())
        if self.scheme == "bearer":
            scopes = proto.merge_scopes(list(scopes))
            t = self._cached(scopes, now)
            if t is not None:
                return Send({"Authorization": f"Bearer {t.token}"})
            return self._fetch(scopes)
        return Send({})

    def _fetch(self, scopes: list[Scope]) -> FetchToken:
        account = self.credentials[0] if self.credentials else None
        # The URL carries exactly the scopes we ask for (the challenge's own
        # scope is already among them when it came from this request).
        bare = Challenge("bearer", {k: v for k, v in self.challenge.params.items() if k != "scope"})
        if self.refresh_token:
            # OAuth2 as the distribution spec's token auth: a form POST to the realm
            form = [("grant_type", "refresh_token"), ("refresh_token", self.refresh_token),
                    ("client_id", CLIENT_ID)]
            if bare.service:
                form.append(("service", bare.service))
            if scopes:
                form.append(("scope", " ".join(s.render() for s in scopes)))
            if self.offline:
                form.append(("access_type", "offline"))
            return FetchToken(bare.realm or "", {"Content-Type":
                                                 "application/x-www-form-urlencoded"},
                              tuple(scopes), "POST", urlencode(form).encode())
        url = proto.token_request(bare, scopes, account)
        if self.offline and self.credentials:
            url += ("&" if "?" in url else "?") + urlencode(
                [("offline_token", "true"), ("client_id", CLIENT_ID)])
        return FetchToken(url, self._basic(), tuple(scopes))

    def on_unauthorized(self, www_authenticate: str | None, scopes: list[Scope],
                        now: float, sent: str | None | object = ...) -> FetchToken | Retry | GiveUp:
        """``sent``: the Authorization header the refused request carried (None: none);
        left out, the request is taken to have carried what before_request() gives now."""
        if sent is ...:
            step = self.before_request(scopes, now) if self.scheme else Send({})
            sent = step.headers.get("Authorization") if isinstance(step, Send) else None
        challenges = proto.parse_challenges(www_authenticate or "")
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            self.scheme, self.challenge = "bearer", bearer
            needed = proto.merge_scopes(list(scopes) + bearer.scopes)
            held = self._cached(needed, now)
            if held is not None and sent != f"Bearer {held.token}":
                return Retry()   # another request got it meanwhile: this one sends it now
            if held is not None:
                # The token we hold for exactly this was just refused: asking
                # again would get the same answer. Forget it and give up.
                self._tokens.remove(held)
                if bearer.error == "insufficient_scope":
                    return GiveUp(RegistryError(ErrorCode.DENIED))
                return GiveUp(RegistryError(ErrorCode.UNAUTHORIZED, bearer.error or "token refused"))
            return self._fetch(needed)
        if basic is not None:
            if self.credentials is None or (sent is not None and sent == self._basic().get(
                    "Authorization")):
                return GiveUp(RegistryError(ErrorCode.UNAUTHORIZED,
                                            "authentication required" if self.credentials is None
                                            else "invalid username or password"))
            self.scheme = "basic"
            return Retry()
        return GiveUp(RegistryError(ErrorCode.UNAUTHORIZED, "no usable authentication challenge"))

    def token_fetched(self, fetch: FetchToken, status: int, body: bytes, now: float) -> None:
        """Record the token endpoint's answer; raises RegistryError if it refused."""
        if status != 200:
            err = parse_error_response(status, body)
            if status == 401:
                raise RegistryError(ErrorCode.UNAUTHORIZED, "token endpoint refused the credentials",
                                    status=401)
            raise err
        try:
            resp = proto.TokenResponse.from_json(json.loads(body))
        except (ValueError, AttributeError) as e:
            raise RegistryError(ErrorCode.UNAUTHORIZED, f"bad token endpoint answer: {e}") from None
        self._tokens = [t for t in self._tokens if t.scopes != fetch.scopes]
        self._tokens.append(_Token(fetch.scopes, resp.token, resp.expires_at(now)))
        if resp.refresh_token:
            self.refresh_token = resp.refresh_token
