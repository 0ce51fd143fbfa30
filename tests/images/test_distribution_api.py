"""The registry endpoints over real HTTP: our API app (image routes + the
distribution routes, registered as the daemon does) served on a unix socket,
driven by docker-py, the real docker CLI and our CLI, against our registry."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from distribution_helpers import running_registry, write_htpasswd
from dockyard.images import credentials


DOCKER = "/usr/local/bin/docker"


@contextlib.contextmanager
def api_server(svc):
    """Serve the Engine API for ``svc`` on a unix socket; yields its path."""
    from aiohttp import web

    from dockyard.api import app as api_app
    from dockyard.api import routes_distribution, routes_images, routes_system
    from dockyard.daemon.events import EventBus
    from dockyard.daemon.system import SystemService

    d = tempfile.mkdtemp(prefix="dy-dist-", dir="/tmp")
    sock = os.path.join(d, "api.sock")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def start():
        events = EventBus()
        ctx = api_app.ApiContext(system=SystemService(svc.root, images=svc, events=events),
                                 events=events, images=svc)
        app = web.Application(middlewares=[api_app.error_middleware, api_app.version_middleware])
        app[api_app.CTX] = ctx
        app.on_response_prepare.append(api_app._on_prepare)
        routes_system.register(app)
        routes_distribution.register(app)     # before the image routes (see its docstring)
        routes_images.register(app)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, sock).start()
        state["runner"] = runner

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(state["runner"].cleanup())
        loop.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(20)
    try:
        yield sock
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(20)
        shutil.rmtree(d, ignore_errors=True)


def _raw(sock: str, method: str, path: str, headers=None, body=None):
    import http.client
    import socket

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(sock)

    c = Conn("localhost", timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


@pytest.fixture
def setup(make_service, tmp_path, busybox_tar_bytes):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    with running_registry(tmp_path / "reg", "--htpasswd", str(htpasswd), "--auth", "basic") as reg:
        a = make_service("a")
        iid = a.import_image(io.BytesIO(busybox_tar_bytes), repo=f"{reg.addr}/am/busybox",
                             tag="v1")
        with api_server(a) as sock:
            yield {"reg": reg, "svc": a, "iid": iid, "sock": sock, "tmp": tmp_path,
                   "make": make_service}


def _xauth(user, pw, server):
    return base64.urlsafe_b64encode(json.dumps(
        {"username": user, "password": pw, "serveraddress": server}).encode()).decode()


def test_api_auth_push_pull_errors(setup):
    reg, sock = setup["reg"], setup["sock"]
    st, body = _raw(sock, "POST", "/v1.47/auth", {"Content-Type": "application/json"},
                    json.dumps({"username": "alice", "password": "alicepw",
                                "serveraddress": reg.addr}).encode())
    assert st == 200 and json.loads(body) == {"IdentityToken": "", "Status": "Login Succeeded"}
    st, body = _raw(sock, "POST", "/v1.47/auth", {"Content-Type": "application/json"},
                    json.dumps({"username": "alice", "password": "wrong",
                                "serveraddress": reg.addr}).encode())
    assert st == 401
    assert json.loads(body)["message"].startswith(f'Get "http://{reg.addr}/v2/": unauthorized:')

    hdr = {"X-Registry-Auth": _xauth("alice", "alicepw", reg.addr)}
    st, body = _raw(sock, "POST", f"/v1.47/images/{reg.addr}/am/busybox/push?tag=v1", hdr)
    assert st == 200
    lines = [json.loads(x) for x in body.split(b"\r\n") if x]
    assert lines[-1]["aux"]["Tag"] == "v1"
    digest = lines[-1]["aux"]["Digest"]

    # unknown repository: a 404 before any streaming, in docker's words
    st, body = _raw(sock, "POST", f"/v1.47/images/create?fromImage={reg.addr}/am/nope&tag=latest", hdr)
    assert st == 404, body
    assert json.loads(body)["message"].startswith(f"repository {reg.addr}/am/nope not found")
    # no credentials: 401
    st, body = _raw(sock, "POST", f"/v1.47/images/create?fromImage={reg.addr}/am/busybox&tag=v1",
                    {"X-Registry-Auth": "e30="})
    assert st == 401, body

    # pull with docker-py into a fresh data root
    import docker

    b = setup["make"]("b")
    with api_server(b) as sock_b:
        c = docker.APIClient(base_url=f"unix://{sock_b}", version="1.45")
        msgs = list(c.pull(f"{reg.addr}/am/busybox", tag="v1", stream=True, decode=True,
                           auth_config={"username": "alice", "password": "alicepw"}))
        assert msgs[-1]["status"] == f"Status: Downloaded newer image for {reg.addr}/am/busybox:v1"
        assert msgs[-2]["status"] == f"Digest: {digest}"
        assert c.inspect_image(f"{reg.addr}/am/busybox:v1")["Id"] == setup["iid"]
        # fromSrc still reaches the import handler
        st, body = _raw(sock_b, "POST", "/v1.47/images/create?fromSrc=-&repo=imp:v1",
                        {"Content-Type": "application/x-tar"}, b"\0" * 1024)
        assert st == 200, body
        c.close()


def test_search(setup):
    reg, sock = setup["reg"], setup["sock"]
    hdr = {"X-Registry-Auth": _xauth("alice", "alicepw", reg.addr)}
    st, body = _raw(sock, "POST", f"/v1.47/images/{reg.addr}/am/busybox/push?tag=v1", hdr)
    assert st == 200
    st, body = _raw(sock, "GET", f"/v1.47/images/search?term={reg.addr}/busy&limit=5", hdr)
    assert st == 200, body
    res = json.loads(body)
    assert [r["name"] for r in res] == ["am/busybox"]
    assert set(res[0]) == {"star_count", "is_official", "name", "is_automated", "description"}
    st, body = _raw(sock, "GET", f"/v1.47/images/search?term={reg.addr}/busy&limit=0", hdr)
    assert st == 400


def _env(sock: str, cfg: Path) -> dict:
    env = dict(os.environ)
    env.update({"DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(cfg),
                "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")})
    return env


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(DOCKER), reason="docker CLI not installed")
def test_real_docker_cli_login_push_pull(setup):
    reg, tmp = setup["reg"], setup["tmp"]
    cfg = tmp / "dcfg"
    env = _env(setup["sock"], cfg)
    bad = subprocess.run([DOCKER, "login", "-u", "alice", "--password-stdin", reg.addr],
                         input="nope\n", capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "unauthorized" in bad.stderr, bad.stderr
    p = subprocess.run([DOCKER, "login", "-u", "alice", "--password-stdin", reg.addr],
                       input="alicepw\n", capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and "Login Succeeded" in p.stdout, p.stderr
    # the real CLI wrote the credentials; ours reads them back
    assert credentials.get(reg.addr, cfg / "config.json").password == "alicepw"
    p = subprocess.run([DOCKER, "push", f"{reg.addr}/am/busybox:v1"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "v1: digest: sha256:" in p.stdout
    b = setup["make"]("b")
    with api_server(b) as sock_b:
        env_b = _env(sock_b, cfg)
        p = subprocess.run([DOCKER, "pull", f"{reg.addr}/am/busybox:v1"], capture_output=True,
                           text=True, env=env_b, timeout=120)
        assert p.returncode == 0, p.stderr
        assert f"Status: Downloaded newer image for {reg.addr}/am/busybox:v1" in p.stdout
        assert p.stdout.strip().endswith(f"{reg.addr}/am/busybox:v1")
        p = subprocess.run([DOCKER, "pull", f"{reg.addr}/am/busybox:v1"], capture_output=True,
                           text=True, env=env_b, timeout=120)
        assert "Image is up to date" in p.stdout
        p = subprocess.run([DOCKER, "pull", f"{reg.addr}/am/nothere"], capture_output=True,
                           text=True, env=env_b, timeout=60)
        assert p.returncode != 0 and "not found" in p.stderr
        assert b.inspect(f"{reg.addr}/am/busybox:v1")["Id"] == setup["iid"]


def _dockyard(sock, cfg, *args, input=None):
    return subprocess.run([sys.executable, "-m", "dockyard", "-H", f"unix://{sock}", *args],
                          input=input, capture_output=True, text=True, env=_env(sock, cfg),
                          timeout=120)


def test_our_cli_login_push_pull_logout_search(setup):
    reg, tmp = setup["reg"], setup["tmp"]
    cfg = tmp / "ocfg"
    sock = setup["sock"]
    p = _dockyard(sock, cfg, "login", "-u", "alice", "--password-stdin", reg.addr, input="bad\n")
    assert p.returncode == 1 and "unauthorized" in p.stderr, p.stderr
    assert not (cfg / "config.json").exists()
    p = _dockyard(sock, cfg, "login", "-u", "alice", "--password-stdin", reg.addr, input="alicepw\n")
    assert p.returncode == 0 and p.stdout.strip().endswith("Login Succeeded"), p.stderr
    data = json.loads((cfg / "config.json").read_text())
    assert base64.b64decode(data["auths"][reg.addr]["auth"]) == b"alice:alicepw"
    p = _dockyard(sock, cfg, "push", f"{reg.addr}/am/busybox:v1")
    assert p.returncode == 0, p.stderr
    assert "Pushed" in p.stdout and "v1: digest: sha256:" in p.stdout
    assert "Pushing [" not in p.stdout          # no progress bars when not a tty
    p = _dockyard(sock, cfg, "search", f"{reg.addr}/busybox")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
    assert p.stdout.splitlines()[1].startswith("am/busybox")
    b = setup["make"]("b")
    with api_server(b) as sock_b:
        p = _dockyard(sock_b, cfg, "pull", "-q", f"{reg.addr}/am/busybox:v1")
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"{reg.addr}/am/busybox:v1\n"
        p = _dockyard(sock_b, cfg, "pull", f"{reg.addr}/am/busybox")
        assert p.returncode == 1
        assert p.stdout.splitlines()[0] == "Using default tag: latest"
        assert p.stderr.startswith(f"Error response from daemon: manifest for "
                                   f"{reg.addr}/am/busybox:latest not found: manifest unknown")
    p = _dockyard(sock, cfg, "logout", reg.addr)
    assert p.stdout.strip() == f"Removing login credentials for {reg.addr}"
    p = _dockyard(sock, cfg, "logout", reg.addr)
    assert p.stdout.strip() == f"Not logged in to {reg.addr}"
    p = _dockyard(sock, cfg, "push", f"{reg.addr}/am/busybox:v1")
    assert p.returncode == 1 and "unauthorized" in p.stderr.lower(), p.stderr


HELPER = """#!/bin/sh
# a docker-credential helper keeping one JSON file per server
dir="{store}"
read -r line || true
case "$1" in
  store) f="$dir/$(echo "$line" | sed 's/.*"ServerURL": *"\\([^"]*\\)".*/\\1/' | tr '/:' '__')"
         echo "$line" > "$f" ;;
  get)   f="$dir/$(echo "$line" | tr '/:' '__')"
         if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) f="$dir/$(echo "$line" | tr '/:' '__')"
         [ -f "$f" ] || {{ echo "credentials not found in native keychain"; exit 1; }}
         rm -f "$f" ;;
esac
"""


def test_credentials_file_and_helpers(tmp_path, monkeypatch):
    cfg = tmp_path / "cfg" / "config.json"
    assert credentials.get("127.0.0.1:5000", cfg).empty
    credentials.store("http://127.0.0.1:5000/", "u", "p:w", cfg)
    assert json.loads(cfg.read_text())["auths"]["127.0.0.1:5000"]["auth"] == \
        base64.b64encode(b"u:p:w").decode()
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"
    a = credentials.get("127.0.0.1:5000", cfg)
    assert (a.username, a.password) == ("u", "p:w")
    assert credentials.server_key(None) == credentials.HUB_SERVER
    assert credentials.server_key("docker.io") == credentials.HUB_SERVER
    assert credentials.erase("127.0.0.1:5000", cfg) is True
    assert credentials.erase("127.0.0.1:5000", cfg) is False
    # X-Registry-Auth round trip, and the empty form
    hdr = credentials.encode_header(credentials.AuthConfig("u", "pw", "h:1"))
    assert credentials.decode_header(hdr).password == "pw"
    assert credentials.encode_header(credentials.AuthConfig()) == "e30="
    assert credentials.decode_header("e30=").empty
    assert credentials.decode_header("%%%").empty
    # a credential helper
    bindir = tmp_path / "bin"
    store = tmp_path / "helper-store"
    bindir.mkdir()
    store.mkdir()
    h = bindir / "docker-credential-dytest"
    h.write_text(HELPER.format(store=store))
    h.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    cfg.write_text(json.dumps({"credsStore": "dytest"}))
    credentials.store("reg.example:5000", "bob", "s3cret", cfg)
    assert json.loads(cfg.read_text())["auths"] == {"reg.example:5000": {}}
    a = credentials.get("reg.example:5000", cfg)
    assert (a.username, a.password) == ("bob", "s3cret")
    assert credentials.get("other:1", cfg).empty
    assert credentials.erase("reg.example:5000", cfg) is True
    assert credentials.get("reg.example:5000", cfg).empty
    # DOCKER_CONFIG picks the directory
    assert credentials.config_path({"DOCKER_CONFIG": "/x/y"}) == Path("/x/y/config.json")
    # a missing helper is an error, not silence
    cfg.write_text(json.dumps({"credHelpers": {"h:1": "nonexistent-helper"}}))
    with pytest.raises(credentials.CredentialsError, match="executable file not found"):
        credentials.get("h:1", cfg)


def test_pull_image_for_run(setup, monkeypatch):
    """`pull_image` (what run/create call after a 404): credentials from config.json."""
    from dockyard.cli.cmd_distribution import pull_image
    from dockyard.client import Client

    reg, tmp = setup["reg"], setup["tmp"]
    hdr = {"X-Registry-Auth": _xauth("alice", "alicepw", reg.addr)}
    st, _ = _raw(setup["sock"], "POST", f"/v1.47/images/{reg.addr}/am/busybox/push?tag=v1", hdr)
    assert st == 200
    cfg = tmp / "runcfg"
    credentials.store(reg.addr, "alice", "alicepw", cfg / "config.json")
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    b = setup["make"]("b")
    with api_server(b) as sock_b:
        out = io.StringIO()
        c = Client(f"unix://{sock_b}")
        try:
            pull_image(c, f"{reg.addr}/am/busybox:v1", out)
        finally:
            c.close()
        lines = out.getvalue().splitlines()
        assert lines[0] == "v1: Pulling from am/busybox"
        assert lines[-1] == f"Status: Downloaded newer image for {reg.addr}/am/busybox:v1"
        assert not any("[=" in line for line in lines)     # not a tty: no bars
        assert b.inspect(f"{reg.addr}/am/busybox:v1")["Id"] == setup["iid"]


def test_progress_display_tty_and_plain():
    from dockyard.cli.cmd_distribution import ProgressDisplay

    msgs = [{"status": "Pulling from am/bb", "id": "v1"},
            {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
            {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
            {"status": "Downloading", "progressDetail": {"current": 1, "total": 2},
             "progress": "[=>  ] 1B/2B", "id": "aaa"},
            {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
            {"status": "Digest: sha256:x"}]
    plain = io.StringIO()
    ProgressDisplay(plain, False).run(msgs)
    assert plain.getvalue() == ("v1: Pulling from am/bb\naaa: Pulling fs layer\n"
                                "bbb: Pulling fs layer\naaa: Pull complete\nDigest: sha256:x\n")
    tty = io.StringIO()
    ProgressDisplay(tty, True).run(msgs)
    out = tty.getvalue()
    # aaa is redrawn in place: two lines up (bbb below it), then back down
    assert "\x1b[2A\x1b[2K\raaa: Downloading [=>  ] 1B/2B\r\x1b[2B" in out
    assert "\x1b[2A\x1b[2K\raaa: Pull complete \r\x1b[2B" in out
    assert out.endswith("Digest: sha256:x\n")


def test_client_gone_mid_pull_leaves_nothing_and_resumes(make_service, tmp_path):
    """The client hangs up mid-download: the pull stops, no image, no half-unpacked
    layer; the ingest stays and the next pull completes."""
    import socket
    import time

    from distribution_helpers import random_tar
    from dockyard.images.push import push_sync

    with running_registry(tmp_path / "reg") as reg:
        a = make_service("a")
        data = random_tar(None, {"big": 60 << 20}, seed=21)
        iid = a.import_image(io.BytesIO(data), repo=f"{reg.addr}/gone/img", tag="v1")
        push_sync(a, f"{reg.addr}/gone/img", "v1")
        b = make_service("b")
        with api_server(b) as sock:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.sendall(f"POST /v1.47/images/create?fromImage={reg.addr}/gone/img&tag=v1 HTTP/1.1\r\n"
                      "Host: d\r\nContent-Length: 0\r\n\r\n".encode())
            got = b""
            while b"Pulling fs layer" not in got:
                chunk = s.recv(4096)
                assert chunk
                got += chunk
            s.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and \
                    [i for i in b.snapshotter.list() if i.key.startswith("extract-")]:
                time.sleep(0.1)
            time.sleep(1.0)      # had the pull gone on, 60 MB would be in by now
            assert b.list_images() == []
            assert not [i for i in b.snapshotter.list() if i.key.startswith("extract-")]
            st, body = _raw(sock, "POST", f"/v1.47/images/create?fromImage={reg.addr}/gone/img&tag=v1")
            assert st == 200 and b"Downloaded newer image" in body, body[-300:]
            assert b.inspect(f"{reg.addr}/gone/img:v1")["Id"] == iid
            assert b.content.ingests() == []


def test_login_with_token_auth(make_service, tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    with running_registry(tmp_path / "treg", "--htpasswd", str(htpasswd), "--auth", "token") as reg:
        with api_server(make_service("t")) as sock:
            def login(pw):
                return _raw(sock, "POST", "/v1.47/auth", {"Content-Type": "application/json"},
                            json.dumps({"username": "alice", "password": pw,
                                        "serveraddress": f"http://{reg.addr}"}).encode())
            st, body = login("alicepw")
            assert st == 200 and json.loads(body)["Status"] == "Login Succeeded"
            st, body = login("nope")
            assert st == 401
            msg = json.loads(body)["message"]
            assert msg.startswith(f'Get "http://{reg.addr}/token?') and "unauthorized" in msg, msg
