"""The daemon's framework against real sockets and the real docker CLI: ping, version,
info, events, versioned routes, errors, sockets, locking, shutdown, TCP and TLS."""

from __future__ import annotations

import grp
import http.client
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

from helpers.daemon import DOCKER, _daemon_knows, daemon_env, running_daemon, unix_request

NO_BRIDGE = ["--bridge", "none"] if _daemon_knows("bridge") else []
from tlscerts import make_certs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_daemon(args: list[str], tmp_path, timeout: float = 30) -> subprocess.CompletedProcess:
    """A daemon that is expected to refuse to start."""
    env = daemon_env("unix:///nonexistent", tmp_path)
    return subprocess.run([sys.executable, "-m", "dockyard", "daemon", *NO_BRIDGE, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- ping / version / info

def test_ping_get_and_head_headers(dockyard_daemon):
    for method in ("GET", "HEAD"):
        for path in ("/_ping", "/v1.47/_ping", "/v1.41/_ping"):
            status, headers, body = dockyard_daemon.request(method, path)
            assert status == 200, (method, path)
            assert body == (b"OK" if method == "GET" else b"")
            assert headers["Api-Version"] == "1.47"
            assert headers["Ostype"] == "linux"
            assert headers["Docker-Experimental"] == "false"
            assert headers["Builder-Version"] == "1"
            assert headers["Swarm"] == "inactive"
            assert "no-cache" in headers["Cache-Control"]
            assert headers["Pragma"] == "no-cache"


def test_version_and_info_shapes(dockyard_daemon):
    status, headers, body = dockyard_daemon.request("GET", "/v1.47/version")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    v = json.loads(body)
    assert v["ApiVersion"] == "1.47" and v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux" and v["Components"][0]["Name"] == "Engine"
    for k in ("Version", "GitCommit", "GoVersion", "Arch", "KernelVersion", "BuildTime"):
        assert v[k], k
    status, _, body = dockyard_daemon.request("GET", "/info")
    info = json.loads(body)
    assert info["DockerRootDir"] == str(dockyard_daemon.data_root)
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert info["CgroupDriver"] == "cgroupfs" and info["OSType"] == "linux"
    assert info["NCPU"] == os.cpu_count() and info["MemTotal"] > 0
    assert info["Images"] == 0 and info["Containers"] == 0
    assert info["DefaultRuntime"] in info["Runtimes"]
    # the engine ID survives a restart of the daemon (it lives in the data root)
    assert (dockyard_daemon.data_root / "engine-id").read_text().strip() == info["ID"]


def test_api_versions_and_unknown_routes(dockyard_daemon):
    status, _, body = dockyard_daemon.request("GET", "/v1.99/version")
    assert status == 400
    assert json.loads(body) == {"message": "client version 1.99 is too new. Maximum "
                                           "supported API version is 1.47"}
    status, _, body = dockyard_daemon.request("GET", "/v1.12/info")
    assert status == 400 and "is too old. Minimum supported API version is 1.24" in \
        json.loads(body)["message"]
    for path in ("/v1.24/version", "/v1.41/version", "/version"):
        assert dockyard_daemon.request("GET", path)[0] == 200
    status, headers, body = dockyard_daemon.request("GET", "/v1.47/no/such/route")
    assert status == 404 and json.loads(body) == {"message": "page not found"}
    assert headers["Content-Type"].startswith("application/json")


def test_docker_cli_version_and_info(dockyard_daemon):
    r = dockyard_daemon.docker("version")
    assert r.returncode == 0, r.stderr
    assert "API version:       1.47 (downgraded from 1.50)" in r.stdout
    assert "API version:      1.47 (minimum version 1.24)" in r.stdout
    assert "Server: Dockyard Engine" in r.stdout
    r = dockyard_daemon.docker("version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0 and r.stdout.strip() == "1.47"
    r = dockyard_daemon.docker("info")
    assert r.returncode == 0, r.stderr
    assert " Swarm: inactive" in r.stdout
    assert f" Docker Root Dir: {dockyard_daemon.data_root}" in r.stdout
    assert "WARNING" not in r.stderr and "error" not in r.stderr.lower()
    r = dockyard_daemon.docker("info", "--format", "{{.Driver}} {{.CgroupVersion}}")
    assert r.returncode == 0 and r.stdout.split()[0] == "overlayfs"


def test_our_cli_version_and_info(dockyard_daemon):
    r = dockyard_daemon.dockyard("version")
    assert r.returncode == 0, r.stderr
    assert "Server: Dockyard Engine" in r.stdout and " Engine:" in r.stdout
    r = dockyard_daemon.dockyard("info")
    assert r.returncode == 0, r.stderr
    theirs = dockyard_daemon.docker("info")
    assert theirs.returncode == 0
    # the Server section reads the same as the docker CLI's
    def norm(text: str) -> str:
        # docker prints the runtimes in Go map order (random): compare them as a set
        return "\n".join(" Runtimes: " + " ".join(sorted(ln.split()[1:]))
                         if ln.startswith(" Runtimes:") else ln for ln in text.split("\n"))

    server_ours = r.stdout.split("Server:\n", 1)[1]
    server_theirs = theirs.stdout.split("Server:\n", 1)[1]
    assert norm(server_ours) == norm(server_theirs)


def test_cli_startup_does_not_import_aiohttp(tmp_path):
    env = daemon_env("unix:///nonexistent/sock", tmp_path)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "dockyard", "version"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "Cannot connect to the Docker daemon at unix:///nonexistent/sock" in r.stderr
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines()
                if ln.startswith("import time:")]
    assert "dockyard.cli.docker" in imported
    assert not [m for m in imported if m.split(".")[0] in ("aiohttp", "asyncio", "yarl")]


# ---------------------------------------------------------------- events

def _events(d, query: str) -> list[dict]:
    status, _, body = d.request("GET", "/v1.47/events?" + query, timeout=30)
    assert status == 200, body
    return [json.loads(ln) for ln in body.splitlines() if ln.strip()]


def test_events_replay_since_until_and_filters(dockyard_daemon, busybox_tar):
    d = dockyard_daemon
    t0 = time.time() - 1
    assert d.docker("import", str(busybox_tar), "ev/one:v1").returncode == 0
    assert d.docker("tag", "ev/one:v1", "ev/two").returncode == 0
    now = time.time() + 0.5
    evs = _events(d, f"since={t0:.9f}&until={now:.9f}")
    actions = [e["Action"] for e in evs]
    assert "import" in actions and actions.count("tag") == 2
    tag = [e for e in evs if e["Action"] == "tag"][-1]
    assert tag["Type"] == "image" and tag["status"] == "tag" and tag["id"] == tag["Actor"]["ID"]
    assert tag["Actor"]["Attributes"]["name"] == "ev/two:latest"
    assert tag["scope"] == "local" and tag["time"] == tag["timeNano"] // 10**9
    # filters (Docker's JSON form), and the old list form
    f = json.dumps({"event": {"import": True}})
    assert [e["Action"] for e in _events(d, f"since={t0}&until={now}&filters={quote(f)}")] == ["import"]
    f = json.dumps({"image": ["ev/two"]})
    assert [e["Action"] for e in _events(d, f"since={t0}&until={now}&filters={quote(f)}")] == ["tag"]
    f = json.dumps({"type": {"container": True}})
    assert _events(d, f"since={t0}&until={now}&filters={quote(f)}") == []
    # the real CLI with relative times (CLI 28 sends whole seconds, so an event of this
    # very second is after "--until 0s": let the clock move on)
    time.sleep(1.1)
    r = d.docker("events", "--since", "5m", "--until", "0s", "--format",
                 "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    assert r.returncode == 0, r.stderr
    assert "image tag ev/two:latest" in r.stdout.splitlines()
    ours = d.dockyard("events", "--since", "5m", "--until", "0s", "--format",
                      "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    assert ours.returncode == 0 and ours.stdout == r.stdout
    # default output of both CLIs is the same
    until = f"{time.time():.3f}"
    a = d.docker("events", "--since", "5m", "--until", until)
    b = d.dockyard("events", "--since", "5m", "--until", until)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout and a.stdout


def test_events_bad_parameters(dockyard_daemon):
    d = dockyard_daemon
    status, _, body = d.request("GET", "/events?filters=%7Bnot-json")
    assert status == 400 and "invalid filter" in json.loads(body)["message"]
    status, _, body = d.request("GET", "/events?filters=" + quote(json.dumps({"colour": ["red"]})))
    assert status == 400 and json.loads(body)["message"] == "invalid filter 'colour'"
    status, _, body = d.request("GET", "/events?since=yesterday-ish&until=1")
    assert status == 400


def test_events_live_stream_flushes_headers_and_delivers(dockyard_daemon, busybox_tar):
    d = dockyard_daemon
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(d.sock))
    try:
        s.sendall(b"GET /v1.47/events?filters=%7B%22type%22%3A%5B%22image%22%5D%7D HTTP/1.1\r\n"
                  b"Host: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:  # headers arrive before any event exists
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Transfer-Encoding: chunked" in head
        assert d.docker("import", str(busybox_tar), "live/one").returncode == 0
        data = head.split(b"\r\n\r\n", 1)[1]
        while b'"Action":"tag"' not in data:
            chunk = s.recv(65536)
            assert chunk, "stream closed before the event"
            data += chunk
        assert b'"live/one:latest"' in data
    finally:
        s.close()


# ---------------------------------------------------------------- sockets, locks, shutdown

def test_socket_mode_pidfile_lock_and_clean_shutdown(tmp_path):
    with running_daemon(tmp_path) as d:
        st = os.stat(d.sock)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        try:
            assert st.st_gid == grp.getgrnam("docker").gr_gid
        except KeyError:
            pass
        assert int(d.pidfile.read_text()) == d.proc.pid
        # a second daemon on the same data root is refused, and does not hurt the first
        other = d.base / "other.sock"
        r = _run_daemon(["--data-root", str(d.data_root), "-H", f"unix://{other}",
                         "--pidfile", str(d.base / "other.pid"), "--config-file", "/dev/null"],
                        tmp_path)
        assert r.returncode == 1
        assert f"data root {d.data_root} is in use by another dockyard daemon" in r.stderr
        assert f"pid {d.proc.pid}" in r.stderr
        assert not other.exists()
        assert d.request("GET", "/_ping")[0] == 200
        # a second daemon on the same socket is refused too
        r = _run_daemon(["--data-root", str(d.base / "root2"), "-H", d.host,
                         "--pidfile", str(d.base / "p2.pid"), "--config-file", "/dev/null"],
                        tmp_path)
        assert r.returncode == 1 and "another daemon is listening on" in r.stderr
        assert d.request("GET", "/_ping")[0] == 200
        assert d.stop() == 0
        assert not d.sock.exists() and not d.pidfile.exists()
        assert "Daemon shutdown complete" in d.logs()
        # the lock is free again: a new daemon on the same data root starts
    with running_daemon(tmp_path) as d2:
        assert d2.request("GET", "/_ping")[0] == 200


def test_sigint_also_shuts_down_and_stale_socket_is_replaced(tmp_path):
    with running_daemon(tmp_path) as d:
        d.proc.send_signal(signal.SIGINT)
        assert d.proc.wait(timeout=20) == 0
        assert not d.sock.exists()
        # a stale socket file (daemon killed -9) does not stop the next daemon
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(d.sock))
        s.close()
        assert d.sock.exists()
    with running_daemon(tmp_path) as d3:
        assert d3.request("GET", "/_ping")[0] == 200


def test_tcp_without_tls_refused_unless_insecure(tmp_path):
    port = _free_port()
    r = _run_daemon(["--data-root", str(tmp_path / "root"), "-H", f"tcp://127.0.0.1:{port}",
                     "--config-file", "/dev/null"], tmp_path)
    assert r.returncode == 1
    assert "refusing to listen on tcp://127.0.0.1" in r.stderr and "--insecure-tcp" in r.stderr
    with running_daemon(tmp_path, extra_args=("-H", f"tcp://127.0.0.1:{port}",
                                              "--insecure-tcp")) as d:
        assert "WITHOUT TLS" in d.logs()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/_ping")
        assert conn.getresponse().status == 200
        conn.close()
        r = d.docker("-H", f"tcp://127.0.0.1:{port}", "version", "--format",
                     "{{.Server.Version}}")
        assert r.returncode == 0, r.stderr


def test_config_file_merge_and_conflicts(tmp_path):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": str(tmp_path / "r"), "log-level": "debug"}))
    r = _run_daemon(["--config-file", str(cfg), "--data-root", str(tmp_path / "other")],
                    tmp_path)
    assert r.returncode == 1
    assert "the following directives are specified both as a flag and in the configuration " \
           "file: data-root" in r.stderr
    cfg.write_text(json.dumps({"colour": "blue"}))
    r = _run_daemon(["--config-file", str(cfg)], tmp_path)
    assert r.returncode == 1
    assert "the following directives don't match any configuration option: colour" in r.stderr
    cfg.write_text("{not json")
    r = _run_daemon(["--config-file", str(cfg)], tmp_path)
    assert r.returncode == 1 and "unable to configure" in r.stderr
    # keys from the file apply when no flag sets them
    sock = f"/tmp/dy-cfg-{os.getpid()}-{time.monotonic_ns()}.sock"
    cfg.write_text(json.dumps({"hosts": [f"unix://{sock}"], "log-level": "debug"}))
    env = daemon_env("unix://" + sock, tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "dockyard", "daemon", *NO_BRIDGE,
                          "--config-file", str(cfg),
                          "--data-root", str(tmp_path / "r2"), "--pidfile",
                          str(tmp_path / "p.pid")], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if unix_request(sock, "GET", "/_ping")[0] == 200:
                    break
            except OSError:
                pass
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        try:
            from helpers.daemon import _stop_supervisor
            _stop_supervisor(tmp_path / "r2")
        finally:
            if os.path.exists(sock):
                os.unlink(sock)
    assert b"level=debug" in err


def test_daemon_help():
    r = subprocess.run([sys.executable, "-m", "dockyard", "daemon", "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for flag in ("--data-root", "--tlsverify", "--insecure-tcp", "--config-file", "--pidfile"):
        assert flag in r.stdout


@pytest.mark.slow
def test_mutual_tls_with_the_real_docker_cli(tmp_path):
    certs = make_certs(tmp_path / "certs")
    port = _free_port()
    args = ("-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs["ca"]),
            "--tlscert", str(certs["server_cert"]), "--tlskey", str(certs["server_key"]))
    with running_daemon(tmp_path, extra_args=args) as d:
        tls = ["--tlsverify", "--tlscacert", str(certs["ca"]), "--tlscert", str(certs["cert"]),
               "--tlskey", str(certs["key"]), "-H", f"tcp://127.0.0.1:{port}"]
        r = d.docker(*tls, "version")
        assert r.returncode == 0, r.stderr
        assert "API version:      1.47 (minimum version 1.24)" in r.stdout
        # our CLI, with the same flags and with DOCKER_CERT_PATH/DOCKER_TLS_VERIFY
        r = d.dockyard(*tls, "version", "--format", "{{.Server.ApiVersion}}")
        assert r.returncode == 0 and r.stdout.strip() == "1.47", r.stderr
        env = {"DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1",
               "DOCKER_CERT_PATH": str(certs["ca"].parent)}
        r = d.dockyard("info", "--format", "{{.Name}}", env=env)
        assert r.returncode == 0 and r.stdout.strip() == socket.gethostname(), r.stderr
        r = d.docker("info", "--format", "{{.Name}}", env=env)
        assert r.returncode == 0, r.stderr
        # a client without a certificate is turned away
        ctx = ssl.create_default_context(cafile=str(certs["ca"]))
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    if not s.recv(100):
                        raise ConnectionResetError("closed")
        # plain HTTP to the TLS port gets nowhere
        r = d.docker("-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.Version}}")
        assert r.returncode != 0
    assert DOCKER
