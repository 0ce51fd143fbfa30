"""The real docker CLI against `dockyard daemon`: the lifecycle commands after run."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
import uuid

import pytest

from acceptance.harness import DOCKER

pytestmark = pytest.mark.slow


def uniq(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def until(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.1)
    return fn()


def state(d, name):
    return json.loads(d.out("inspect", name))[0]["State"]


def test_stop_kill_restart_rm_wait(daemon):
    name = uniq()
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "trap 'echo got HUP' HUP; while true; do sleep 0.1; done")
    time.sleep(0.3)
    daemon.docker("kill", "-s", "SIGHUP", name)
    assert until(lambda: "got HUP" in daemon.out("logs", name))
    assert state(daemon, name)["Running"]
    r = daemon.docker("rm", name, check=False)
    assert r.returncode == 1 and "You cannot remove a running container" in r.stderr
    pid1 = state(daemon, name)["Pid"]
    daemon.docker("restart", "-t", "1", name)
    st = state(daemon, name)
    assert st["Running"] and st["Pid"] != pid1
    daemon.docker("kill", name)
    assert daemon.out("wait", name) == "137"
    r = daemon.docker("kill", name, check=False)
    assert r.returncode == 1 and "is not running" in r.stderr
    daemon.docker("stop", name)  # stopped already: fine
    daemon.docker("rm", "-v", name)
    r = daemon.docker("rm", name, check=False)
    assert r.returncode == 1 and f"No such container: {name}" in r.stderr
    # rm -f of a running container; wait on several
    a, b = uniq(), uniq()
    daemon.docker("run", "-d", "--name", a, "busybox", "sh", "-c", "sleep 0.5; exit 2")
    daemon.docker("run", "-d", "--name", b, "busybox", "sh", "-c", "sleep 0.7; exit 3")
    assert daemon.out("wait", a, b).split() == ["2", "3"]
    c = uniq()
    daemon.docker("run", "-d", "--name", c, "busybox", "sleep", "1000")
    daemon.docker("rm", "-f", c)
    assert daemon.out("ps", "-aq", "--filter", f"name={c}") == ""
    daemon.docker("rm", a, b)


def test_logs_flags(daemon):
    name = uniq()
    daemon.docker("run", "--name", name, "busybox", "sh", "-c",
                  "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2")
    r = daemon.docker("logs", name)
    assert r.stdout == "line1\nline2\nline3\nline4\nline5\n" and r.stderr == "oops\n"
    assert daemon.out("logs", "--tail", "2", name) == "line5"  # stdout part of the last 2
    r = daemon.docker("logs", "--tail", "2", name)
    assert r.stdout == "line5\n" and r.stderr == "oops\n"
    lines = daemon.out("logs", "-t", name).splitlines()
    assert lines[0].endswith(" line1") and lines[0][:4].isdigit() and "T" in lines[0].split()[0]
    assert daemon.out("logs", "--since", "1h", name).startswith("line1")
    assert daemon.out("logs", "--until", "2000-01-01T00:00:00Z", name) == ""
    future = str(int(time.time()) + 3600)
    assert daemon.docker("logs", "--since", future, name).stdout == ""
    daemon.docker("rm", name)
    # -f follows until the container exits
    name = uniq()
    daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  "for i in 1 2 3; do echo f$i; sleep 0.3; done")
    r = daemon.docker("logs", "-f", name, timeout=30)
    assert r.stdout == "f1\nf2\nf3\n"
    daemon.docker("rm", name)


def test_attach_without_tty(daemon):
    # (detach keys need a tty on the client side, as with dockerd: see test_cli_tty)
    name = uniq()
    daemon.docker("run", "-d", "-i", "--name", name, "busybox", "sh", "-c",
                  "while read l; do [ $l = quit ] && exit 5; echo echo:$l; done")
    p = subprocess.Popen([DOCKER, "attach", name], env=daemon.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    p.stdin.write(b"hello\n")
    p.stdin.flush()
    time.sleep(0.3)
    p.stdin.write(b"quit\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=20)
    assert out == b"echo:hello\n" and p.returncode == 5, (out, err)
    daemon.docker("rm", name)


def test_top_pause_unpause_rename_update(daemon):
    name = uniq()
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000")
    top = daemon.out("top", name)
    assert top.splitlines()[0].split()[:2] == ["UID", "PID"] and "sleep 1000" in top
    pid = str(state(daemon, name)["Pid"])
    top = daemon.out("top", name, "-o", "pid,args")
    assert top.splitlines()[0].split() == ["PID", "COMMAND"]
    assert top.splitlines()[1].split() == [pid, "sleep", "1000"]
    daemon.docker("pause", name)
    assert state(daemon, name)["Status"] == "paused"
    assert "(Paused)" in daemon.out("ps", "--filter", f"name={name}", "--format", "{{.Status}}")
    r = daemon.docker("exec", name, "true", check=False)
    assert r.returncode != 0 and "paused" in r.stderr
    daemon.docker("unpause", name)
    assert state(daemon, name)["Status"] == "running"
    new = uniq("renamed")
    daemon.docker("rename", name, new)
    assert json.loads(daemon.out("inspect", new))[0]["Name"] == "/" + new
    r = daemon.docker("inspect", name, check=False)
    assert r.returncode == 1 and "No such object" in r.stderr
    daemon.docker("update", "--cpu-shares", "256", "--pids-limit", "77", new)
    hc = json.loads(daemon.out("inspect", new))[0]["HostConfig"]
    assert hc["CpuShares"] == 256 and hc["PidsLimit"] == 77
    daemon.docker("rm", "-f", new)


def test_exec_flags(daemon):
    name = uniq()
    daemon.docker("run", "-d", "--name", name, "-e", "BASE=1", "busybox", "sleep", "1000")
    assert daemon.out("exec", name, "echo", "hi") == "hi"
    out = daemon.out("exec", "-e", "X=2", "-w", "/tmp", "-u", "1000", name, "sh", "-c",
                     "echo $BASE $X; pwd; id -u")
    assert out.split("\n") == ["1 2", "/tmp", "1000"]
    r = daemon.docker("exec", "-i", name, "sh", "-c", "cat; exit 7", input="piped\n", check=False)
    assert (r.returncode, r.stdout) == (7, "piped\n")
    daemon.docker("exec", "-d", name, "sh", "-c", "echo detached > /tmp/d")
    assert until(lambda: daemon.docker("exec", name, "cat", "/tmp/d", check=False).stdout == "detached\n")
    r = daemon.docker("exec", name, "nosuch", check=False)
    assert r.returncode == 126 and "executable file not found" in (r.stderr + r.stdout)
    r = daemon.docker("exec", "-t", name, "sh", "-c", "tty >/dev/null && echo istty", check=False)
    assert "istty" in r.stdout
    daemon.docker("stop", "-t", "1", name)
    r = daemon.docker("exec", name, "true", check=False)
    assert r.returncode == 1 and "is not running" in r.stderr
    daemon.docker("rm", name)


def test_diff_commit_export(daemon, tmp_path):
    name = uniq()
    daemon.docker("run", "--name", name, "busybox", "sh", "-c",
                  "echo new > /root/file; rm /etc/hostname.orig 2>/dev/null; mkdir /newdir; rm /bin/vi")
    diff = daemon.out("diff", name).splitlines()
    assert "A /root/file" in diff and "C /root" in diff and "A /newdir" in diff
    assert "D /bin/vi" in diff and "C /bin" in diff
    assert not any(line.endswith(("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")) for line in diff)
    img = "committed-" + uuid.uuid4().hex[:6]
    iid = daemon.out("commit", "-a", "Ann Author", "-m", "a message", "-c", "ENV FOO=bar",
                     "-c", 'CMD ["cat", "/root/file"]', "-c", "WORKDIR /root", name, f"{img}:v1")
    assert iid.startswith("sha256:")
    info = json.loads(daemon.out("image", "inspect", f"{img}:v1"))[0]
    assert info["Author"] == "Ann Author" and info["Comment"] == "a message"
    assert "FOO=bar" in info["Config"]["Env"] and info["Config"]["Cmd"] == ["cat", "/root/file"]
    assert info["Config"]["WorkingDir"] == "/root"
    assert daemon.out("run", "--rm", f"{img}:v1") == "new"
    r = daemon.docker("run", "--rm", f"{img}:v1", "ls", "/bin/vi", check=False)
    assert r.returncode != 0
    # export: the container's whole filesystem
    out = subprocess.run([DOCKER, "export", name], env=daemon.env, capture_output=True, check=True).stdout
    names = tarfile.open(fileobj=io.BytesIO(out)).getnames()
    assert "root/file" in names and "bin/busybox" in names and "bin/vi" not in names
    dest = tmp_path / "exp.tar"
    daemon.docker("export", "-o", str(dest), name)
    assert dest.stat().st_size == len(out)
    # commit --pause of a running container
    run = uniq()
    daemon.docker("run", "-d", "--name", run, "busybox", "sh", "-c", "echo x > /x; sleep 1000")
    time.sleep(0.3)
    daemon.docker("commit", "--pause=true", run, f"{img}:v2")
    assert state(daemon, run)["Status"] == "running"
    daemon.docker("commit", "--pause=false", run, f"{img}:v3")
    assert daemon.out("run", "--rm", f"{img}:v3", "cat", "/x") == "x"
    daemon.docker("rm", "-f", run, name)


def test_container_prune(daemon):
    a, b, keep = uniq(), uniq(), uniq()
    daemon.docker("create", "--name", a, "--label", "prune=yes", "busybox")
    daemon.docker("run", "--name", b, "--label", "prune=yes", "busybox", "true")
    daemon.docker("run", "-d", "--name", keep, "--label", "prune=yes", "busybox", "sleep", "1000")
    out = daemon.out("container", "prune", "-f", "--filter", "label=prune=yes")
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    left = daemon.out("ps", "-a", "--filter", "label=prune=yes", "--format", "{{.Names}}").split()
    assert left == [keep]
    daemon.docker("rm", "-f", keep)


def test_stats(daemon):
    name = uniq()
    daemon.docker("run", "-d", "--name", name, "-m", "64m", "busybox", "sh", "-c",
                  "while true; do :; done")
    out = daemon.out("stats", "--no-stream", name)
    head, row = out.splitlines()
    assert head.split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert name in row and "%" in row and "64MiB" in row
    cpu = float(row.split()[2].rstrip("%"))
    assert cpu > 5.0  # a busy loop
    out = daemon.out("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", name)
    assert out.startswith(name) and "/ 64MiB" in out and out.endswith(" 1")
    # streaming: the CLI redraws; read a few seconds of it
    p = subprocess.Popen([DOCKER, "stats", "--format", "{{.Name}} {{.CPUPerc}}", name], env=daemon.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.5)
    p.kill()
    out, err = p.communicate()
    assert out.count(name.encode()) >= 2 and b"%" in out, (out, err)
    # all containers (opens /events, lists, then stats each)
    out = daemon.out("stats", "--no-stream", "-a", "--format", "{{.Name}}")
    assert name in out.split()
    daemon.docker("rm", "-f", name)
    stopped = uniq()
    daemon.docker("create", "--name", stopped, "busybox")
    out = daemon.out("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}", stopped)
    assert out.split()[:2] == [stopped, "0.00%"]
    daemon.docker("rm", stopped)


def test_events_for_lifecycle_steps(daemon):
    name = uniq("ev")
    since = str(int(time.time()) - 1)
    daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "1000")
    daemon.docker("pause", name)
    daemon.docker("unpause", name)
    daemon.docker("exec", name, "true")
    daemon.docker("kill", name)
    daemon.docker("wait", name)
    daemon.docker("rm", name)
    time.sleep(1.1)
    until_ = str(int(time.time()) + 1)
    out = daemon.out("events", "--since", since, "--until", until_, "--filter", f"container={name}",
                     "--format", "{{.Action}} {{.Actor.Attributes.exitCode}}", timeout=30)
    actions = [ln.split()[0].rstrip(":") for ln in out.splitlines()]
    for a in ("create", "attach", "start", "pause", "unpause", "exec_create", "exec_start",
              "exec_die", "kill", "die", "destroy"):
        if a == "attach":
            continue  # `run -d` does not attach
        assert a in actions, (a, out)
    assert actions.index("create") < actions.index("start") < actions.index("die") \
        < actions.index("destroy")
    assert any(ln.startswith("die 137") for ln in out.splitlines())


def test_logs_rotate(daemon):
    name = uniq("chatty")
    daemon.docker("run", "--name", name, "--log-opt", "max-size=20k", "--log-opt", "max-file=2",
                  "busybox", "sh", "-c", "i=0; while [ $i -lt 5000 ]; do i=$((i+1)); echo line $i; done")
    info = json.loads(daemon.out("inspect", name))[0]
    import glob
    import os

    files = glob.glob(info["LogPath"] + "*")
    assert 1 <= len(files) <= 2
    assert sum(os.path.getsize(f) for f in files) <= 2 * 20 * 1024 + 4096
    lines = daemon.out("logs", name).splitlines()
    assert lines[-1] == "line 5000" and len(lines) < 5000  # the oldest were rotated away
    nums = [int(ln.split()[1]) for ln in lines]
    assert nums == list(range(nums[0], 5001))
    daemon.docker("rm", name)
