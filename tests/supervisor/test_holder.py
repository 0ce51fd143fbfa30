"""The supervisor's holder (supervisor/holder.py) with real runc containers: a container
that exits while no supervisor runs keeps its exit code and its last output; stdin and
the holder's own lifetime."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from dockyard.supervisor import client as supclient
from dockyard.supervisor.jsonlog import read_entries
from helpers.bundle import write_bundle
from helpers.procs import processes_with_arg


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def sup(tmp_path):
    root = str(tmp_path / "sup")
    path = supclient.ensure_running(root)
    state = {"root": root, "path": path, "client": supclient.SyncClient(path),
             "runtime_root": str(tmp_path / "rt")}
    yield state
    try:
        reply = supclient.SyncClient(path).request("ping")
        pids = [reply.get("holder"), reply["pid"]]
    except Exception:  # noqa: BLE001 - none answers
        pids = []
    try:
        pids.insert(0, int(open(os.path.join(root, "holder.lock")).read()))
    except (OSError, ValueError):
        pass
    for pid in [p for p in pids if p]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    # a supervisor the holder had just started (not answering yet, so not pinged) would
    # outlive the test: every process of this root goes, found by its --root argument
    for pid in processes_with_arg(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for cid in subprocess.run(["runc", "--root", state["runtime_root"], "list", "-q"],
                              capture_output=True, text=True).stdout.split():
        subprocess.run(["runc", "--root", state["runtime_root"], "delete", "-f", cid],
                       capture_output=True)


def _run(sup, tmp_path, rootfs, args, **kw):
    cid = "t" + uuid.uuid4().hex[:12]
    log_path = str(tmp_path / f"{cid}-json.log")
    bundle = str(write_bundle(tmp_path / f"b-{cid}", rootfs, args, terminal=kw.get("tty", False)))
    sup["client"].request("create", id=cid, bundle=bundle, runtime="runc",
                          runtime_root=sup["runtime_root"], log_path=log_path, **kw)
    pid = sup["client"].request("start", id=cid)["pid"]
    return cid, pid, log_path


def _replacement(sup, old: int) -> supclient.SyncClient:
    """What the daemon does when it finds the supervisor dead."""
    path = supclient.ensure_running(sup["root"])
    c = supclient.SyncClient(path)
    assert c.request("ping")["pid"] != old
    return c


def _wait_line(log_path: str, data: bytes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.data == data for e in read_entries(log_path)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{data!r} not in {log_path}")


def test_exit_while_no_supervisor_runs_keeps_code_and_output(sup, tmp_path, busybox_rootfs):
    trap = ("trap 'echo bye; echo err-bye >&2; exit 9' TERM; echo hi; "
            "while true; do usleep 10000; done")
    cid, pid, log_path = _run(sup, tmp_path, busybox_rootfs, ["sh", "-c", trap])
    _wait_line(log_path, b"hi\n")
    ping = sup["client"].request("ping")
    holder, old = ping.get("holder"), ping["pid"]
    if holder:
        os.kill(holder, signal.SIGSTOP)   # no new supervisor meanwhile
    try:
        os.kill(old, signal.SIGKILL)
        time.sleep(0.3)
        os.kill(pid, signal.SIGTERM)      # it ends while no supervisor runs
        time.sleep(1)
    finally:
        if holder:
            os.kill(holder, signal.SIGCONT)
    c = _replacement(sup, old)
    reply = c.request("wait", id=cid)
    assert reply["exit_code"] == 9
    entries = [(e.stream, e.data) for e in read_entries(log_path)]
    assert ("stdout", b"bye\n") in entries and ("stderr", b"err-bye\n") in entries, entries
    assert c.request("ping")["holder"] == holder
    # the holder recorded it too (for a supervisor that comes after the holder is gone)
    assert open(os.path.join(sup["root"], "tasks", cid, "exit")).read().split()[0] == "9"


def test_stdin_survives_the_supervisor(sup, tmp_path, busybox_rootfs):
    cid, pid, log_path = _run(sup, tmp_path, busybox_rootfs,
                              ["sh", "-c", "while read l; do echo got $l; done; exit 4"],
                              open_stdin=True)
    old = sup["client"].request("ping")["pid"]
    os.kill(old, signal.SIGKILL)
    time.sleep(0.5)
    assert _alive(pid)                    # its stdin did not end with the supervisor
    c = _replacement(sup, old)
    import asyncio

    async def send() -> None:
        ac = supclient.AsyncClient(sup["path"])
        _reply, _reader, writer = await ac.open_stream("attach", id=cid, stdin=True)
        writer.write(b"hello\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()
        await ac.close()

    asyncio.run(send())
    _wait_line(log_path, b"got hello\n")
    c.request("close_stdin", id=cid)      # its end of file reaches it (the holder's copy too)
    assert c.request("wait", id=cid)["exit_code"] == 4


def test_a_second_holder_hands_over_and_a_holder_ends_with_nothing_held(sup, tmp_path):
    ping = sup["client"].request("ping")
    holder = ping["holder"]
    assert holder
    with open(f"/proc/{holder}/comm") as f:
        assert f.read().strip() == "dockyard-holder"
    # another start for the same root leaves the running pair alone
    from dockyard.supervisor.holder import argv

    r = subprocess.run(argv(sup["root"]), capture_output=True, timeout=20)
    assert r.returncode == 0
    assert sup["client"].request("ping") == ping
    # killed while holding nothing: the holder ends with it, nothing is left
    os.kill(ping["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(holder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(holder)


def test_refuses_unknown_arguments(tmp_path):
    from dockyard.supervisor.holder import argv

    r = subprocess.run(argv(str(tmp_path / "s"), ["--bogus"]), capture_output=True, timeout=20)
    assert r.returncode == 2 and b"unknown argument '--bogus'" in r.stderr


def _new_supervisor(sup, old: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = sup["client"].request("ping")["pid"]
        except Exception:  # noqa: BLE001 - none answers yet
            pid = None
        if pid not in (None, old):
            return pid
        time.sleep(0.02)
    raise AssertionError(f"no new supervisor within {timeout} s")


@pytest.mark.slow
def test_reload_skips_the_back_off(sup, tmp_path, busybox_rootfs):
    """SIGHUP to a holder waiting to restart a supervisor that kept dying: one now."""
    cid, pid, _log = _run(sup, tmp_path, busybox_rootfs, ["sleep", "1000"])   # held
    holder = sup["client"].request("ping")["holder"]
    old = sup["client"].request("ping")["pid"]
    for _ in range(4):   # restarted after 0, 1, 2, 4 s
        os.kill(old, signal.SIGKILL)
        old = _new_supervisor(sup, old, 15)
    os.kill(old, signal.SIGKILL)   # the next one in 8 s
    time.sleep(0.3)
    t0 = time.monotonic()
    os.kill(holder, signal.SIGHUP)
    new = _new_supervisor(sup, old, 8)
    assert time.monotonic() - t0 < 4
    reply = sup["client"].request("ping")
    assert reply["holder"] == holder and reply["pid"] == new
    assert _alive(pid)


@pytest.mark.slow
def test_reload_kills_a_supervisor_that_does_not_stop(sup, tmp_path, busybox_rootfs):
    from dockyard.supervisor.holder import RELOAD_KILL_AFTER

    cid, pid, _log = _run(sup, tmp_path, busybox_rootfs, ["sleep", "1000"])
    ping = sup["client"].request("ping")
    os.kill(ping["pid"], signal.SIGSTOP)   # its SIGTERM waits
    t0 = time.monotonic()
    os.kill(ping["holder"], signal.SIGHUP)
    new = _new_supervisor(sup, ping["pid"], RELOAD_KILL_AFTER + 10)
    assert time.monotonic() - t0 >= RELOAD_KILL_AFTER - 0.5
    assert not _alive(ping["pid"]) and _alive(pid)
    assert sup["client"].request("ping")["holder"] == ping["holder"] != new
    assert sup["client"].request("get", id=cid)["task"]["status"] == "running"
