"""Issue 15: multi-container apps. Health checks (run by the supervisor), docker-compose
1.29 on user networks and with links, networks of created containers, legacy links,
swarm endpoints, exec/kill/rm/log-driver/ps details, and a daemon log free of tracebacks,
with the real docker CLI, docker-compose and docker-py. Where Docker's behaviour is the
reference, the expected values were read from Debian's dockerd (20.10) side by side."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest

from acceptance.harness import running


def _n(prefix: str = "m") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _until(fn, timeout: float = 20, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def _health(d, name: str) -> dict | None:
    return json.loads(d.out("inspect", "-f", "{{json .State.Health}}", name))


@pytest.fixture(scope="module")
def netd(tmp_path_factory):
    """A private daemon with networking (bridges of its own, taken down at the end)."""
    with running(tmp_path_factory.mktemp("dkn"), network=True) as d:
        yield d


# ---- health checks ------------------------------------------------------------------------

def test_health_check_states_log_events_and_ps(daemon):
    name = _n("h")
    daemon.docker("run", "-d", "--name", name, "--health-cmd", "echo probe; test -e /tmp/ok",
                  "--health-interval", "300ms", "--health-retries", "2", "busybox", "sleep", "300")
    try:
        assert _health(daemon, name)["Status"] == "starting"
        assert "(health: starting)" in daemon.out("ps", "--filter", f"name={name}",
                                                  "--format", "{{.Status}}")
        h = _until(lambda: (_health(daemon, name)["Status"] == "unhealthy") and _health(daemon, name))
        assert h["Status"] == "unhealthy" and h["FailingStreak"] >= 2
        assert h["Log"][-1]["ExitCode"] == 1 and h["Log"][-1]["Output"] == "probe\n"
        assert daemon.out("ps", "-q", "--filter", "health=unhealthy", "--filter",
                          f"name={name}") != ""
        assert _until(lambda: len(_health(daemon, name)["Log"]) == 5)
        time.sleep(0.7)
        assert len(_health(daemon, name)["Log"]) == 5          # the last five only
        daemon.docker("exec", name, "touch", "/tmp/ok")
        assert _until(lambda: _health(daemon, name)["Status"] == "healthy")
        h = _health(daemon, name)
        assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0
        assert "(healthy)" in daemon.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
        assert daemon.out("ps", "-q", "--filter", "health=healthy", "--filter", f"name={name}")
        assert not daemon.out("ps", "-q", "--filter", "health=none", "--filter", f"name={name}")
        r = daemon.docker("ps", "--filter", "health=bogus", check=False)
        assert r.returncode != 0 and "health" in r.stderr
        time.sleep(1.1)   # --until has whole seconds
        ev = daemon.out("events", "--since", "0", "--until", "0s", "--filter", f"container={name}",
                        "--format", "{{.Action}}").splitlines()
        changes = [e for e in ev if e.startswith("health_status")]
        assert changes[:2] == ["health_status: unhealthy", "health_status: healthy"]
        assert any(e.startswith("exec_create: /bin/sh -c echo probe") for e in ev)
        assert "exec_die" in ev
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_health_timeout_start_period_and_none(daemon):
    slow, early, off = _n("hs"), _n("he"), _n("hn")
    try:
        daemon.docker("run", "-d", "--name", slow, "--health-cmd", "sleep 5", "--health-interval",
                      "200ms", "--health-timeout", "300ms", "--health-retries", "1", "busybox",
                      "sleep", "300")
        daemon.docker("run", "-d", "--name", early, "--health-cmd", "exit 1", "--health-interval",
                      "10s", "--health-start-period", "2s", "--health-start-interval", "200ms",
                      "--health-retries", "1", "busybox", "sleep", "300")
        daemon.docker("run", "-d", "--name", off, "--no-healthcheck", "busybox", "sleep", "300")
        h = _until(lambda: _health(daemon, slow)["Log"] and _health(daemon, slow))
        assert h["Log"][0] == {**h["Log"][0], "ExitCode": -1,
                               "Output": "Health check exceeded timeout (300ms)"}
        assert h["Status"] == "unhealthy"
        # start period: failures are logged, not counted (probes every start interval)
        time.sleep(1.2)
        h = _health(daemon, early)
        assert h["Status"] == "starting" and h["FailingStreak"] == 0 and len(h["Log"]) >= 3
        assert _until(lambda: _health(daemon, early)["Status"] == "unhealthy", timeout=15)
        # probes that outlive their timeout are killed: they do not pile up
        assert daemon.out("exec", slow, "ps", "-o", "args").splitlines().count("sleep 5") <= 1
        assert _health(daemon, off) is None
        assert json.loads(daemon.out("inspect", "-f", "{{json .Config.Healthcheck}}", off)) == \
            {"Test": ["NONE"]}
        assert off in daemon.out("ps", "--format", "{{.Names}}", "--filter", "health=none").split()
        r = daemon.docker("run", "--rm", "--health-cmd", "true", "--health-interval", "-1s",
                          "busybox", "true", check=False)
        assert r.returncode == 125
    finally:
        daemon.docker("rm", "-f", slow, early, off, check=False)


def test_health_while_paused(daemon):
    """Debian's dockerd 20.10, side by side: pausing stops the probes and shows the
    container unhealthy at once (streak and log kept, no health_status event; ps shows
    "(Paused)" and health=unhealthy matches); after the unpause probes run again and the
    next success makes it healthy with an event."""
    name = _n("hp")
    daemon.docker("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval",
                  "300ms", "busybox", "sleep", "300")
    try:
        assert _until(lambda: _health(daemon, name)["Status"] == "healthy")
        daemon.docker("pause", name)
        h = _health(daemon, name)
        assert h["Status"] == "unhealthy" and h["FailingStreak"] == 0
        assert h["Log"] and all(r["ExitCode"] == 0 for r in h["Log"])
        assert daemon.out("ps", "-q", "--filter", "health=unhealthy", "--filter", f"name={name}")
        assert daemon.out("ps", "--filter", f"name={name}", "--format",
                          "{{.Status}}").endswith("(Paused)")
        time.sleep(1.5)                    # five intervals: no probe ran, none failed
        assert _health(daemon, name) == h
        daemon.docker("unpause", name)
        assert _until(lambda: _health(daemon, name)["Status"] == "healthy")
        after = _health(daemon, name)
        assert after["Log"][-1]["ExitCode"] == 0 and after["Log"][-1]["Start"] > h["Log"][-1]["End"]
        time.sleep(1.1)
        ev = daemon.out("events", "--since", "0", "--until", "0s", "--filter", f"container={name}",
                        "--format", "{{.Action}}").splitlines()
        assert [e for e in ev if e.startswith(("health_status", "pause", "unpause"))] == [
            "health_status: healthy", "pause", "unpause", "health_status: healthy"]
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_health_checks_go_on_while_the_daemon_restarts(fresh_daemon):
    d = fresh_daemon
    name = _n("hr")
    d.docker("run", "-d", "--name", name, "--health-cmd", "date +%s%N", "--health-interval",
             "200ms", "busybox", "sleep", "300")
    assert _until(lambda: _health(d, name)["Status"] == "healthy")
    d.kill9()
    time.sleep(1.5)   # probes go on in the supervisor meanwhile
    d.start()
    h = _health(d, name)
    assert h["Status"] == "healthy"
    # results made while the daemon was down (the supervisor's state, adopted at boot)
    ends = [e["End"] for e in h["Log"]]
    assert len(ends) == 5
    first = _health(d, name)["Log"][-1]["End"]
    assert _until(lambda: _health(d, name)["Log"][-1]["End"] != first)


# ---- docker-compose ------------------------------------------------------------------------

COMPOSE = """\
version: "2.4"
services:
  web:
    image: busybox
    command: sh -c 'mkdir -p /www && echo hello-from-web > /www/index.html && httpd -f -p 80 -h /www'
    networks: [back]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "-", "http://localhost/"]
      interval: 1s
      timeout: 2s
      retries: 3
  client:
    image: busybox
    command: sh -c 'wget -q -O - http://web/ > /data/got && cat /data/got && exec sleep 1000'
    networks: [back]
    volumes: [data:/data]
    depends_on:
      web:
        condition: service_healthy
  legacy:
    image: busybox
    command: sleep 1000
    network_mode: bridge
  linker:
    image: busybox
    command: sh -c 'grep db /etc/hosts; env | grep DB_NAME; exec sleep 1000'
    network_mode: bridge
    links: ["legacy:db"]
networks:
  back: {}
volumes:
  data: {}
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_app(netd, tmp_path):
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    proj = _n("p")

    def compose(*args, check=True, timeout=180):
        r = subprocess.run(["docker-compose", "-p", proj, *args], cwd=tmp_path, env=netd.env,
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr, netd.log_text())
        return r

    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        assert "(healthy)" in ps, ps
        assert _until(lambda: "hello-from-web" in compose("logs", "--no-color", "client").stdout)
        logs = compose("logs", "--no-color", "linker").stdout
        assert f"\tdb " in logs and f" {proj}_legacy_1\n" in logs
        assert f"DB_NAME=/{proj}_linker_1/db" in logs
        assert compose("exec", "-T", "client", "cat", "/data/got").stdout == "hello-from-web\n"
        compose("restart", "web")
        assert "Up" in compose("ps", "web").stdout
        compose("up", "-d", "--scale", "legacy=3")
        assert len(compose("ps", "-q", "legacy").stdout.split()) == 3
        # the client's healthy wait really waited for web's health check
        ev = netd.out("events", "--since", "0", "--until", "0s", "--filter", "event=health_status",
                      "--filter", f"label=com.docker.compose.project={proj}")
        assert "health_status: healthy" in ev
    finally:
        compose("down", "-v", check=False)
    assert netd.out("ps", "-aq", "--filter", f"label=com.docker.compose.project={proj}") == ""
    assert not [n for n in netd.out("network", "ls", "--format", "{{.Name}}").split()
                if n.startswith(proj)]
    assert not [v for v in netd.out("volume", "ls", "-q").split() if v.startswith(proj)]


# ---- networks -------------------------------------------------------------------------------

def test_created_container_networks_connect_disconnect(netd):
    d = netd
    a, b, c = _n("na"), _n("nb") + " with space", _n("c")
    d.docker("network", "create", a)
    d.docker("network", "create", b)
    try:
        d.docker("create", "--name", c, "--network", a, "busybox", "sleep", "300")
        nets = json.loads(d.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", c))
        assert list(nets) == [a] and nets[a]["IPAddress"] == "" and nets[a]["EndpointID"] == ""
        # compose's order: create, disconnect, connect (with aliases), start
        d.docker("network", "disconnect", a, c)
        d.docker("network", "connect", "--alias", "svc", a, c)
        r = d.docker("network", "connect", a, c, check=False)
        assert r.returncode == 1 and "already exists in network" in r.stderr
        d.client().api.connect_container_to_network(c, b, mac_address="02:42:ac:11:00:99")
        d.docker("start", c)
        nets = json.loads(d.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", c))
        assert set(nets) == {a, b} and nets[a]["Aliases"] == ["svc"] and nets[a]["IPAddress"]
        assert nets[b]["MacAddress"] == "02:42:ac:11:00:99"
        assert "02:42:ac:11:00:99" in d.out("exec", c, "cat", "/sys/class/net/eth1/address") + \
            d.out("exec", c, "cat", "/sys/class/net/eth0/address")
        # disconnect and reconnect a running container (was 403)
        d.docker("network", "disconnect", a, c)
        d.docker("network", "connect", a, c)
        d.docker("network", "disconnect", a, c)
        r = d.docker("network", "disconnect", "-f", a, c, check=False)
        assert r.returncode == 1 and "is not connected to network" in r.stderr
        time.sleep(1.1)
        cid = d.out("inspect", "-f", "{{.Id}}", c)
        ev = [line.split()[0] for line in d.out(
            "events", "--since", "0", "--until", "0s", "--filter", "type=network", "--format",
            "{{.Action}} {{.Actor.Attributes.container}}").splitlines() if line.endswith(cid)]
        assert ev.count("connect") >= 4 and ev.count("disconnect") >= 3
        d.docker("stop", "-t", "0", c)
        nets = json.loads(d.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", c))
        assert set(nets) == {b} and nets[b]["IPAddress"] == ""
    finally:
        d.docker("rm", "-f", c, check=False)
        d.docker("network", "rm", a, b, check=False)


def test_legacy_links(netd):
    d = netd
    db, web = _n("db"), _n("web")
    d.docker("run", "-d", "--name", db, "-e", "SECRET=s1", "--expose", "5432", "busybox",
             "sleep", "300")
    try:
        ip = d.out("inspect", "-f", "{{.NetworkSettings.IPAddress}}", db)
        out = d.out("run", "--rm", "--name", web, "--link", f"{db}:database", "busybox", "sh", "-c",
                    "grep database /etc/hosts; env | grep ^DATABASE | sort")
        lines = out.splitlines()
        assert lines[0].split() == [ip, "database", d.out("inspect", "-f", "{{.Config.Hostname}}", db),
                                    db]
        assert lines[1:] == [
            "DATABASE_ENV_SECRET=s1", f"DATABASE_NAME=/{web}/database",
            f"DATABASE_PORT=tcp://{ip}:5432", f"DATABASE_PORT_5432_TCP=tcp://{ip}:5432",
            f"DATABASE_PORT_5432_TCP_ADDR={ip}", "DATABASE_PORT_5432_TCP_PORT=5432",
            "DATABASE_PORT_5432_TCP_PROTO=tcp"]
        d.docker("run", "-d", "--name", web, "--link", db, "busybox", "sleep", "300")
        assert json.loads(d.out("inspect", "-f", "{{json .HostConfig.Links}}", web)) == \
            [f"/{db}:/{web}/{db}"]
        d.docker("rm", "--link", f"/{web}/{db}")
        assert d.out("inspect", "-f", "{{json .HostConfig.Links}}", web) == "null"
        r = d.docker("create", "--link", "nosuch:x", "busybox", check=False)
        assert r.returncode != 0 and "could not get container for nosuch" in r.stderr
    finally:
        d.docker("rm", "-f", web, db, check=False)


def _a_records(d, container: str, name: str) -> list[str]:
    """The IPv4 addresses the container's resolver gives for ``name`` (busybox nslookup)."""
    r = d.docker("exec", container, "nslookup", "-type=a", name, check=False, timeout=60)
    lines = r.stdout.splitlines()
    # the answer's lines follow the server's "Address: 127.0.0.11:53"
    return [ln.split()[-1] for ln in lines[2:] if ln.startswith("Address:")]


def test_links_on_a_user_network(netd):
    """dockerd 20.10, side by side: on a user network --link is a DNS alias only the
    linking container resolves (to the target's current address on that network), with
    no /etc/hosts line, no variables and HostConfig.Links null; network connect --link
    makes one on that network; the target need not exist at create."""
    d = netd
    net, net2 = _n("ln"), _n("ln2")
    db, web, third, filler, early = _n("db"), _n("web"), _n("third"), _n("fill"), _n("early")
    d.docker("network", "create", net)
    d.docker("network", "create", net2)
    try:
        d.docker("run", "-d", "--name", db, "--network", net, "-e", "SECRET=s1", "--expose",
                 "5432", "busybox", "sleep", "300")
        d.docker("run", "-d", "--name", web, "--network", net, "--link", f"{db}:dbalias",
                 "busybox", "sleep", "300")
        d.docker("run", "-d", "--name", third, "--network", net, "busybox", "sleep", "300")
        assert d.out("inspect", "-f", "{{json .HostConfig.Links}}", web) == "null"
        nets = json.loads(d.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", web))
        assert nets[net]["Links"] == [f"{db}:dbalias"]
        ip = d.out("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', db)
        assert _a_records(d, web, "dbalias") == [ip]
        assert _a_records(d, third, "dbalias") == []        # the linking container's only
        assert "dbalias" not in d.out("exec", web, "cat", "/etc/hosts")
        assert "DBALIAS" not in d.out("exec", web, "env")
        # the alias follows the target to its new address after a restart
        d.docker("stop", "-t", "0", db)
        assert _a_records(d, web, "dbalias") == []
        d.docker("run", "-d", "--name", filler, "--network", net, "busybox", "sleep", "300")
        d.docker("start", db)
        ip2 = d.out("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}', db)
        assert ip2 != ip
        assert _a_records(d, web, "dbalias") == [ip2]
        # network connect --link: an alias on that network (the target's address there)
        d.docker("network", "connect", "--link", f"{db}:viaconnect", net2, web)
        d.docker("network", "connect", net2, db)
        ip3 = d.out("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net2}").IPAddress}}}}', db)
        assert _a_records(d, web, "viaconnect") == [ip3]
        nets = json.loads(d.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", web))
        assert nets[net2]["Links"] == [f"{db}:viaconnect"]
        # no target needed at create on a user network
        d.docker("create", "--name", early, "--network", net, "--link", "nosuch:x", "busybox",
                 "true")
        nets = json.loads(d.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", early))
        assert nets[net]["Links"] == ["nosuch:x"]
    finally:
        d.docker("rm", "-f", db, web, third, filler, early, check=False)
        d.docker("network", "rm", net, net2, check=False)


# ---- the Engine API's details -------------------------------------------------------------

def test_swarm_endpoints_answer_503(daemon):
    import docker

    client = daemon.client()
    assert client.swarm.leave(force=True) is True    # docker-py takes a 503 as "not in one"
    with pytest.raises(docker.errors.APIError) as e:
        client.swarm.leave()
    assert e.value.status_code == 503 and "This node is not part of a swarm" in str(e.value)
    for call in (client.nodes.list, client.services.list, client.secrets.list,
                 client.configs.list, client.api.inspect_swarm):
        with pytest.raises(docker.errors.APIError) as e:
            call()
        assert e.value.status_code == 503 and "not a swarm manager" in str(e.value)
    r = daemon.docker("node", "ls", check=False)
    assert r.returncode == 1 and 'Use "docker swarm init"' in r.stderr


def test_kill_exec_remove_logdriver_and_ps_filters(daemon):
    client = daemon.client()
    names = [_n("k") for _ in range(4)]
    k, e, r, p = names
    try:
        # kill returns once the container is dead (docker-py's tests raced on this)
        for _ in range(5):
            c = client.containers.run("busybox", "sleep 300", detach=True)
            c.kill()
            st = client.api.inspect_container(c.id)["State"]
            assert (st["Status"], st["ExitCode"], st["Running"]) == ("exited", 137, False)
            c.remove()
        daemon.docker("run", "-d", "--name", e, "busybox", "sleep", "300")
        x = daemon.docker("exec", e, "nosuchcmd", check=False)
        assert x.returncode == 126 and "executable file not found" in x.stdout + x.stderr
        # an exec's own Tty decides its stream, and detachKeys in any case are taken
        from docker.utils.socket import read as sock_read

        eid = client.api.exec_create(e, "echo hi", tty=True)["Id"]
        sock = client.api.exec_start(eid, tty=False, socket=True)
        raw = b""
        while chunk := sock_read(sock, 4096):
            raw += chunk
        assert raw == b"hi\r\n"                              # a tty's raw bytes, no frames
        eid = client.api.exec_create(e, "true", detach_keys="ctrl-x,x")["Id"]   # "detachKeys"
        assert client.api.exec_inspect(eid)["DetachKeys"] == "ctrl-x,x"
        # a restart-policy container between two runs cannot be removed without force
        daemon.docker("run", "-d", "--name", r, "--restart", "always", "busybox", "sh", "-c",
                      "sleep 0.2; exit 1")
        seen = _until(lambda: "restarting container" in daemon.docker("rm", r, check=False).stderr,
                      timeout=15, step=0.05)
        assert seen
        daemon.docker("rm", "-f", r)
        # log drivers
        assert json.loads(daemon.out("inspect", "-f", "{{json .HostConfig.LogConfig}}", e)) == \
            {"Type": "json-file", "Config": {}}
        x = daemon.docker("run", "--rm", "--log-driver", "nosuch", "busybox", "true", check=False)
        assert x.returncode == 125 and 'plugin "nosuch" not found' in x.stderr
        out = daemon.docker("run", "--rm", "--log-driver", "local", "busybox", "echo", "kept")
        assert out.stdout == "kept\n"
        none = _n("ln")
        daemon.docker("run", "--name", none, "--log-driver", "none", "busybox", "echo", "x")
        x = daemon.docker("logs", none, check=False)
        assert x.returncode == 1 and "does not support reading" in x.stderr
        assert daemon.out("inspect", "-f", "{{.LogPath}}", none) == ""
        daemon.docker("rm", none)
        # ps filters
        daemon.docker("run", "-d", "--name", p, "--expose", "90", "--expose", "53/udp",
                      "busybox", "sleep", "300")
        q = lambda *f: daemon.out("ps", "--format", "{{.Names}}", *f).split()  # noqa: E731
        assert p in q("--filter", "expose=90") and p in q("--filter", "expose=80-95/tcp")
        assert p in q("--filter", "expose=53/udp") and p not in q("--filter", "expose=53")
        assert p not in q("--filter", "publish=90")
        assert q("--filter", "is-task=true") == [] and p in q("--filter", "is-task=false")
        # prune reports the space of the writable layers it removed
        pr = _n("pr")
        daemon.docker("run", "--name", pr, "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1k",
                      "count=2048")
        got = client.api.prune_containers()
        assert got["SpaceReclaimed"] >= 2048 * 1024
    finally:
        daemon.docker("rm", "-f", *names, check=False)


def test_daemon_log_has_no_traceback_after_mixed_use(fresh_daemon):
    d = fresh_daemon
    for _ in range(3):
        d.docker("run", "--rm", "busybox", "nosuchcmd", check=False)          # failed starts
        d.docker("run", "busybox", "sh", "-c", "exit 3", check=False)
    name = _n("mx")
    d.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
             "while true; do echo line; sleep 0.05; done")
    for _ in range(3):   # followers that leave
        p = subprocess.Popen(["docker", "logs", "-f", name], env=d.env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        p.kill()
        p.wait()
        p = subprocess.Popen(["docker", "events"], env=d.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        p.kill()
        p.wait()
    # attach and detach
    t = _n("mt")
    d.docker("run", "-dit", "--name", t, "busybox", "sh")
    p = subprocess.Popen(["script", "-qc", f"docker attach {t}", "/dev/null"], env=d.env,
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    p.stdin.write(b"\x10\x11")
    p.stdin.flush()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
    d.docker("kill", name)
    d.docker("rm", "-f", name, t)
    time.sleep(1)
    log = d.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    assert "never retrieved" not in log and "was destroyed but it is pending" not in log


# ---- testcontainers-python ------------------------------------------------------------------

def test_testcontainers_python(netd, monkeypatch):
    import testcontainers.core.container as tc   # a test dependency (pyproject's [test])
    from testcontainers.core.waiting_utils import wait_for_logs
    import urllib.request

    monkeypatch.setenv("DOCKER_HOST", netd.host)
    monkeypatch.setenv("DOCKER_CONFIG", str(netd.cfg))
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")   # its image is not pullable here
    from testcontainers.core.config import testcontainers_config
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    c = tc.DockerContainer("busybox", command=["sh", "-c", "mkdir /w && echo tc-ok > /w/i && "
                                               "echo serving && exec httpd -f -p 80 -h /w"])
    c.with_exposed_ports(80)
    with c:
        wait_for_logs(c, "serving", timeout=30)
        host, port = c.get_container_host_ip(), c.get_exposed_port(80)
        body = _until(lambda: _get(f"http://{host}:{port}/i", urllib.request), timeout=10)
        assert body == b"tc-ok\n"
    assert netd.out("ps", "-aq", "--filter", f"id={c.get_wrapped_container().id}") == ""


def _get(url, urllib_request):
    try:
        return urllib_request.urlopen(url, timeout=2).read()
    except OSError:
        return None
