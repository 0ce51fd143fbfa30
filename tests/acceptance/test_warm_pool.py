"""The warm pool: after a `run --rm`, the next identical one takes a container made
ahead of time (containers/warm.py). It must be indistinguishable from a fresh one and
leave nothing behind."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from acceptance.harness import Daemon, import_busybox, leftovers, warm_ids

pytestmark = pytest.mark.slow

PROBE = ["sh", "-c", 'hostname; cat /etc/hostname; echo "$HOSTNAME"; echo $A; exit 3']


def _warm_for(d: Daemon, tag: str | None) -> list[str]:
    """Ready warm containers (made up to the runtime's create) for PROBE with A=tag."""
    import sqlite3

    con = sqlite3.connect(f"file:{d.data / 'metadata.db'}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT id, record FROM containers WHERE name LIKE '/ warm %'").fetchall()
    finally:
        con.close()
    return [i for i, rec in rows
            if (tag is None or f"A={tag}" in json.loads(rec)["Config"].get("Env", []))
            and (d.data / "containers" / i / "warm").exists()
            and os.path.isdir(d.data / "runtime" / i)]


def _wait_warm(d: Daemon, tag: str | None = None, present: bool = True,
               timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = _warm_for(d, tag)
        if bool(ids) == present:
            return ids
        time.sleep(0.05)
    raise AssertionError(f"warm pool {'empty' if present else 'not empty'}: {warm_ids(d)}")


def _probe(d: Daemon, *extra: str, tag: str) -> list[str]:
    r = d.docker("run", "--rm", *extra, "-e", f"A={tag}", "busybox", *PROBE, check=False)
    assert r.returncode == 3, r.stderr
    return r.stdout.split("\n")[:4]


def test_identical_run_takes_the_warm_container_and_is_like_a_fresh_one(fresh_daemon):
    d = fresh_daemon
    tag = uuid.uuid4().hex[:6]
    first = _probe(d, tag=tag)
    assert first[0] == first[1] == first[2] and first[3] == tag
    time.sleep(0.5)
    assert _warm_for(d, None) == []   # a single run is not a series: nothing made ahead
    first = _probe(d, tag=tag)
    (wid,) = _wait_warm(d, tag)
    assert wid[:12] != first[0]
    # invisible while it waits
    assert wid not in d.out("ps", "-aq", "--no-trunc").split()
    assert d.docker("inspect", wid, check=False).returncode == 1
    # a different run does not take it
    other = _probe(d, tag=tag + "x")
    assert other[0] != wid[:12] and other[3] == tag + "x"
    # the identical one does: its own id, hostname, /etc/hostname and $HOSTNAME
    second = _probe(d, tag=tag)
    assert second == [wid[:12]] * 3 + [tag]
    # and the one after that takes a fresh warm container made meanwhile
    third = _probe(d, tag=tag)
    assert third[0] not in (wid[:12], first[0]) and third[3] == tag
    # events as for any container, and nothing of it left after its removal
    since = str(int(time.time()) - 1)
    (wid2,) = _wait_warm(d, tag)
    assert _probe(d, tag=tag)[0] == wid2[:12]
    ev = d.out("events", "--since", since, "--until", str(int(time.time()) + 1),
               "--filter", f"container={wid2}", "--format", "{{.Status}}")
    assert ev.split() == ["create", "attach", "start", "die", "destroy"]
    deadline = time.monotonic() + 10
    while (d.data / "containers" / wid2).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (d.data / "containers" / wid2).exists()


def test_created_then_updated_container_is_made_anew(fresh_daemon):
    # `docker create` with the same body takes the warm container; `update` before the
    # start changes its resources, so the start makes the runtime container anew
    d = fresh_daemon
    cl = d.client().api
    body = dict(image="busybox", command=["sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"],
                host_config=cl.create_host_config(auto_remove=True))
    for _ in range(2):
        c = cl.create_container(**body)["Id"]
        cl.start(c)
        deadline = time.monotonic() + 20
        while cl.containers(all=True, filters={"id": c}) and time.monotonic() < deadline:
            time.sleep(0.05)
    (wid,) = _wait_warm(d)
    c = cl.create_container(**body)["Id"]
    assert c == wid
    cl.update_container(c, mem_limit="64m", memswap_limit="128m")
    sock = cl.attach_socket(c, params={"stdout": 1, "stream": 1})
    cl.start(c)
    data = b""
    while True:
        chunk = sock._sock.recv(4096) if hasattr(sock, "_sock") else sock.recv(4096)
        if not chunk:
            break
        data += chunk
    assert str(64 << 20).encode() in data
    deadline = time.monotonic() + 10
    while (d.data / "containers" / wid).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (d.data / "containers" / wid).exists()   # removed (--rm) like any other


def test_warm_pool_is_torn_down_by_stop_kill9_and_rmi(fresh_daemon):
    d = fresh_daemon
    before = leftovers(d)
    _probe(d, tag="k")
    _probe(d, tag="k")
    (wid,) = _wait_warm(d, "k")
    # kill -9: the next daemon tears the pool down at its start
    d.kill9()
    d.start()
    assert _wait_warm(d, present=False) == []
    assert warm_ids(d) == []
    assert not (d.data / "containers" / wid).exists()
    assert not [m for m in open("/proc/self/mountinfo") if wid in m]
    assert not os.path.exists(f"/sys/fs/cgroup/memory{d.cgroup_parent}/{wid}")
    # a container that took a warm one but was not started when the daemon died: the
    # next daemon lets its waiting init go; its start makes it anew
    for _ in range(2):
        _probe(d, tag="t")
    (wid,) = _wait_warm(d, "t")
    cid = d.out("create", "--rm", "-e", "A=t", "busybox", *PROBE)
    assert cid == wid   # `docker create` sends what `docker run` sends
    d.kill9()
    d.start()
    assert not os.path.isdir(d.data / "runtime" / cid)
    r = d.docker("start", "-a", cid, check=False)
    assert r.returncode == 3 and r.stdout.split("\n")[:4] == [cid[:12]] * 3 + ["t"]
    # one taken by `docker create` and removed unstarted: its waiting init goes too
    for _ in range(2):
        _probe(d, tag="u")
    (wid,) = _wait_warm(d, "u")
    cid = d.out("create", "--rm", "-e", "A=u", "busybox", *PROBE)
    assert cid == wid
    pid = json.loads((d.data / "runtime" / cid / "state.json").read_text())["pid"]
    d.out("rm", cid)
    assert not os.path.exists(f"/proc/{pid}") and not (d.data / "containers" / cid).exists()
    assert (d.data / "supervisor" / "tasks").is_dir()
    assert not (d.data / "supervisor" / "tasks" / cid).exists()   # the supervisor forgot it
    # a clean stop does too
    _probe(d, tag="s")
    _probe(d, tag="s")
    (wid,) = _wait_warm(d, "s")
    d.stop()
    d.start()
    assert not (d.data / "containers" / wid).exists()
    # rmi of the image it was made from
    d.out("tag", "busybox", "warmimg:1")
    for _ in range(2):
        _probe(d, tag="r")  # busybox
        assert d.docker("run", "--rm", "warmimg:1", "true").returncode == 0
    deadline = time.monotonic() + 20
    while len(warm_ids(d)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(warm_ids(d)) == 2
    d.out("rmi", "warmimg:1")
    assert d.docker("image", "inspect", "warmimg:1", check=False).returncode == 1
    assert warm_ids(d) == []
    assert leftovers(d) == before


def test_warm_pool_off(tmp_path):
    d = Daemon(tmp_path, extra_args=("--warm-pool", "0"))
    try:
        d.start()
        import_busybox(d)
        _probe(d, tag="o")
        _probe(d, tag="o")
        time.sleep(0.5)
        assert warm_ids(d) == []
        assert os.listdir(d.data / "containers") == []
    finally:
        d.close()
