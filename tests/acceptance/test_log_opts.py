"""The json-file/local log options dockerd takes beside max-size and max-file: attrs
(labels, labels-regex, env, env-regex, tag) in every entry, mode and max-buffer-size,
compress; each compared with Debian's dockerd 20.10 side by side where it is Docker's
behaviour."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

from helpers.dockerd import dockerd_available, running_dockerd

pytestmark = [pytest.mark.slow]

DOCKER = "/usr/local/bin/docker"


def _n(prefix: str = "lo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _busybox_tar(root) -> bytes:
    from helpers.rootfs import build_busybox_rootfs

    if not (root / "bin/busybox").exists():
        build_busybox_rootfs(root)
    return subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                          check=True).stdout


class _Side:
    def __init__(self, env: dict):
        self.env = env

    def docker(self, *args, check=True, timeout=120):
        r = subprocess.run([DOCKER, *args], env=self.env, capture_output=True,
                           timeout=timeout, text=True)
        if check and r.returncode:
            raise AssertionError(f"docker {args} -> {r.returncode}: {r.stderr}")
        return r

    def out(self, *args) -> str:
        return self.docker(*args).stdout.strip()

    def log_lines(self, name: str) -> list[dict]:
        """The container's json-file lines, without their time and id (which differ)."""
        path, cid = self.out("inspect", "-f", "{{.LogPath}} {{.Id}}", name).split()
        with open(path, "rb") as f:
            raw = f.read().replace(cid[:12].encode(), b"<id>")
        return [re.sub(rb',"time":"[^"]*"}$', b"}", line) for line in raw.splitlines()]


@pytest.fixture(scope="module")
def both(daemon, tmp_path_factory):
    if not dockerd_available():
        pytest.skip("dockerd not installed")
    base = tmp_path_factory.mktemp("dkdlog")
    with running_dockerd(base / "d") as d:
        theirs = _Side(d.env)
        subprocess.run([DOCKER, "import", "-c", 'CMD ["sh"]', "-", "busybox"], env=d.env,
                       input=_busybox_tar(base / "bb"), check=True, capture_output=True)
        try:
            yield _Side(daemon.env), theirs
        finally:
            ids = theirs.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                theirs.docker("rm", "-f", *ids, check=False)


ATTR_RUN = ["--label", "foo=bar", "--label", "baz=q<u>&x", "--label", "other=1",
            "-e", "E1=x", "-e", "E2=y", "-e", "FOO=é z",
            "--log-opt", "labels=foo,nope", "--log-opt", "labels-regex=^b",
            "--log-opt", "env=E1,NOPE", "--log-opt", "env-regex=^F",
            "--log-opt", "tag={{.Name}}/{{.ID}} {{.ImageName}} {{.Command}} {{.DaemonName}}"]


def test_attrs_are_written_and_shown_as_dockerd_does(both):
    ours, theirs = both
    name, plain = _n(), _n()
    try:
        for side in both:
            side.docker("run", "--name", name, *ATTR_RUN, "busybox", "sh", "-c",
                        "echo out; sleep 0.1; echo err >&2")
        lines = ours.log_lines(name)
        assert lines == theirs.log_lines(name), (lines, theirs.log_lines(name))
        cid = ours.out("inspect", "-f", "{{.Id}}", name)
        tid = theirs.out("inspect", "-f", "{{.Id}}", name)
        assert json.loads(lines[0])["attrs"]["tag"] == f"{name}/<id> busybox sh -c " \
            "echo out; sleep 0.1; echo err >&2 docker"
        for args in (("logs", "--details"), ("logs", "--details", "--tail", "1")):
            a, b = ours.docker(*args, name), theirs.docker(*args, name)
            assert (a.stdout, a.stderr) == (b.stdout.replace(tid[:12], cid[:12]),
                                            b.stderr.replace(tid[:12], cid[:12])), (a, b)
        # nothing asked for, nothing matching, or an empty tag: no attrs at all
        for side in both:
            side.docker("run", "--name", plain, "--log-opt", "labels=nope",
                        "--log-opt", "tag=", "busybox", "echo", "x")
        assert ours.log_lines(plain) == theirs.log_lines(plain) == [
            b'{"log":"x\\n","stream":"stdout"}']
    finally:
        for side in both:
            side.docker("rm", "-f", name, plain, check=False)


def test_log_opt_errors_as_dockerd(both):
    ours, theirs = both
    cases = [
        ("create", "--log-opt", "mode=foo"),
        ("create", "--log-opt", "max-buffer-size=1m"),
        ("create", "--log-opt", "mode=blocking", "--log-opt", "max-buffer-size=1m"),
        ("create", "--log-driver", "local", "--log-opt", "labels=a"),
        ("create", "--log-driver", "local", "--log-opt", "tag=a"),
        ("create", "--log-opt", "bogus=1"),
        ("run", "--rm", "--log-opt", "compress=maybe"),
        ("run", "--rm", "--log-opt", "max-file=0"),
        ("run", "--rm", "--log-opt", "max-file=x"),
        ("run", "--rm", "--log-opt", "max-size=x"),
        ("run", "--rm", "--log-opt", "max-size=0"),
        ("run", "--rm", "--log-opt", "max-size=0k"),
        ("run", "--rm", "--log-opt", "max-size=0.5"),
        ("run", "--rm", "--log-opt", "max-size=-1"),
        ("run", "--rm", "--log-opt", "compress=true", "--log-opt", "max-file=1"),
    ]
    for case in cases:
        a = ours.docker(*case, "busybox", "true", check=False)
        b = theirs.docker(*case, "busybox", "true", check=False)
        assert (a.returncode, a.stderr) == (b.returncode, b.stderr), (case, a.stderr, b.stderr)
    # accepted by both
    for case in (("--log-opt", "mode="), ("--log-opt", "mode=blocking"),
                 ("--log-driver", "local", "--log-opt", "compress=true")):
        for side in both:
            assert side.out("run", "--rm", *case, "busybox", "echo", "ok") == "ok"
    # ours and dockerd differ only in the regexp and template libraries' words
    a = ours.docker("run", "--rm", "--log-opt", "tag={{.Nope}}", "busybox", "true", check=False)
    assert a.returncode == 125 and a.stderr.startswith(
        "docker: Error response from daemon: failed to initialize logging driver: template: "
        "log-tag:1:") and "can't evaluate field Nope in type *logger.Info\n" in a.stderr, a.stderr
    for opt in ("labels-regex=(", "env-regex=["):
        a = ours.docker("run", "--rm", "--log-opt", opt, "busybox", "true", check=False)
        b = theirs.docker("run", "--rm", "--log-opt", opt, "busybox", "true", check=False)
        prefix = "docker: Error response from daemon: failed to initialize logging driver: " \
                 "error parsing regexp: "
        assert a.returncode == b.returncode == 125
        assert a.stderr.startswith(prefix) and b.stderr.startswith(prefix), (a.stderr, b.stderr)
    # non-blocking: Docker's, which drops output under pressure; ours never drops: refused
    a = ours.docker("create", "--log-opt", "mode=non-blocking", "busybox", "true", check=False)
    assert a.returncode == 1 and "mode=non-blocking is not supported by Dockyard" in a.stderr


def test_an_adopted_task_keeps_writing_its_attrs(fresh_daemon):
    d = fresh_daemon
    name = _n()
    d.docker("run", "-d", "--name", name, "--label", "app=web", "--log-opt", "labels=app",
             "--log-opt", "tag={{.Name}}", "busybox", "sh", "-c",
             "i=0; while true; do i=$((i+1)); echo seq $i; usleep 20000; done")
    try:
        time.sleep(0.5)
        old = d.supervisor_pid()
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while d.supervisor_pid() in (None, old):
            assert time.monotonic() < deadline, d.log_text()
            time.sleep(0.1)
        time.sleep(1.5)
        path = d.out("inspect", "-f", "{{.LogPath}}", name)
        with open(path, "rb") as f:
            entries = [json.loads(line) for line in f]
        assert len(entries) > 40
        assert all(e["attrs"] == {"app": "web", "tag": name} for e in entries), \
            [e for e in entries if e.get("attrs") != {"app": "web", "tag": name}][:3]
        details = d.docker("logs", "--details", "--tail", "2", name).stdout.splitlines()
        assert len(details) == 2 and all(x.startswith(f"app=web,tag={name} seq ") for x in details)
    finally:
        d.docker("rm", "-f", name, check=False)


def _files(side: _Side, name: str) -> list[str]:
    path = side.out("inspect", "-f", "{{.LogPath}}", name)
    d, base = os.path.split(path)
    deadline = time.monotonic() + 10
    while True:   # the last rotation's file is gzipped in the background
        names = sorted(n.replace(base, "log") for n in os.listdir(d) if n.startswith(base))
        if not any(re.fullmatch(r"log\.\d+", n) for n in names) or time.monotonic() > deadline:
            return names


def test_compressed_rotations_as_dockerd_and_read_by_docker_logs(both, tmp_path):
    ours, theirs = both
    name = _n()
    try:
        for side in both:
            side.docker("run", "--name", name, "--log-opt", "max-size=2k", "--log-opt",
                        "max-file=3", "--log-opt", "compress=true", "--log-opt", "labels=l",
                        "--label", "l=v", "busybox", "sh", "-c",
                        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line $i; done")
        assert _files(ours, name) == _files(theirs, name) == ["log", "log.1.gz", "log.2.gz"]
        for side in both:
            path = side.out("inspect", "-f", "{{.LogPath}}", name)
            with open(path + ".1.gz", "rb") as f:
                head = f.read(12)
                extra = json.loads(f.read(head[10] | head[11] << 8))
            assert head[:3] == b"\x1f\x8b\x08" and head[3] & 0x04 and list(extra) == ["lastTime"]
            entries = [json.loads(x) for x in gzip.open(path + ".1.gz")]
            assert entries[-1]["time"] <= extra["lastTime"] and entries[-1]["attrs"] == {"l": "v"}
        outs = []
        for side in both:
            text = side.out("logs", name)
            nums = [int(x.split()[1]) for x in text.splitlines()]
            assert nums == list(range(nums[0], 301)) and 1 < nums[0] < 300 - 40, (side is ours, nums[:3], _files(side, name))
            outs.append(nums)
            tail = side.out("logs", "--tail", "5", name).splitlines()
            assert tail == [f"line {i}" for i in range(296, 301)]
            details = side.out("logs", "--details", "--tail", str(len(nums)), name).splitlines()
            assert details == [f"l=v line {i}" for i in nums]
        # our reader reads dockerd's files (and the other way round, dockerd reads ours
        # through the same names and header, as the listing above shows)
        from dockyard.supervisor import jsonlog

        path = theirs.out("inspect", "-f", "{{.LogPath}}", name)
        for n in os.listdir(os.path.dirname(path)):
            if n.startswith(os.path.basename(path)):
                with open(os.path.join(os.path.dirname(path), n), "rb") as f:
                    (tmp_path / n.replace(os.path.basename(path), "x-json.log")).write_bytes(f.read())
        got = [int(e.data.split()[1]) for e in jsonlog.read_entries(str(tmp_path / "x-json.log"))]
        assert got == outs[1]
    finally:
        for side in both:
            side.docker("rm", "-f", name, check=False)


def test_a_warm_pool_container_tags_its_log_with_its_own_name(fresh_daemon):
    """The warm pool makes a `run --rm` container ahead, before its name is known: the
    attrs go with the start, so the tag is the taking container's."""
    from acceptance.test_warm_pool import _wait_warm

    d = fresh_daemon
    tag = uuid.uuid4().hex[:6]

    def run(name: str) -> dict:
        d.docker("run", "-d", "--rm", "--name", name, "--log-opt", "tag={{.Name}} {{.ID}}",
                 "-e", f"A={tag}", "busybox", "sh", "-c", "echo hi; sleep 30")
        path, cid = d.out("inspect", "-f", "{{.LogPath}} {{.Id}}", name).split()
        deadline = time.monotonic() + 10
        while not (os.path.exists(path) and os.path.getsize(path)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with open(path, "rb") as f:
            attrs = json.loads(f.readline())["attrs"]
        d.docker("rm", "-f", name)
        return attrs, cid

    for i in range(2):
        name = _n()
        attrs, cid = run(name)
        assert attrs == {"tag": f"{name} {cid[:12]}"}
    (wid,) = _wait_warm(d, tag)
    name = _n()
    attrs, cid = run(name)
    assert cid == wid and attrs == {"tag": f"{name} {cid[:12]}"}
