"""Our container commands against a real daemon, side by side with the real docker CLI."""

from __future__ import annotations

import json
import re
import tarfile
import time
import uuid

import pytest

pytestmark = pytest.mark.xdist_group("cli_containers")


def uid(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def same(d, *args, input=None, norm=None):
    """Run our CLI and docker with the same arguments; both results, outputs normalized."""
    ours = d.dockyard(*args, input=input)
    theirs = d.docker(*args, input=input)

    def n(s: str) -> str:
        s = s.replace("docker", "dockyard")
        return norm(s) if norm else s

    return ours, theirs, (n(ours.stdout), n(ours.stderr), ours.returncode), \
        (n(theirs.stdout), n(theirs.stderr), theirs.returncode)


def assert_same(d, *args, input=None, norm=None):
    ours, theirs, a, b = same(d, *args, input=input, norm=norm)
    assert a == b, f"ours={ours!r}\ndocker={theirs!r}"
    return ours


_AGO = re.compile(r"(Less than a second|About a minute|About an hour|\d+ (second|minute|hour)s?)"
                  r"( ago)?")


def columns(table: str) -> list[list[str]]:
    """A table's cells (split at 2+ spaces) with relative times blanked."""
    out = []
    for line in table.splitlines():
        out.append([_AGO.sub("T", c) for c in re.split(r"\s{2,}", line.strip())])
    return out


# -------------------------------------------------------------------------- run


def test_run_exit_code_and_streams(daemon):
    for cli in (daemon.dockyard, daemon.docker):
        r = cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
        assert (r.stdout, r.stderr, r.returncode) == ("out\n", "err\n", 3), cli


def test_run_stdin_piped_is_half_closed(daemon):
    r = daemon.dockyard("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done",
                        input="a\nb\n")
    assert (r.stdout, r.returncode) == ("a\nb\ndone\n", 0), r.stderr


@pytest.mark.parametrize("args", [
    ["run", "nosuchimage-x"],
    ["run", "--bogus", "busybox"],
    ["run"],
    ["run", "-m", "foo", "busybox"],
    ["run", "--restart", "bad", "busybox"],
    ["run", "busybox", "nosuchcmd"],
    ["run", "--rm", "--env-file", "/nonexistent-env", "busybox", "true"],
    ["run", "--rm", "-p", "99999", "busybox", "true"],
    ["run", "--rm", "--restart", "always", "busybox", "true"],
    ["run", "--rm", "--restart", "always:3", "busybox", "true"],
    ["create", "--restart", "on-failure:x", "busybox", "true"],
    ["create", "--restart", "always:3", "busybox", "true"],
    ["run", "-a", "bogus", "busybox", "true"],
    ["run", "-d", "-a", "stdout", "busybox", "true"],
    ["run", "--ulimit", "nofile", "busybox", "true"],
    ["run", "--pull", "bogus", "busybox", "true"],
    ["run", "--rm", "-a", "stdout", "busybox", "sh", "-c", "echo o; echo e >&2"],
    ["create", "nosuchimage-x"],
    ["stop"],
    ["tag"],
])
def test_errors_and_exit_codes_match_docker(daemon, args):
    ours = assert_same(daemon, *args)
    assert ours.returncode != 0 or args[:2] == ["run", "--rm"]


def test_failed_start_with_rm_removes_the_container(daemon):
    """docker waits for condition=removed after a failed start: the daemon must remove it."""
    name = uid("rmfail")
    try:
        r = daemon.docker("run", "--rm", "--name", name, "busybox", "nosuchcmd", timeout=10)
        assert r.returncode == 127
    finally:
        left = daemon.docker("ps", "-aq", "--filter", f"name={name}").stdout
        daemon.docker("rm", "-f", name)
    assert left == ""
    name = uid("rmfail")
    r = daemon.dockyard("run", "--rm", "--name", name, "busybox", "nosuchcmd")
    assert r.returncode == 127
    assert daemon.docker("ps", "-aq", "--filter", f"name={name}").stdout == ""


def test_run_exit_codes(daemon):
    assert daemon.dockyard("run", "nosuchimage-y").returncode == 125
    assert daemon.dockyard("run", "--bogus", "busybox").returncode == 125
    assert daemon.dockyard("run", "--rm", "busybox", "nosuchcmd").returncode == 127
    assert daemon.dockyard("run", "--rm", "busybox", "sh", "-c", "exit 7").returncode == 7


def test_create_body_matches_docker(daemon):
    """The same flags make the same container, whichever CLI created it."""
    flags = ["-e", "A=1", "-w", "/tmp", "-u", "1000", "--entrypoint", "/bin/sh", "-h", "hh",
             "-l", "x=y", "--restart", "on-failure:3", "--init", "--read-only",
             "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "--security-opt",
             "no-new-privileges", "--ulimit", "nofile=100:200", "-m", "64m", "--memory-swap",
             "128m", "--cpus", "0.5", "-c", "512", "--cpuset-cpus", "0", "--pids-limit", "50",
             "--stop-signal", "SIGUSR1", "--stop-timeout", "5", "--tmpfs", "/run:size=1m",
             "-v", "/tmp:/h:ro", "-p", "127.0.0.1:8081:80/udp", "-p", "9000-9001:90-91",
             "-P", "--expose", "95", "--dns", "1.1.1.1", "--add-host", "a:1.2.3.4",
             "--runtime", "runc", "-t", "-i"]
    a, b = uid("body"), uid("body")
    r1 = daemon.dockyard("create", "--name", a, *flags, "busybox", "-c", "echo")
    r2 = daemon.docker("create", "--name", b, *flags, "busybox", "-c", "echo")
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    assert re.fullmatch(r"[0-9a-f]{64}\n", r1.stdout)
    i1 = json.loads(daemon.docker("inspect", a).stdout)[0]
    i2 = json.loads(daemon.docker("inspect", b).stdout)[0]
    for k in ("Config", "HostConfig"):
        c1, c2 = dict(i1[k]), dict(i2[k])
        for drop in ("Hostname", "ConsoleSize"):
            c1.pop(drop, None)
            c2.pop(drop, None)
        assert c1 == c2, k
    daemon.docker("rm", a, b)


# -------------------------------------------------------------------------- ps


@pytest.fixture(scope="module")
def ps_state(daemon):
    """Three containers with one label: exited 3, running, created."""
    label = f"grp={uuid.uuid4().hex[:8]}"
    names = [uid("ps"), uid("ps"), uid("ps")]
    assert daemon.docker("run", "--name", names[0], "-l", label, "busybox", "sh", "-c",
                         "exit 3").returncode == 3
    assert daemon.docker("run", "-d", "--name", names[1], "-l", label, "-l", "b=2",
                         "busybox", "sleep", "1000").returncode == 0
    assert daemon.docker("create", "--name", names[2], "-l", label, "busybox",
                         "echo", "a very long command line for truncation").returncode == 0
    yield label, names
    daemon.docker("rm", "-f", *names)


def test_ps_formats_match_docker(daemon, ps_state):
    label, names = ps_state
    f = ["--filter", f"label={label}"]
    fmt = "{{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.State}} {{.Labels}} {{.Ports}}"
    for extra in ([], ["-a"], ["-a", "--no-trunc"], ["-a", "-q"], ["-q"], ["-a", "-n", "2"],
                  ["-l"], ["-a", "--filter", "status=exited"], ["-a", "--filter", "exited=3"],
                  ["-a", "--filter", "ancestor=busybox"],
                  ["-a", "--filter", f"name={names[1]}"],
                  ["-a", "--filter", "status=created"]):
        assert_same(daemon, "ps", *f, *extra, "--format", fmt)
        assert_same(daemon, "ps", *f, *extra, "-q") if "-q" not in extra else None
    assert_same(daemon, "ps", "-a", *f, "--format", "table {{.ID}}\t{{.Names}}\t{{.Command}}")
    assert_same(daemon, "ps", "-a", "--filter", f"id={names[0]}")  # nothing: names are no ids
    assert_same(daemon, "ps", "-a", *f, "--format", '{{.Label "b"}}|{{.Label "x"}}|{{.Names}}')
    assert_same(daemon, "ps", "-a", *f, "--format", "raw", norm=lambda s: _AGO.sub("T", s))


def test_ps_default_table_matches_docker(daemon, ps_state):
    label, _ = ps_state
    ours, theirs, _, _ = same(daemon, "ps", "-a", "--filter", f"label={label}")
    assert ours.returncode == 0
    assert columns(ours.stdout) == columns(theirs.stdout)
    # column widths follow the widest cell, and STATUS/CREATED texts ("Less than a second
    # ago" / "1 second ago") depend on when each client ran: compare the names, not the padding
    assert ours.stdout.splitlines()[0].split() == theirs.stdout.splitlines()[0].split()
    ours, theirs, _, _ = same(daemon, "ps", "-a", "-s", "--filter", f"label={label}")
    assert ours.stdout.splitlines()[0].split() == theirs.stdout.splitlines()[0].split()


def test_ps_json_matches_docker(daemon, ps_state):
    label, _ = ps_state
    ours, theirs, _, _ = same(daemon, "ps", "-a", "--filter", f"label={label}", "--format",
                              "json")

    def load(s):
        rows = [json.loads(line) for line in s.splitlines()]
        for r in rows:
            r.pop("RunningFor")
            r.pop("Status")
        return rows

    assert load(ours.stdout) == load(theirs.stdout)
    assert len(load(ours.stdout)) == 3


def test_ps_image_by_id_is_short(daemon):
    iid = daemon.docker("inspect", "--format", "{{.Id}}", "busybox").stdout.strip()
    a, b = uid("byid"), uid("byid")
    daemon.docker("create", "--name", a, iid, "true")
    daemon.docker("create", "--name", b, iid[7:19], "true")
    try:
        for extra in ([], ["--no-trunc"]):
            r = assert_same(daemon, "ps", "-a", *extra, "--filter", f"name={a}", "--filter",
                            f"name={b}", "--format", "{{.Image}}|{{.Names}}")
            assert len(r.stdout.splitlines()) == 2
    finally:
        daemon.docker("rm", a, b)


def test_ps_bad_filter(daemon):
    assert_same(daemon, "ps", "--filter", "bad")


# -------------------------------------------------------------------------- inspect/logs/...


@pytest.fixture(scope="module")
def sleeper(daemon):
    name = uid("sl")
    r = daemon.dockyard("run", "-d", "--name", name, "busybox", "sh", "-c",
                        "echo one; echo two >&2; echo three; touch /newfile; rm /etc/passwd;"
                        " exec sleep 1000")
    assert r.returncode == 0, r.stderr
    for _ in range(100):
        if "three" in daemon.docker("logs", name).stdout:
            break
        time.sleep(0.05)
    yield name
    daemon.docker("rm", "-f", name)


def test_inspect_matches_docker(daemon, sleeper):
    fmt = "{{.Name}} {{.State.Status}} {{json .Config.Cmd}} {{.HostConfig.NetworkMode}}"
    r = assert_same(daemon, "inspect", "--format", fmt, sleeper)
    assert r.stdout.startswith(f"/{sleeper} running")
    assert_same(daemon, "container", "inspect", "--format", "{{.Id}}", sleeper)
    assert_same(daemon, "inspect", "--format", "{{.Id}}", "busybox")
    assert_same(daemon, "inspect", "nosuch-object")
    assert_same(daemon, "container", "inspect", "nosuch-object")
    assert_same(daemon, "inspect", "--type", "image", "--format", "{{.Id}}", "busybox")
    ours = json.loads(daemon.dockyard("inspect", sleeper).stdout)
    theirs = json.loads(daemon.docker("inspect", sleeper).stdout)
    assert ours == theirs


def test_logs_match_docker(daemon, sleeper):
    r = assert_same(daemon, "logs", sleeper)
    assert (r.stdout, r.stderr) == ("one\nthree\n", "two\n")
    assert_same(daemon, "logs", "--tail", "1", sleeper)
    assert_same(daemon, "logs", "-t", sleeper)
    assert_same(daemon, "logs", "--since", "1h", sleeper)
    r = assert_same(daemon, "logs", "--until", "1h", sleeper)
    assert r.stdout == ""
    assert_same(daemon, "logs", "nosuch-c")


def test_exec_matches_docker(daemon, sleeper):
    r = assert_same(daemon, "exec", sleeper, "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.stdout, r.stderr, r.returncode) == ("out\n", "err\n", 4)
    r = assert_same(daemon, "exec", "-e", "X=1", "-w", "/tmp", "-u", "1000:1000", sleeper,
                    "sh", "-c", "echo $X $(pwd) $(id -u)")
    assert r.stdout == "1 /tmp 1000\n"
    r = assert_same(daemon, "exec", "-i", sleeper, "sh", "-c", "cat; echo end", input="in\n")
    assert r.stdout == "in\nend\n"
    assert_same(daemon, "exec", "nosuch-c", "true")
    r = assert_same(daemon, "exec", sleeper, "nosuchcmd")
    assert r.returncode == 126 and "executable file not found" in r.stdout + r.stderr  # dockerd: 126
    assert daemon.dockyard("exec", "-d", sleeper, "sh", "-c", "echo x > /tmp/d").returncode == 0
    for _ in range(50):
        if daemon.docker("exec", sleeper, "cat", "/tmp/d").stdout == "x\n":
            break
        time.sleep(0.05)
    else:
        pytest.fail("exec -d did not run")


def test_exec_not_found_through_docker_cli(daemon, sleeper):
    # the daemon hijacks first and reports a failed start in the stream, as dockerd
    r = daemon.docker("exec", sleeper, "nosuchcmd")
    assert r.returncode == 126   # Debian's dockerd: 126
    assert "executable file not found" in r.stdout + r.stderr


def test_diff_top_port_wait_match_docker(daemon, sleeper):
    r = assert_same(daemon, "diff", sleeper)
    assert "A /newfile" in r.stdout.splitlines() and "D /etc/passwd" in r.stdout.splitlines()
    ours, theirs, _, _ = same(daemon, "top", sleeper)
    assert ours.stdout.splitlines()[0] == theirs.stdout.splitlines()[0]
    assert "sleep 1000" in ours.stdout
    ours, theirs, _, _ = same(daemon, "top", sleeper, "-o", "pid,comm")
    assert ours.stdout.split() == theirs.stdout.split()
    assert_same(daemon, "port", sleeper)
    assert_same(daemon, "port", sleeper, "80")
    assert_same(daemon, "port", sleeper, "80/udp")
    name = uid("w")
    daemon.docker("run", "--name", name, "busybox", "sh", "-c", "exit 5")
    r = assert_same(daemon, "wait", name)
    assert r.stdout == "5\n"
    assert_same(daemon, "wait", "nosuch-c")
    daemon.docker("rm", name)


# -------------------------------------------------------------------------- lifecycle


def state(daemon, name: str) -> str:
    return daemon.docker("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def test_lifecycle_commands(daemon):
    a, b = uid("lc"), uid("lc")
    d = daemon.dockyard
    assert d("create", "--name", a, "busybox", "sleep", "1000").returncode == 0
    assert state(daemon, a) == "created"
    r = d("start", a)
    assert (r.stdout, r.returncode) == (a + "\n", 0)
    assert state(daemon, a) == "running"
    assert d("pause", a).stdout == a + "\n"
    assert state(daemon, a) == "paused"
    assert d("unpause", a).stdout == a + "\n"
    r = d("kill", "-s", "KILL", a)
    assert r.stdout == a + "\n"
    assert d("wait", a).stdout == "137\n"
    assert d("start", a).returncode == 0
    r = d("stop", "-t", "1", a)
    assert (r.stdout, r.returncode) == (a + "\n", 0)
    assert state(daemon, a) == "exited"
    assert d("stop", a).returncode == 0  # 304: already stopped is success
    r = d("restart", "-t", "1", a)
    assert (r.stdout, state(daemon, a)) == (a + "\n", "running")
    assert d("rename", a, b).returncode == 0
    assert state(daemon, b) == "running"
    r = d("update", "--memory", "64m", "--restart", "always", b)
    assert r.returncode == 0, r.stderr
    assert daemon.docker("inspect", "--format", "{{.HostConfig.Memory}} "
                         "{{.HostConfig.RestartPolicy.Name}}", b).stdout == "67108864 always\n"
    assert_same(daemon, "rm", b)  # running: refused
    r = d("rm", "-f", b, "nosuch-c")
    assert (r.stdout, r.returncode) == (b + "\n", 1)
    assert r.stderr == "Error response from daemon: No such container: nosuch-c\n"
    assert_same(daemon, "start", "nosuch-c")
    assert_same(daemon, "stop", "nosuch-c", "nosuch-d")
    assert_same(daemon, "kill", "nosuch-c")


def test_rm_several_in_parallel(daemon):
    names = [uid("rm") for _ in range(4)]
    for n in names:
        daemon.docker("create", "--name", n, "busybox")
    r = daemon.dockyard("rm", *names)
    assert (r.stdout.split(), r.returncode) == (names, 0)
    assert daemon.docker("ps", "-aq", "--filter", f"name={names[0]}").stdout == ""


def test_start_attach_and_run_rm(daemon):
    name = uid("sa")
    daemon.docker("create", "--name", name, "busybox", "sh", "-c", "echo hi; exit 2")
    r = daemon.dockyard("start", "-a", name)
    assert (r.stdout, r.returncode) == ("hi\n", 2)
    name2 = uid("sa")
    daemon.docker("create", "-i", "--name", name2, "busybox", "sh", "-c", "cat; exit 1")
    r = daemon.dockyard("start", "-ai", name2, input="piped\n")
    assert (r.stdout, r.returncode) == ("piped\n", 1)
    daemon.docker("rm", name, name2)
    name3 = uid("rm")
    assert daemon.dockyard("run", "--rm", "--name", name3, "busybox", "true").returncode == 0
    assert daemon.docker("ps", "-aq", "--filter", f"name={name3}").stdout == ""


def test_attach_streams_output_and_exit_code(daemon):
    import subprocess
    import sys

    name = uid("at")
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "sleep 2; echo late; exit 6")
    p = subprocess.run([sys.executable, "-m", "dockyard", "attach", name], env=daemon.env,
                       capture_output=True, text=True, timeout=30)
    assert (p.stdout, p.returncode) == ("late\n", 6)
    assert_same(daemon, "attach", name)  # stopped now
    daemon.docker("rm", name)


def test_commit_and_export(daemon, sleeper, tmp_path):
    repo = f"committed-{uuid.uuid4().hex[:6]}"
    r = daemon.dockyard("commit", "-c", 'CMD ["cat", "/newfile2"]', "-m", "msg", "-a", "me",
                        sleeper, f"{repo}:v1")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout)
    daemon.docker("exec", sleeper, "sh", "-c", "echo hello > /newfile2")
    r = daemon.dockyard("commit", sleeper, f"{repo}:v2")
    assert daemon.docker("run", "--rm", f"{repo}:v2", "cat", "/newfile2").stdout == "hello\n"
    info = json.loads(daemon.docker("image", "inspect", f"{repo}:v1").stdout)[0]
    assert (info["Comment"], info["Author"], info["Config"]["Cmd"]) == \
        ("msg", "me", ["cat", "/newfile2"])
    out = tmp_path / "exp.tar"
    r = daemon.dockyard("export", "-o", str(out), sleeper)
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as t:
        names = set(t.getnames())
    assert "bin/busybox" in names or "./bin/busybox" in names
    r = daemon.dockyard("export", sleeper, text=False)
    assert r.stdout[:512] and r.returncode == 0
    daemon.docker("rmi", f"{repo}:v1", f"{repo}:v2")


def test_container_prune_and_aliases(daemon):
    label = f"pr={uuid.uuid4().hex[:8]}"
    keep, gone = uid("pr"), uid("pr")
    daemon.docker("run", "--name", gone, "-l", label, "busybox", "true")
    daemon.docker("run", "-d", "--name", keep, "-l", label, "busybox", "sleep", "1000")
    gid = daemon.docker("inspect", "--format", "{{.Id}}", gone).stdout.strip()
    r = daemon.dockyard("container", "prune", "-f", "--filter", f"label={label}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Deleted Containers:\n{gid}\n\nTotal reclaimed space: ")
    r = daemon.dockyard("container", "ls", "-a", "--filter", f"label={label}", "--format",
                        "{{.Names}}")
    assert r.stdout == keep + "\n"
    assert daemon.dockyard("container", "rm", "-f", keep).stdout == keep + "\n"
    r = daemon.dockyard("container")
    assert r.returncode == 0 and "  run\n" in r.stdout


def test_stats_no_stream(daemon, sleeper):
    r = assert_same(daemon, "stats", "--no-stream", "--format", "{{.Name}} {{.ID}}", sleeper)
    assert r.stdout.startswith(sleeper + " ")
    r = daemon.dockyard("stats", "--no-stream", sleeper)
    assert r.returncode == 0
    head = r.stdout.splitlines()[0]
    assert re.split(r"\s{2,}", head) == ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT",
                                         "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
    assert_same(daemon, "stats", "--no-stream", "nosuch-c")


def test_python_api(daemon):
    from dockyard.client import Client

    with Client(daemon.host) as c:
        cid = c.create_container({"Image": "busybox", "Cmd": ["sh", "-c", "echo api; exit 9"]},
                                 name=uid("api"))["Id"]
        waiter = c.wait_response(cid, "next-exit")
        c.start(cid)
        from dockyard.client.containers import iter_frames, wait_result

        assert wait_result(waiter) == 9
        frames = list(iter_frames(c.logs(cid).iter_chunks()))
        assert frames == [(1, b"api\n")]
        assert c.inspect_container(cid)["State"]["ExitCode"] == 9
        assert any(x["Id"] == cid for x in c.containers(all=True))
        c.remove_container(cid)
        from dockyard import errors

        with pytest.raises(errors.NotFound):
            c.inspect_container(cid)


def test_signals_are_proxied_to_the_container(daemon):
    import signal
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "dockyard", "run", "--rm", "busybox", "sh",
                          "-c", 'trap "echo got TERM; exit 9" TERM; echo ready; '
                          "while true; do sleep 0.1; done"],
                         env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 9
        assert p.stdout.read() == b"got TERM\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def test_more_outputs_match_docker(daemon, sleeper):
    a, b = uid("mo"), uid("mo")
    daemon.docker("run", "--name", a, "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; "
                  "sleep 0.2; done; exit 2")
    daemon.docker("create", "--name", b, "busybox", "true")
    try:
        r = assert_same(daemon, "wait", a, "nosuch-c", a)
        assert r.stdout == "2\n2\n"
        assert_same(daemon, "logs", "--details", a)
        assert_same(daemon, "logs", "-f", a)
        assert_same(daemon, "logs", "--tail", "0", a)
        assert_same(daemon, "logs", "--since", "not-a-time", a)
        assert_same(daemon, "inspect", "-s", "--format", "{{.SizeRw}} {{.Name}}", a)
        assert_same(daemon, "ps", "-a", "--filter", f"name={a}", "--format",
                    "{{.Names}} {{.Size}}")
        assert_same(daemon, "top", a)                  # not running
        assert_same(daemon, "rename", a, b)            # name taken
        assert_same(daemon, "create", "--name", b, "busybox")  # 409
        assert_same(daemon, "run", "--name", b, "busybox")     # 409
        assert_same(daemon, "update", a)               # no flags
        assert_same(daemon, "update", "--cpus", "x", a)
        assert_same(daemon, "pause", a)                # not running
        assert_same(daemon, "unpause", sleeper)        # not paused
        assert_same(daemon, "update", "-m", "foo", sleeper)
        assert_same(daemon, "kill", "-s", "BOGUS", sleeper)
        assert_same(daemon, "stop", "-t", "x", sleeper)
        assert_same(daemon, "logs", "--tail", "1", "-t", "--details", sleeper)
        assert_same(daemon, "exec", a, "true")         # not running
        assert_same(daemon, "diff", "nosuch-c")
        assert_same(daemon, "commit", "nosuch-c")
        assert_same(daemon, "export", "nosuch-c")
        assert_same(daemon, "port", "nosuch-c")
        r = daemon.dockyard("rm", "-v", b)
        assert (r.stdout, r.returncode) == (b + "\n", 0)
    finally:
        daemon.docker("rm", "-f", a, b)


def test_logs_follow_streams_until_exit(daemon):
    import subprocess
    import sys

    name = uid("lf")
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "echo first; sleep 1; echo second >&2; sleep 0.5; echo third")
    try:
        p = subprocess.run([sys.executable, "-m", "dockyard", "logs", "-f", name],
                           env=daemon.env, capture_output=True, text=True, timeout=30)
        assert (p.stdout, p.stderr, p.returncode) == ("first\nthird\n", "second\n", 0)
    finally:
        daemon.docker("rm", "-f", name)


def test_python_api_exec_and_attach(daemon, sleeper):
    from dockyard.client import Client
    from dockyard.supervisor.protocol import FrameDecoder

    def drain(h) -> list[tuple[int, bytes]]:
        dec, out, data = FrameDecoder(), [], h.buffered
        while True:
            out += dec.feed(data)
            data = h.sock.recv(65536)
            if not data:
                return out

    with Client(daemon.host) as c:
        eid = c.exec_create(sleeper, {"AttachStdin": True, "AttachStdout": True,
                                      "AttachStderr": True, "Cmd": ["sh", "-c",
                                                                    "cat; echo e >&2; exit 3"]})
        h = c.exec_start_socket(eid)
        h.sock.sendall(b"via stdin\n")
        import socket

        h.sock.shutdown(socket.SHUT_WR)
        frames = drain(h)
        h.close()
        assert b"".join(p for s, p in frames if s == 1) == b"via stdin\n"
        assert b"".join(p for s, p in frames if s == 2) == b"e\n"
        assert c.exec_inspect(eid)["ExitCode"] == 3
        cid = c.create_container({"Image": "busybox", "Cmd": ["sh", "-c", "echo attached"]})["Id"]
        h = c.attach_socket(cid)
        waiter = c.wait_response(cid, "next-exit")
        c.start(cid)
        assert drain(h) == [(1, b"attached\n")]
        h.close()
        from dockyard.client.containers import wait_result

        assert wait_result(waiter) == 0
        c.remove_container(cid)


def test_tty_container_output_and_logs_are_raw(daemon):
    name = uid("tt")
    try:
        r = daemon.dockyard("run", "-t", "--name", name, "busybox", "sh", "-c",
                            "echo out; echo err >&2", text=False)
        assert (r.stdout, r.stderr, r.returncode) == (b"out\r\nerr\r\n", b"", 0)
        ours = daemon.dockyard("logs", name, text=False)
        theirs = daemon.docker("logs", name, text=False)
        assert ours.stdout == theirs.stdout == b"out\r\nerr\r\n"
        ours = daemon.dockyard("run", "--rm", "-t", "busybox", "sh", "-c", "echo x; exit 2",
                               text=False)
        theirs = daemon.docker("run", "--rm", "-t", "busybox", "sh", "-c", "echo x; exit 2",
                               text=False)
        assert (ours.stdout, ours.returncode) == (theirs.stdout, theirs.returncode) == \
            (b"x\r\n", 2)
    finally:
        daemon.docker("rm", "-f", name)


def test_stats_without_names_follows_new_containers(daemon):
    import subprocess
    import sys

    name = uid("sf")
    p = subprocess.Popen([sys.executable, "-m", "dockyard", "stats", "--format", "{{.Name}}"],
                         env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        assert daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000"
                             ).returncode == 0
        deadline = time.monotonic() + 20
        seen = b""
        import os
        import select

        while time.monotonic() < deadline and name.encode() not in seen:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                seen += os.read(p.stdout.fileno(), 65536)
        assert name.encode() in seen
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        daemon.docker("rm", "-f", name)


def test_run_a_directory_is_126(daemon):
    r = daemon.docker("run", "--rm", "busybox", "/etc")
    assert r.returncode == 126 and "/etc" in r.stderr


def test_exec_unknown_user_is_126(daemon, sleeper):
    r = daemon.docker("exec", "-u", "nosuchuser", sleeper, "true")
    assert r.returncode == 126 and "nosuchuser" in r.stdout + r.stderr
