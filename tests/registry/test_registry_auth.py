"""Auth against a real registry process: htpasswd basic auth, the Docker token
flow (signature, expiry, audience, scope), access rules, anonymous reads, TLS."""

from __future__ import annotations

import json
import time
import urllib.parse

import jwt
import pytest

from dockyard.distribution.auth import parse_challenges
from registry_helpers import Client, basic, running_registry


@pytest.fixture
def access_file(tmp_path):
    p = tmp_path / "access.json"
    p.write_text(json.dumps({"alice": ["pull", "push", "delete"], "bob": ["pull"]}))
    return p


def test_basic_auth(tmp_path, htpasswd, access_file):
    with running_registry(tmp_path / "root", "--auth", "basic", "--htpasswd", str(htpasswd),
                          "--access", str(access_file)) as reg:
        anon = reg.client()
        r = anon.request("GET", "/v2/")
        assert r.status == 401 and r.codes == ["UNAUTHORIZED"]
        (ch,) = parse_challenges(r.headers["WWW-Authenticate"])
        assert ch.scheme == "basic" and ch.realm
        wrong = reg.client(auth=basic("alice", "nope"))
        assert wrong.request("GET", "/v2/").status == 401
        assert reg.client(auth=basic("mallory", "x")).request("GET", "/v2/").status == 401
        alice = reg.client(auth=basic("alice", "alicepw"))
        assert alice.request("GET", "/v2/").status == 200
        md, _ = alice.push_image("team/app", "v1")
        bob = reg.client(auth=basic("bob", "bobpw"))
        assert bob.request("GET", f"/v2/team/app/manifests/{md}").status == 200
        r = bob.request("POST", "/v2/team/app/blobs/uploads/")
        assert r.status == 403 and r.codes == ["DENIED"]
        assert bob.request("DELETE", f"/v2/team/app/manifests/{md}").status == 403
        assert anon.request("GET", f"/v2/team/app/manifests/{md}").status == 401
        assert alice.request("GET", "/v2/_catalog").json() == {"repositories": ["team/app"]}


def test_basic_auth_with_anonymous_read(tmp_path, htpasswd):
    with running_registry(tmp_path / "root", "--auth", "basic", "--htpasswd", str(htpasswd),
                          "--anonymous-read") as reg:
        alice = reg.client(auth=basic("alice", "alicepw"))
        md, _ = alice.push_image("pub/app", "v1")
        anon = reg.client()
        assert anon.request("GET", "/v2/pub/app/manifests/v1").status == 200
        assert anon.request("POST", "/v2/pub/app/blobs/uploads/").status == 401
        # the version check still asks for credentials, so clients learn to log in
        assert anon.request("GET", "/v2/").status == 401
        assert anon.request("GET", "/v1/search?q=app").json()["num_results"] == 1


def get_token(reg, scopes=(), creds=None, service="dockyard-registry"):
    q = [("service", service)] + [("scope", s) for s in scopes]
    c = reg.client(auth=creds)
    return c.request("GET", "/token?" + urllib.parse.urlencode(q))


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture
def token_registry(tmp_path, htpasswd, access_file):
    with running_registry(tmp_path / "root", "--auth", "token", "--htpasswd", str(htpasswd),
                          "--access", str(access_file)) as reg:
        yield reg


def test_token_flow(token_registry):
    reg = token_registry
    anon = reg.client()
    r = anon.request("GET", "/v2/")
    assert r.status == 401
    (ch,) = parse_challenges(r.headers["WWW-Authenticate"])
    assert ch.scheme == "bearer" and ch.realm == f"http://{reg.addr}/token"
    assert ch.service == "dockyard-registry"
    # the challenge names the scope the request needs
    r = anon.request("POST", "/v2/team/app/blobs/uploads/")
    (ch,) = parse_challenges(r.headers["WWW-Authenticate"])
    assert ch.params["scope"] == "repository:team/app:pull,push"

    t = get_token(reg, ["repository:team/app:pull,push"], basic("alice", "alicepw"))
    assert t.status == 200
    body = t.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]
    assert claims["sub"] == "alice" and claims["aud"] == "dockyard-registry"
    assert jwt.get_unverified_header(body["token"])["alg"] == "ES256"
    # the same endpoint answers under /v2/token
    t2 = reg.client(auth=basic("alice", "alicepw")).request(
        "GET", "/v2/token?service=dockyard-registry&scope=repository:team/app:pull&account=alice")
    assert t2.status == 200 and jwt.decode(t2.json()["token"], options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull"]}]
    alice = reg.client(auth=bearer(body["token"]))
    assert alice.request("GET", "/v2/").status == 200
    md, _ = alice.push_image("team/app", "v1")
    # the token is scoped: another repository needs another token
    r = alice.request("GET", "/v2/other/tags/list")
    assert r.status == 401
    assert parse_challenges(r.headers["WWW-Authenticate"])[0].params["scope"] == "repository:other:pull"

    # bob may only pull: asking for push gets a token without push
    t = get_token(reg, ["repository:team/app:pull,push"], basic("bob", "bobpw"))
    claims = jwt.decode(t.json()["token"], options={"verify_signature": False})
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    bob = reg.client(auth=bearer(t.json()["token"]))
    assert bob.request("GET", f"/v2/team/app/manifests/{md}").status == 200
    r = bob.request("POST", "/v2/team/app/blobs/uploads/")
    assert r.status == 401 and r.codes == ["UNAUTHORIZED"]
    assert parse_challenges(r.headers["WWW-Authenticate"])[0].error == "insufficient_scope"


def test_token_faults(token_registry, tmp_path):
    reg = token_registry
    # wrong password and unknown users get no token
    assert get_token(reg, ["repository:a:pull"], basic("alice", "wrong")).status == 401
    assert get_token(reg, ["repository:a:pull"], basic("eve", "x")).status == 401
    # no credentials and no anonymous access: a token that grants nothing
    anon = get_token(reg, ["repository:a:pull"])
    assert anon.status == 200
    assert jwt.decode(anon.json()["token"], options={"verify_signature": False})["access"] == []
    r = reg.client(auth=bearer(anon.json()["token"])).request("GET", "/v2/a/tags/list")
    assert r.status == 401
    assert parse_challenges(r.headers["WWW-Authenticate"])[0].error == "insufficient_scope"
    assert get_token(reg, [], basic("alice", "alicepw"), service="elsewhere").status == 400

    key = (reg.root / "auth" / "token-key.pem").read_bytes()
    now = int(time.time())
    good = {"iss": "dockyard-token-issuer", "sub": "alice", "aud": "dockyard-registry",
            "iat": now, "nbf": now - 1, "exp": now + 300,
            "access": [{"type": "repository", "name": "a", "actions": ["pull", "push"]}]}

    def status_with(claims, signing_key=key, alg="ES256"):
        tok = jwt.encode(claims, signing_key, algorithm=alg)
        return reg.client(auth=bearer(tok)).request("GET", "/v2/a/tags/list")

    assert status_with(good).codes == ["NAME_UNKNOWN"]  # the hand-made token is accepted
    expired = status_with({**good, "iat": now - 600, "exp": now - 300})
    assert expired.status == 401
    assert parse_challenges(expired.headers["WWW-Authenticate"])[0].error == "invalid_token"
    assert status_with({**good, "aud": "another-service"}).status == 401
    assert status_with({**good, "iss": "someone-else"}).status == 401
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert status_with(good, other).status == 401
    assert status_with(good, b"a-shared-secret-of-at-least-32-bytes!", "HS256").status == 401  # no algorithm confusion
    assert reg.client(auth="Bearer not-a-jwt").request("GET", "/v2/").status == 401


def test_oauth_post_and_refresh(token_registry):
    reg = token_registry
    c = reg.client()
    form = urllib.parse.urlencode({"grant_type": "password", "username": "alice", "password": "alicepw",
                                   "service": "dockyard-registry", "client_id": "test",
                                   "access_type": "offline", "scope": "repository:x:pull"}).encode()
    r = c.request("POST", "/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200
    body = r.json()
    assert body["access_token"] and body["refresh_token"] and body["scope"] == "repository:x:pull"
    form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                   "service": "dockyard-registry", "scope": "repository:x:pull,push"}).encode()
    r = c.request("POST", "/token", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200 and r.json()["scope"] == "repository:x:pull,push"
    bad = urllib.parse.urlencode({"grant_type": "password", "username": "alice", "password": "no"}).encode()
    assert c.request("POST", "/token", bad, {"Content-Type": "application/x-www-form-urlencoded"}).status == 401


def test_token_anonymous_read(tmp_path, htpasswd):
    with running_registry(tmp_path / "root", "--auth", "token", "--htpasswd", str(htpasswd),
                          "--anonymous-read") as reg:
        t = get_token(reg, ["repository:pub:pull,push"], basic("alice", "alicepw")).json()["token"]
        reg.client(auth=bearer(t)).push_image("pub", "v1")
        anon_tok = get_token(reg, ["repository:pub:pull,push"])
        assert anon_tok.status == 200
        claims = jwt.decode(anon_tok.json()["token"], options={"verify_signature": False})
        assert claims["access"] == [{"type": "repository", "name": "pub", "actions": ["pull"]}]
        anon = reg.client(auth=bearer(anon_tok.json()["token"]))
        assert anon.request("GET", "/v2/pub/manifests/v1").status == 200
        assert anon.request("POST", "/v2/pub/blobs/uploads/").status == 401


def test_tls(tmp_path, htpasswd):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    with running_registry(tmp_path / "root", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key",
                          str(tmp_path / "k.pem"), "--auth", "token", "--htpasswd", str(htpasswd)) as reg:
        assert reg.scheme == "https"
        c = Client(reg.host, reg.port, tls=True)
        r = c.request("GET", "/v2/")
        assert r.status == 401
        assert parse_challenges(r.headers["WWW-Authenticate"])[0].realm == f"https://{reg.addr}/token"
        t = c.request("GET", "/token?scope=repository:s:pull,push", headers={"Authorization": basic("alice", "alicepw")})
        tc = Client(reg.host, reg.port, tls=True, auth=bearer(t.json()["token"]))
        data = b"x" * 200_000
        d = tc.push_blob("s", data)
        assert tc.request("GET", f"/v2/s/blobs/{d}").body == data
        assert tc.request("GET", f"/v2/s/blobs/{d}", headers={"Range": "bytes=5-9"}).body == b"xxxxx"
        # plain HTTP to a TLS port does not work
        with pytest.raises(Exception):
            Client(reg.host, reg.port).request("GET", "/v2/")
