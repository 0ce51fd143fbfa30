"""Who may use the dashboard: every action and stream answers 401 and changes
nothing without a session, without the CSRF token or with a wrong one; another
origin gets 403; logins by token and htpasswd; TLS required off loopback."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from conftest import running_ui

sys.path.insert(0, str(Path(__file__).parents[1] / "daemon"))
sys.path.insert(0, str(Path(__file__).parents[1] / "registry"))


def login(ui, verify=True) -> tuple[requests.Session, str]:
    s = requests.Session()
    s.verify = verify
    r = s.get(ui.login_url, allow_redirects=False)
    assert r.status_code == 302, r.text
    page = s.get(ui.url + "/")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    return s, csrf


@pytest.fixture(scope="module")
def things(engine, tmp_path_factory):
    """A running container, a stopped one, an image tag, a network and a volume (where
    the engine has volumes) that the refused requests would change."""
    n = uuid.uuid4().hex[:6]
    run, stopped = f"sec-run-{n}", f"sec-stop-{n}"
    engine.docker("run", "-d", "--name", run, "--network", "none", "busybox", "sleep", "1000")
    engine.docker("create", "--name", stopped, "--network", "none", "busybox", "true")
    engine.docker("tag", "busybox", f"sec/img:{n}")
    has_net = engine.docker("network", "create", "--internal", f"secnet{n}", check=False).returncode == 0
    has_vol = engine.docker("volume", "create", f"secvol{n}", check=False).returncode == 0
    yield {"run": run, "stopped": stopped, "image": f"sec/img:{n}", "net": f"secnet{n}" if has_net else None,
           "vol": f"secvol{n}" if has_vol else None, "n": n}
    engine.docker("rm", "-f", run, stopped, check=False)
    engine.docker("rmi", f"sec/img:{n}", check=False)
    if has_net:
        engine.docker("network", "rm", f"secnet{n}", check=False)
    if has_vol:
        engine.docker("volume", "rm", f"secvol{n}", check=False)


def _snapshot(engine, t) -> dict:
    def st(name):
        return engine.out("inspect", "-f", "{{.State.Status}} {{len .ExecIDs}}", name)
    return {"run": st(t["run"]), "stopped": st(t["stopped"]),
            "images": sorted(engine.out("images", "--format", "{{.Repository}}:{{.Tag}}").split()),
            "nets": sorted(engine.docker("network", "ls", "-q", check=False).stdout.split()),
            "vols": sorted(engine.docker("volume", "ls", "-q", check=False).stdout.split())}


def _context_tar() -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"FROM busybox\nRUN touch /built\n"
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _requests(t) -> list[tuple[str, str, dict]]:
    run, stopped, img = t["run"], t["stopped"], t["image"]
    reqs = [("POST", f"/api/containers/{stopped}/start", {})]
    reqs += [("POST", f"/api/containers/{run}/{a}", {}) for a in ("stop", "restart", "pause", "kill")]
    reqs += [("POST", f"/api/containers/{run}/unpause", {}),
             ("DELETE", f"/api/containers/{stopped}?force=1", {}),
             ("DELETE", f"/api/containers/{run}?force=1", {}),
             ("POST", "/api/images/pull", {"json": {"image": "127.0.0.1:1/none/such:v1"}}),
             ("POST", "/api/images/push", {"json": {"image": img}}),
             ("POST", "/api/images/tag", {"json": {"source": img, "repo": "sec/other", "tag": t["n"]}}),
             ("DELETE", f"/api/image?ref={img}&force=1", {}),
             ("DELETE", "/api/image?ref=busybox&force=1", {})]
    reqs += [("POST", f"/api/prune/{k}", {}) for k in ("containers", "images", "volumes", "networks", "build")]
    reqs.append(("POST", f"/api/build?t=sec/built:{t['n']}&dockerfile=Dockerfile",
                 {"data": _context_tar(), "headers": {"Content-Type": "application/x-tar"}}))
    if t["net"]:
        reqs.append(("DELETE", f"/api/network?id={t['net']}", {}))
    if t["vol"]:
        reqs.append(("DELETE", f"/api/volume?name={t['vol']}&force=1", {}))
    # reads and streams need the session too
    reqs += [("GET", p, {}) for p in (
        "/api/containers", f"/api/containers/{run}", f"/api/containers/{run}/top",
        f"/api/containers/{run}/changes", "/api/images", f"/api/image?ref={img}", "/api/volumes",
        "/api/networks", "/api/system", f"/api/containers/{run}/logs?follow=1", f"/api/stats?ids={run}",
        "/api/events")]
    reqs.append(("GET", f"/api/containers/{run}/terminal?cmd=touch%20/pwned",
                 {"headers": {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}}))
    return reqs


def test_every_action_refused_without_session_or_csrf(engine, ui, things):
    before = _snapshot(engine, things)
    s, csrf = login(ui)
    anon = requests.Session()
    for method, path, kw in _requests(things):
        h = dict(kw.get("headers") or {})
        kws = {k: v for k, v in kw.items() if k != "headers"}
        variants = {
            "no session": (anon, h),
            "no session, right token": (anon, {**h, "X-CSRF-Token": csrf}),
            "session, no token": (s, h),
            "session, wrong token": (s, {**h, "X-CSRF-Token": "x" + csrf[1:]}),
        }
        for what, (sess, headers) in variants.items():
            r = sess.request(method, ui.url + path, headers=headers, timeout=10, stream=True, **kws)
            assert r.status_code == 401, (what, method, path, r.status_code, r.text[:200])
            r.close()
        # the token in the query (how EventSource and WebSocket send it) without the cookie
        sep = "&" if "?" in path else "?"
        r = anon.request(method, f"{ui.url}{path}{sep}csrf={csrf}", headers=h, timeout=10, stream=True, **kws)
        assert r.status_code == 401, ("query token, no session", method, path, r.status_code)
        r.close()
        # another site's page, through the user's browser (session cookie and all)
        if method != "GET":
            r = s.request(method, ui.url + path, headers={**h, "X-CSRF-Token": csrf, "Origin": "http://evil.example"},
                          timeout=10, stream=True, **kws)
            assert r.status_code == 403, ("cross origin", method, path, r.status_code)
            r.close()
    assert _snapshot(engine, things) == before
    assert engine.docker("exec", things["run"], "test", "-e", "/pwned", check=False).returncode == 1


def test_page_and_logout_need_the_session(engine, ui):
    r = requests.get(ui.url + "/", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    s, csrf = login(ui)
    assert s.get(ui.url + "/api/containers", headers={"X-CSRF-Token": csrf}).status_code == 200
    # logout needs the token too
    assert s.post(ui.url + "/logout", data={}, allow_redirects=False).status_code == 401
    assert s.get(ui.url + "/api/containers", headers={"X-CSRF-Token": csrf}).status_code == 200
    r = s.post(ui.url + "/logout", data={"csrf": csrf}, allow_redirects=False)
    assert r.status_code == 302
    s.cookies.clear()
    # the old cookie no longer works either
    old = requests.Session()
    assert old.get(ui.url + "/api/containers", headers={"X-CSRF-Token": csrf}).status_code == 401


def test_cookie_flags_and_headers(engine, ui):
    r = requests.get(ui.login_url, allow_redirects=False)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    page = requests.get(ui.url + "/", cookies=r.cookies)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_wrong_token_is_401_and_throttled(engine):
    with running_ui(engine.host) as ui:
        for _ in range(10):
            r = requests.get(f"{ui.url}/login?token=nope", allow_redirects=False)
            assert r.status_code == 401 and "Set-Cookie" not in r.headers
        r = requests.get(ui.login_url, allow_redirects=False)
        assert r.status_code == 429 and "Set-Cookie" not in r.headers


def test_htpasswd_login(engine, tmp_path):
    from dockyard.registry.auth import htpasswd_line

    hp = tmp_path / "htpasswd"
    hp.write_text(htpasswd_line("alice", "s3cret", rounds=4) + "\n")
    with running_ui(engine.host, "--htpasswd", str(hp)) as ui:
        r = requests.post(ui.url + "/login", data={"user": "alice", "password": "wrong"}, allow_redirects=False)
        assert r.status_code == 401 and "Set-Cookie" not in r.headers
        s = requests.Session()
        r = s.post(ui.url + "/login", data={"user": "alice", "password": "s3cret"}, allow_redirects=False)
        assert r.status_code == 302
        page = s.get(ui.url + "/")
        assert page.status_code == 200 and "alice" in page.text


def test_tls_required_off_loopback(engine, tmp_path):
    from tlscerts import make_certs

    r = subprocess.run([sys.executable, "-m", "dockyard", "ui", "--addr", "0.0.0.0:0", "-H", engine.host],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "without TLS" in r.stderr
    certs = make_certs(tmp_path)
    with running_ui(engine.host, "--tls-cert", str(certs["server_cert"]),
                    "--tls-key", str(certs["server_key"])) as ui:
        assert ui.url.startswith("https://")
        s = requests.Session()
        ca = str(certs["ca"])   # per request: $REQUESTS_CA_BUNDLE would override Session.verify
        r = s.get(ui.login_url, allow_redirects=False, verify=ca)
        assert r.status_code == 302 and "Secure" in r.headers["Set-Cookie"]
        assert s.get(ui.url + "/", verify=ca).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(ui.url.replace("https://", "http://") + "/login", timeout=5)
