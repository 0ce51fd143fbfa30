"""Authentication pieces of the distribution protocol, without I/O.

- ``WWW-Authenticate`` challenges: :func:`parse_challenges` (client side) and
  :meth:`Challenge.render` / :func:`bearer_challenge` (server side).
- Basic credentials: :func:`basic_authorization`, :func:`parse_basic_authorization`.
- Token scopes ``repository:<name>:pull,push``: :class:`Scope`.
- The token endpoint: :func:`token_request` (what a client asks, from a
  challenge) and :class:`TokenResponse` (what it answers).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

PULL = "pull"
PUSH = "push"
DELETE = "delete"
ALL = "*"


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lowercased
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> list["Scope"]:
        return parse_scopes(self.params.get("scope", ""))

    @property
    def error(self) -> str | None:
        return self.params.get("error")

    def render(self) -> str:
        scheme = self.scheme.capitalize()
        if not self.params:
            return scheme
        parts = []
        for k, v in self.params.items():
            escaped = v.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{k}="{escaped}"')
        return f"{scheme} " + ",".join(parts)


def basic_challenge(realm: str = "Registry Realm") -> Challenge:
    return Challenge("basic", {"realm": realm})


def bearer_challenge(realm: str, service: str, scopes: list["Scope"] = (),
                     error: str | None = None) -> Challenge:
    params = {"realm": realm, "service": service}
    if scopes:
        params["scope"] = " ".join(s.render() for s in scopes)
    if error:
        params["error"] = error
    return Challenge("bearer", params)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(,)?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value into challenges (one header may carry several).

    Tolerant of what registries send: quoted or bare values, escapes, spaces.
    """
    challenges: list[Challenge] = []
    pos = 0
    n = len(header)
    while pos < n:
        while pos < n and header[pos] in " ,\t":
            pos += 1
        if pos >= n:
            break
        m = _SCHEME_RE.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < n:
            pm = _PARAM_RE.match(header, pos)
            if not pm:
                break
            # "Basic realm=x, Bearer realm=y": a bare token followed by a space is
            # the next scheme, which the param regex would not match (no '=').
            value = pm.group(2)
            if value is not None:
                value = re.sub(r"\\(.)", r"\1", value)
            else:
                value = pm.group(3)
            params[pm.group(1).lower()] = value
            pos = pm.end()
            if pm.group(4) is None:
                break
        challenges.append(Challenge(scheme, params))
    return challenges


def basic_authorization(username: str, password: str) -> str:
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def parse_basic_authorization(header: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic ...`` -> (user, password); None if absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = raw.partition(":")
    if not sep:
        return None
    return user, password


def parse_bearer_authorization(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@dataclass(frozen=True)
class Scope:
    """``<type>:<name>:<actions>``, e.g. ``repository:a/b:pull,push`` or ``registry:catalog:*``."""

    type: str
    name: str
    actions: frozenset[str]

    @classmethod
    def repository(cls, name: str, *actions: str) -> "Scope":
        return cls("repository", name, frozenset(actions))

    @classmethod
    def parse(cls, value: str) -> "Scope":
        # The name may itself hold a ':' (a host:port prefix): type is up to the
        # first ':', actions after the last.
        typ, sep1, rest = value.partition(":")
        name, sep2, actions = rest.rpartition(":")
        if not (sep1 and sep2 and typ and name):
            raise ValueError(f"invalid scope {value!r}")
        return cls(typ, name, frozenset(a for a in actions.split(",") if a))

    def render(self) -> str:
        order = {PULL: 0, PUSH: 1, DELETE: 2}
        acts = ",".join(sorted(self.actions, key=lambda a: (order.get(a, 9), a)))
        return f"{self.type}:{self.name}:{acts}"

    def covers(self, other: "Scope") -> bool:
        """True if this grant allows everything ``other`` asks for."""
        if (self.type, self.name) != (other.type, other.name):
            return False
        return ALL in self.actions or other.actions <= self.actions

    def __str__(self) -> str:
        return self.render()


def parse_scopes(value: str | list[str]) -> list[Scope]:
    """Several scopes: space separated in one string, or repeated query params."""
    items = value.split() if isinstance(value, str) else [p for v in value for p in v.split()]
    out = []
    for item in items:
        try:
            out.append(Scope.parse(item))
        except ValueError:
            continue
    return merge_scopes(out)


def merge_scopes(scopes: list[Scope]) -> list[Scope]:
    """Union of actions per (type, name), order kept."""
    merged: dict[tuple[str, str], set[str]] = {}
    for s in scopes:
        merged.setdefault((s.type, s.name), set()).update(s.actions)
    return [Scope(t, n, frozenset(a)) for (t, n), a in merged.items()]


def scopes_from_claims(access: list[dict]) -> list[Scope]:
    """A token's ``access`` claim -> scopes."""
    out = []
    for entry in access or []:
        try:
            out.append(Scope(str(entry["type"]), str(entry["name"]),
                             frozenset(str(a) for a in entry.get("actions") or [])))
        except (KeyError, TypeError):
            continue
    return out


def claims_from_scopes(scopes: list[Scope]) -> list[dict]:
    return [{"type": s.type, "name": s.name, "actions": sorted(s.actions)} for s in scopes]


def granted(grants: list[Scope], needed: list[Scope]) -> bool:
    return all(any(g.covers(n) for g in grants) for n in needed)


def token_request(challenge: Challenge, scopes: list[Scope] = (), account: str | None = None) -> str:
    """The URL a client GETs for a token, from a Bearer challenge."""
    params: list[tuple[str, str]] = []
    if challenge.service:
        params.append(("service", challenge.service))
    for s in merge_scopes(list(challenge.scopes) + list(scopes)):
        params.append(("scope", s.render()))
    if account:
        params.append(("account", account))
    realm = challenge.realm or ""
    if not params:
        return realm
    return realm + ("&" if "?" in realm else "?") + urlencode(params)


@dataclass(frozen=True)
class TokenResponse:
    token: str
    expires_in: int = 60
    issued_at: str | None = None
    refresh_token: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> "TokenResponse":
        token = data.get("token") or data.get("access_token")
        if not token:
            raise ValueError("token endpoint answered without a token")
        try:
            expires = int(data.get("expires_in") or 60)
        except (TypeError, ValueError):
            expires = 60
        return cls(token, max(expires, 60), data.get("issued_at"), data.get("refresh_token"))

    def to_json(self) -> dict:
        d = {"token": self.token, "access_token": self.token, "expires_in": self.expires_in}
        if self.issued_at:
            d["issued_at"] = self.issued_at
        if self.refresh_token:
            d["refresh_token"] = self.refresh_token
        return d

    def expires_at(self, received_at: float | None = None) -> float:
        return (received_at if received_at is not None else time.time()) + self.expires_in
