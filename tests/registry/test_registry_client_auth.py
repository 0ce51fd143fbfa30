"""The client-side auth state machine: alone, then driving real requests
against token and basic registries (the way the daemon's pull/push will)."""

from __future__ import annotations

import json
import os
import urllib.parse

import pytest

from dockyard.distribution import auth as proto
from dockyard.distribution.client import ClientAuth, FetchToken, GiveUp, Retry, Send
from dockyard.distribution.errors import ErrorCode, RegistryError
from registry_helpers import running_registry, sha256

PULL = [proto.Scope.repository("a", "pull")]
PUSH = [proto.Scope.repository("a", "pull", "push")]
CH = 'Bearer realm="http://r/token",service="svc"'


def token_body(tok="T", expires=300):
    return json.dumps({"token": tok, "expires_in": expires}).encode()


def test_no_challenge_yet_sends_nothing():
    assert ClientAuth(("u", "p")).before_request(PULL, 0) == Send({})


def test_bearer_fetch_cache_and_expiry():
    a = ClientAuth(("u", "p"))
    step = a.on_unauthorized(CH + ',scope="repository:a:pull"', PULL, now=0)
    assert isinstance(step, FetchToken)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(step.url).query)
    assert q == {"service": ["svc"], "scope": ["repository:a:pull"], "account": ["u"]}
    assert step.headers["Authorization"] == proto.basic_authorization("u", "p")
    a.token_fetched(step, 200, token_body("T1"), now=0)
    assert a.before_request(PULL, 10) == Send({"Authorization": "Bearer T1"})
    # a wider scope needs a new token; the old one still serves pulls
    step = a.before_request(PUSH, 10)
    assert isinstance(step, FetchToken) and "repository%3Aa%3Apull%2Cpush" in step.url
    a.token_fetched(step, 200, token_body("T2"), now=10)
    assert a.before_request(PUSH, 20) == Send({"Authorization": "Bearer T2"})
    # close to expiry: fetch again
    assert a.before_request(PULL, 295) == Send({"Authorization": "Bearer T2"})  # T2 covers pull
    assert isinstance(a.before_request(PULL, 305), FetchToken)


def test_refused_token_gives_up_instead_of_looping():
    a = ClientAuth(("bob", "p"))
    step = a.on_unauthorized(CH, PUSH, now=0)
    a.token_fetched(step, 200, token_body(), now=0)
    step = a.on_unauthorized(CH + ',scope="repository:a:pull,push",error="insufficient_scope"', PUSH, now=1)
    assert isinstance(step, GiveUp) and step.error.code is ErrorCode.DENIED
    # the refused token is forgotten: a later attempt asks again
    assert isinstance(a.before_request(PUSH, 2), FetchToken)


def test_token_endpoint_refusal_raises():
    a = ClientAuth(("u", "wrong"))
    step = a.on_unauthorized(CH, PULL, now=0)
    with pytest.raises(RegistryError) as e:
        a.token_fetched(step, 401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', now=0)
    assert e.value.code is ErrorCode.UNAUTHORIZED
    with pytest.raises(RegistryError):
        a.token_fetched(step, 200, b"{}", now=0)


def test_basic_scheme():
    a = ClientAuth(("u", "p"))
    assert a.on_unauthorized('Basic realm="x"', PULL, now=0) == Retry()
    assert a.before_request(PULL, 0) == Send({"Authorization": proto.basic_authorization("u", "p")})
    step = a.on_unauthorized('Basic realm="x"', PULL, now=0)
    assert isinstance(step, GiveUp) and step.error.code is ErrorCode.UNAUTHORIZED
    step = ClientAuth().on_unauthorized('Basic realm="x"', PULL, now=0)
    assert isinstance(step, GiveUp)
    assert isinstance(ClientAuth().on_unauthorized("Negotiate", PULL, now=0), GiveUp)


def test_anonymous_bearer_fetches_without_credentials():
    step = ClientAuth().on_unauthorized(CH, PULL, now=0)
    assert isinstance(step, FetchToken) and step.headers == {} and "account" not in step.url


# -- driven against real registries ---------------------------------------------------------

def authed_request(reg, auth: ClientAuth, method, path, scopes, body=None, headers=None):
    """What a client does: ask the state machine, send, handle 401 -- with
    the sockets here and the decisions there."""
    import time
    c = reg.client()
    for _ in range(4):
        now = time.time()
        step = auth.before_request(scopes, now)
        if isinstance(step, FetchToken):
            r = c.request(step.method,
                          urllib.parse.urlsplit(step.url)._replace(scheme="", netloc="").geturl(),
                          step.body, headers=step.headers)
            auth.token_fetched(step, r.status, r.body, now)
            continue
        r = c.request(method, path, body, {**(headers or {}), **step.headers})
        if r.status != 401:
            return r
        nxt = auth.on_unauthorized(r.headers.get("WWW-Authenticate"), scopes, now)
        if isinstance(nxt, GiveUp):
            raise nxt.error
        if isinstance(nxt, FetchToken):
            tr = c.request(nxt.method,
                           urllib.parse.urlsplit(nxt.url)._replace(scheme="", netloc="").geturl(),
                           nxt.body, headers=nxt.headers)
            auth.token_fetched(nxt, tr.status, tr.body, now)
    raise AssertionError("too many rounds")


@pytest.mark.parametrize("mode", ["token", "basic"])
def test_client_auth_against_registry(tmp_path, htpasswd, mode):
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"alice": ["pull", "push"], "bob": ["pull"]}))
    with running_registry(tmp_path / "root", "--auth", mode, "--htpasswd", str(htpasswd),
                          "--access", str(access)) as reg:
        scopes = [proto.Scope.repository("c/app", "pull", "push")]
        alice = ClientAuth(("alice", "alicepw"))
        assert authed_request(reg, alice, "GET", "/v2/", []).status == 200
        data = os.urandom(1000)
        r = authed_request(reg, alice, "POST", f"/v2/c/app/blobs/uploads/?digest={sha256(data)}", scopes, data)
        assert r.status == 201
        bob = ClientAuth(("bob", "bobpw"))
        r = authed_request(reg, bob, "GET", f"/v2/c/app/blobs/{sha256(data)}",
                           [proto.Scope.repository("c/app", "pull")])
        assert r.status == 200 and r.body == data
        if mode == "token":
            with pytest.raises(RegistryError) as e:
                authed_request(reg, bob, "POST", "/v2/c/app/blobs/uploads/", scopes)
            assert e.value.code is ErrorCode.DENIED
        else:
            assert authed_request(reg, bob, "POST", "/v2/c/app/blobs/uploads/", scopes).codes == ["DENIED"]
        with pytest.raises(RegistryError) as e:
            authed_request(reg, ClientAuth(("alice", "nope")), "GET", "/v2/", [])
        assert e.value.code is ErrorCode.UNAUTHORIZED


def test_requests_in_flight_together_are_each_retried_with_credentials():
    """A push's parallel layer requests go out before any 401 came back: each gets its
    own challenge and each is retried with credentials (not refused because another one
    already learnt the scheme); only a request that carried the credentials gives up."""
    basic = 'Basic realm="x"'
    a = ClientAuth(("u", "p"))
    sent = [a.before_request(PUSH, 0).headers.get("Authorization") for _ in range(3)]
    assert sent == [None, None, None]
    for s in sent:
        assert a.on_unauthorized(basic, PUSH, now=0, sent=s) == Retry()
    creds = a.before_request(PUSH, 0).headers["Authorization"]
    step = a.on_unauthorized(basic, PUSH, now=0, sent=creds)
    assert isinstance(step, GiveUp) and step.error.code is ErrorCode.UNAUTHORIZED
    # bearer: the first 401 fetches the token, the others send it
    b = ClientAuth(("u", "p"))
    first = b.on_unauthorized(CH, PUSH, now=0, sent=None)
    assert isinstance(first, FetchToken)
    b.token_fetched(first, 200, json.dumps({"token": "T1", "expires_in": 300}).encode(), now=0)
    assert b.on_unauthorized(CH, PUSH, now=1, sent=None) == Retry()
    assert b.before_request(PUSH, 1) == Send({"Authorization": "Bearer T1"})
    refused = b.on_unauthorized(CH, PUSH, now=1, sent="Bearer T1")
    assert isinstance(refused, GiveUp)


def test_identity_token_sans_io():
    """Login asks for a refresh token (offline_token=true); identity-token credentials
    fetch tokens with an OAuth2 refresh_token POST (distribution's token auth)."""
    from dockyard.distribution.client import IdentityToken

    a = ClientAuth(("alice", "pw"), offline=True)
    step = a.on_unauthorized(CH, [], now=0)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(step.url).query)
    assert step.method == "GET" and q["offline_token"] == ["true"] and q["client_id"] == ["docker"]
    a.token_fetched(step, 200, json.dumps({"token": "T", "refresh_token": "R1"}).encode(), now=0)
    assert a.refresh_token == "R1"

    b = ClientAuth(IdentityToken(("alice", "R1")))
    step = b.on_unauthorized(CH, PULL, now=0)
    assert step.method == "POST" and step.url == "http://r/token"
    form = urllib.parse.parse_qs(step.body.decode())
    assert form == {"grant_type": ["refresh_token"], "refresh_token": ["R1"],
                    "client_id": ["docker"], "service": ["svc"], "scope": ["repository:a:pull"]}
    assert "Authorization" not in step.headers   # the password is not sent anywhere
    b.token_fetched(step, 200, token_body("T2"), now=0)
    assert b.before_request(PULL, now=1) == Send({"Authorization": "Bearer T2"})
    # against a Basic registry the identity token is the password, as before
    c = ClientAuth(IdentityToken(("alice", "R1")))
    assert c.on_unauthorized('Basic realm="x"', [], now=0) == Retry()
    assert c.before_request([], now=0).headers["Authorization"] == \
        proto.basic_authorization("alice", "R1")


def test_identity_token_against_registry(tmp_path, htpasswd):
    """Our token server gives a refresh token to a login that asks, and takes it back in
    a refresh_token grant; a forged one is refused."""
    from dockyard.distribution.client import IdentityToken

    access = tmp_path / "access.json"
    access.write_text(json.dumps({"alice": ["pull", "push"]}))
    with running_registry(tmp_path / "root", "--auth", "token", "--htpasswd", str(htpasswd),
                          "--access", str(access)) as reg:
        login = ClientAuth(("alice", "alicepw"), offline=True)
        assert authed_request(reg, login, "GET", "/v2/", []).status == 200
        assert login.refresh_token
        plain = ClientAuth(("alice", "alicepw"))
        authed_request(reg, plain, "GET", "/v2/", [])
        assert plain.refresh_token is None   # only when asked (offline)
        ident = ClientAuth(IdentityToken(("alice", login.refresh_token)))
        scopes = [proto.Scope.repository("c/app", "pull", "push")]
        data = os.urandom(100)
        r = authed_request(reg, ident, "POST", f"/v2/c/app/blobs/uploads/?digest={sha256(data)}",
                           scopes, data)
        assert r.status == 201
        with pytest.raises(RegistryError) as e:
            authed_request(reg, ClientAuth(IdentityToken(("alice", "forged"))), "GET", "/v2/", [])
        assert e.value.code is ErrorCode.UNAUTHORIZED
