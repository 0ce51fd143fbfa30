"""Failed logins back off per client address (429 TOOMANYREQUESTS, Retry-After,
no bcrypt for the refused ones); other addresses and good clients are unaffected."""

from __future__ import annotations

import base64
import http.client
import json
import time
from pathlib import Path

import bcrypt
import pytest

from dockyard.registry.auth import Htpasswd, LoginThrottle
from registry_helpers import running_registry

pytestmark = pytest.mark.slow

LIMIT = LoginThrottle().limit


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _get(reg, path: str, auth: str | None, source: str) -> tuple[int, dict, bytes, float]:
    """A request from loopback address ``source`` (the registry sees it as the client)."""
    c = http.client.HTTPConnection(reg.host, reg.port, timeout=60, source_address=(source, 0))
    t0 = time.monotonic()
    try:
        c.request("GET", path, headers={"Authorization": auth} if auth else {})
        r = c.getresponse()
        return r.status, dict(r.headers), r.read(), time.monotonic() - t0
    finally:
        c.close()


@pytest.fixture
def slow_htpasswd(tmp_path) -> Path:
    """Accounts with bcrypt cost 12 (~0.2 s a check): skipped checks show in the timing."""
    p = tmp_path / "htpasswd"
    p.write_text("".join(f"{u}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(12)).decode()}\n"
                         for u, pw in (("alice", "alicepw"), ("bob", "bobpw"))))
    return p


def test_failed_logins_back_off_for_that_client_only(tmp_path, slow_htpasswd):
    with running_registry(tmp_path / "root", "--auth", "basic", "--htpasswd", str(slow_htpasswd)) as reg:
        bad, good = _basic("alice", "wrong"), _basic("alice", "alicepw")
        checked = []
        for _ in range(LIMIT):
            status, _h, _b, took = _get(reg, "/v2/", bad, "127.0.0.2")
            assert status == 401
            checked.append(took)
        refused = []
        for _ in range(20):
            status, headers, body, took = _get(reg, "/v2/", bad, "127.0.0.2")
            assert status == 429
            assert json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
            assert 1 <= int(headers["Retry-After"]) <= 60
            refused.append(took)
        # no bcrypt for the refused ones
        assert sorted(refused)[10] < sorted(checked)[LIMIT // 2] / 2, (checked, refused)
        # a good password from that address is not checked either (it has not passed before)
        assert _get(reg, "/v2/", _basic("bob", "bobpw"), "127.0.0.2")[0] == 429
        # other clients: unaffected, right or wrong
        assert _get(reg, "/v2/", good, "127.0.0.3")[0] == 200
        assert _get(reg, "/v2/", bad, "127.0.0.3")[0] == 401
        assert _get(reg, "/v2/", None, "127.0.0.3")[0] == 401
        # without credentials there is nothing to check: the usual challenge
        assert _get(reg, "/v2/", None, "127.0.0.2")[0] == 401


def test_token_endpoint_backs_off_too(tmp_path, slow_htpasswd):
    with running_registry(tmp_path / "root", "--auth", "token", "--htpasswd", str(slow_htpasswd)) as reg:
        bad = _basic("alice", "wrong")
        codes = [_get(reg, "/v2/token?scope=repository:a/b:pull", bad, "127.0.0.5")[0]
                 for _ in range(LIMIT + 3)]
        assert codes == [401] * LIMIT + [429] * 3, codes
        status, _h, body, _t = _get(reg, "/v2/token?scope=repository:a/b:pull",
                                    _basic("alice", "alicepw"), "127.0.0.6")
        assert status == 200 and json.loads(body)["token"]


def test_good_credentials_pay_bcrypt_once(tmp_path, slow_htpasswd):
    with running_registry(tmp_path / "root", "--auth", "basic", "--htpasswd", str(slow_htpasswd)) as reg:
        good = _basic("alice", "alicepw")
        first = _get(reg, "/v2/", good, "127.0.0.7")
        assert first[0] == 200
        later = [_get(reg, "/v2/", good, "127.0.0.7") for _ in range(10)]
        assert all(r[0] == 200 for r in later)
        assert sorted(r[3] for r in later)[5] < first[3] / 2


def test_throttle_window_and_bound():
    now = [1000.0]
    t = LoginThrottle(limit=3, window=10.0, max_clients=2, clock=lambda: now[0])
    for _ in range(3):
        t.check("a")
        t.failed("a")
    with pytest.raises(Exception) as e:
        t.check("a")
    assert e.value.status == 429 and e.value.headers["Retry-After"] == "10"
    now[0] += 4
    assert t.retry_after("a") == 6
    now[0] += 6.5
    t.check("a")                       # the oldest failures left the window
    t.failed("b")
    t.failed("c")                      # a third address: the least recent one goes
    assert len(t._fails) <= 2 and "a" not in t._fails


def test_remembered_credentials_expire(tmp_path):
    p = tmp_path / "htpasswd"
    p.write_text(f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}\n")
    now = [0.0]
    h = Htpasswd(p, clock=lambda: now[0])
    assert not h.remembered("alice", "pw")
    assert h.verify("alice", "pw") and h.remembered("alice", "pw")
    assert not h.remembered("alice", "other") and not h.verify("alice", "other")
    now[0] += Htpasswd.REMEMBER + 1
    assert not h.remembered("alice", "pw")
