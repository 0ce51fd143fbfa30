"""The supervisor parents real containers (runc and our runtime) and keeps their stdio."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid

import pytest

from dockyard.supervisor import client as supclient
from dockyard.supervisor import protocol
from dockyard.supervisor.jsonlog import read_entries
from helpers.bundle import write_bundle

RUNTIMES = ["runc"]


@pytest.fixture
def supervisor(tmp_path):
    root = str(tmp_path / "sup")
    path = supclient.ensure_running(root)
    sc = supclient.SyncClient(path)
    state = {"root": root, "path": path, "client": sc, "runtime_root": str(tmp_path / "rt")}
    yield state
    for t in sc.request("list")["tasks"]:
        if t["kind"] == "container":
            subprocess.run(["runc", "--root", state["runtime_root"], "delete", "-f", t["id"]],
                           capture_output=True)
    pid = sc.request("ping")["pid"]
    os.kill(pid, signal.SIGTERM)


def _bundle(tmp_path, busybox_template, args, **kw):
    bundle = tmp_path / f"b-{uuid.uuid4().hex[:8]}"
    return str(write_bundle(bundle, busybox_template, args, **kw))


def _create(sup, tmp_path, rootfs, args, **kw):
    cid = "t" + uuid.uuid4().hex[:12]
    log_path = str(tmp_path / f"{cid}-json.log")
    bundle = _bundle(tmp_path, rootfs, args, terminal=kw.get("tty", False))
    sup["client"].request("create", id=cid, bundle=bundle, runtime="runc",
                          runtime_root=sup["runtime_root"], log_path=log_path, **kw)
    return cid, log_path


def test_exit_code_and_json_log(supervisor, tmp_path, busybox_rootfs):
    sc = supervisor["client"]
    cid, log_path = _create(supervisor, tmp_path, busybox_rootfs,
                            ["sh", "-c", "echo out; echo err >&2; exit 3"])
    sc.request("start", id=cid)
    assert sc.request("wait", id=cid)["exit_code"] == 3
    entries = read_entries(log_path)
    got = sorted((e.stream, e.data) for e in entries)
    assert got == [("stderr", b"err\n"), ("stdout", b"out\n")]
    assert sc.request("get", id=cid)["task"]["status"] == "exited"


def test_killed_by_signal_is_128_plus_n(supervisor, tmp_path, busybox_rootfs):
    sc = supervisor["client"]
    cid, _ = _create(supervisor, tmp_path, busybox_rootfs, ["sleep", "100"])
    sc.request("start", id=cid)
    subprocess.run(["runc", "--root", supervisor["runtime_root"], "kill", cid, "KILL"], check=True)
    assert sc.request("wait", id=cid)["exit_code"] == 137


def test_runtime_failure_is_reported_and_nothing_kept(supervisor, tmp_path, busybox_rootfs):
    sc = supervisor["client"]
    from dockyard import errors

    with pytest.raises(errors.DockyardError, match="OCI runtime create failed"):
        _create(supervisor, tmp_path, busybox_rootfs, ["/no/such/binary"])
    assert [t for t in sc.request("list")["tasks"] if t["status"] != "exited"] == []


async def _attach_and_run(sup, cid, stdin_data: bytes | None, tty=False):
    ac = supclient.AsyncClient(sup["path"])
    reply, reader, writer = await ac.open_stream("attach", id=cid, stdout=True, stderr=True,
                                                 stdin=stdin_data is not None)
    await ac.request("start", id=cid)
    if stdin_data is not None:
        writer.write(stdin_data)
        await writer.drain()
        if not tty:
            writer.write_eof()
    out = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), 20)
        if not chunk:
            break
        out += chunk
    code = (await ac.request("wait", id=cid))["exit_code"]
    await ac.close()
    return reply, out, code


def test_attach_before_start_gets_multiplexed_frames(supervisor, tmp_path, busybox_rootfs):
    cid, _ = _create(supervisor, tmp_path, busybox_rootfs,
                     ["sh", "-c", "echo one; echo two >&2"])
    reply, out, code = asyncio.run(_attach_and_run(supervisor, cid, None))
    assert reply["tty"] is False and code == 0
    frames = protocol.FrameDecoder().feed(out)
    assert sorted(frames) == [(1, b"one\n"), (2, b"two\n")]


def test_stdin_is_forwarded_and_closed_at_client_eof(supervisor, tmp_path, busybox_rootfs):
    cid, log_path = _create(supervisor, tmp_path, busybox_rootfs, ["sh", "-c", "cat; echo done"],
                            open_stdin=True, stdin_once=True)
    _, out, code = asyncio.run(_attach_and_run(supervisor, cid, b"hello\n"))
    assert code == 0
    frames = protocol.FrameDecoder().feed(out)
    assert {s for s, _ in frames} == {1} and b"".join(d for _, d in frames) == b"hello\ndone\n"
    assert [e.data for e in read_entries(log_path)] == [b"hello\n", b"done\n"]


def test_tty_gets_raw_bytes_and_resize(supervisor, tmp_path, busybox_rootfs):
    cid, _ = _create(supervisor, tmp_path, busybox_rootfs,
                     ["sh", "-c", "sleep 0.3; stty size; tty"], tty=True, open_stdin=True)
    supervisor["client"].request("resize", id=cid, height=33, width=99)
    _, out, code = asyncio.run(_attach_and_run(supervisor, cid, None, tty=True))
    assert code == 0
    text = out.decode()
    assert "33 99" in text and "/dev/pts/0" in text
    assert b"\r\n" in out  # a real terminal's line discipline


def test_exec_attached_runs_in_the_container(supervisor, tmp_path, busybox_rootfs):
    sc = supervisor["client"]
    cid, _ = _create(supervisor, tmp_path, busybox_rootfs, ["sleep", "100"])
    sc.request("start", id=cid)

    async def run_exec():
        ac = supclient.AsyncClient(supervisor["path"])
        process = {"args": ["sh", "-c", "echo $$ $FOO; exit 7"], "env": ["FOO=bar", "PATH=/bin"],
                   "cwd": "/", "user": {"uid": 0, "gid": 0}, "terminal": False}
        eid = "e" + uuid.uuid4().hex[:8]
        reply, reader, writer = await ac.open_stream(
            "exec", id=eid, container_id=cid, process=process, runtime="runc",
            runtime_root=supervisor["runtime_root"], attach=True, stdout=True, stderr=True)
        out = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 20):
            out += chunk
        code = (await ac.request("wait", id=eid))["exit_code"]
        await ac.close()
        return out, code

    out, code = asyncio.run(run_exec())
    assert code == 7
    pid, foo = protocol.FrameDecoder().feed(out)[0][1].split()
    assert foo == b"bar" and int(pid) > 1


def test_exit_event_is_published(supervisor, tmp_path, busybox_rootfs):
    cid, _ = _create(supervisor, tmp_path, busybox_rootfs, ["sh", "-c", "exit 5"])

    async def go():
        ac = supclient.AsyncClient(supervisor["path"])
        events = ac.subscribe()
        assert await asyncio.wait_for(events.__anext__(), 20) == {"subscribed": True}
        await ac.request("start", id=cid)
        ev = await asyncio.wait_for(events.__anext__(), 20)
        await events.aclose()
        await ac.close()
        return ev

    ev = asyncio.run(go())
    assert ev["event"] == "exit" and ev["id"] == cid and ev["exit_code"] == 5


def _launcher(tmp_path) -> str:
    """Our runtime as a command (what the daemon writes to <data-root>/bin)."""
    import shlex

    from dockyard.runtime import runtime_argv
    path = tmp_path / "dockyard-runc"
    path.write_text("#!/bin/sh\nexec " + shlex.join(runtime_argv()) + ' "$@"\n')
    path.chmod(0o755)
    return str(path)


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-o", "args=", "--ppid", str(pid)], capture_output=True, text=True)
    return out.stdout.splitlines()


def _our_runtime_roundtrip(sup, tmp_path, rootfs, runtime: str) -> None:
    sc = sup["client"]
    cid = "t" + uuid.uuid4().hex[:12]
    log_path = str(tmp_path / f"{cid}-json.log")
    bundle = _bundle(tmp_path, rootfs, ["sh", "-c", "echo via $0; exit 4", "ours"])
    rt = dict(runtime=runtime, runtime_root=sup["runtime_root"], forkserver=True)
    sc.request("create", id=cid, bundle=bundle, log_path=log_path, **rt)
    state = sc.request("runtime", args=["state", cid], **rt)
    assert state["code"] == 0 and json.loads(state["stdout"])["status"] == "created"
    sc.request("start", id=cid)
    assert sc.request("wait", id=cid)["exit_code"] == 4
    assert [e.data for e in read_entries(log_path)] == [b"via ours\n"]
    gone = sc.request("runtime", args=["delete", cid], **rt)
    assert gone["code"] == 0, gone["stderr"]
    missing = sc.request("runtime", args=["state", cid], **rt)
    assert missing["code"] != 0 and cid in missing["stderr"]


def test_our_runtime_runs_in_the_fork_server(supervisor, tmp_path, busybox_rootfs):
    _our_runtime_roundtrip(supervisor, tmp_path, busybox_rootfs, _launcher(tmp_path))
    sup_pid = supervisor["client"].request("ping")["pid"]
    assert any("dockyard.runtime.forkserver" in c for c in _children(sup_pid))


def test_without_a_fork_server_the_runtime_is_executed(tmp_path, busybox_rootfs, monkeypatch):
    launcher = _launcher(tmp_path)          # a working interpreter for the command itself
    monkeypatch.setenv("DOCKYARD_RUNTIME_PYTHON", "/bin/false")   # the server cannot start
    root = str(tmp_path / "sup")
    path = supclient.ensure_running(root)
    monkeypatch.delenv("DOCKYARD_RUNTIME_PYTHON")
    sc = supclient.SyncClient(path)
    sup = {"root": root, "path": path, "client": sc, "runtime_root": str(tmp_path / "rt")}
    try:
        _our_runtime_roundtrip(sup, tmp_path, busybox_rootfs, launcher)
        sup_pid = sc.request("ping")["pid"]
        assert not any("forkserver" in c for c in _children(sup_pid))
    finally:
        os.kill(sc.request("ping")["pid"], signal.SIGTERM)
