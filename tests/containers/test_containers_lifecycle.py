"""Container lifecycle through the service, with real containers."""

from __future__ import annotations

import asyncio

import pytest

from dockyard import errors
from dockyard.supervisor.protocol import FrameDecoder


def run(coro):
    return asyncio.run(coro)


def test_create_start_wait_logs_remove(env):
    async def go():
        svc = env.make()
        await svc.restore()
        r = await svc.create("first", {"Image": "busybox", "Cmd": ["sh", "-c", "echo hi; echo e >&2; exit 3"]})
        cid = r["Id"]
        assert svc.inspect("first")["State"]["Status"] == "created"
        waiter = asyncio.ensure_future(svc.wait(cid, "next-exit"))
        await svc.start(cid)
        assert await asyncio.wait_for(waiter, 30) == 3
        info = svc.inspect(cid)
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3
        assert info["Config"]["Cmd"] == ["sh", "-c", "echo hi; echo e >&2; exit 3"]
        logs = [(e.stream, e.data) async for e in svc.logs(cid)]
        assert sorted(logs) == [("stderr", b"e\n"), ("stdout", b"hi\n")]
        assert [c["Names"] for c in svc.list(all=True)] == [["/first"]]
        assert svc.list() == []
        await svc.remove(cid)
        with pytest.raises(errors.NotFound):
            svc.get(cid)
        await svc.close()
        return [a[1] for a in env.events]

    actions = run(go())
    assert actions[:4] == ["create", "start", "die", "destroy"]


def test_name_conflict_unknown_image_and_bad_values(env):
    async def go():
        svc = env.make()
        await svc.restore()
        await svc.create("dup", {"Image": "busybox"})
        with pytest.raises(errors.Conflict, match='name "/dup" is already in use'):
            await svc.create("dup", {"Image": "busybox"})
        with pytest.raises(errors.NotFound, match="No such image"):
            await svc.create(None, {"Image": "nosuchimage"})
        with pytest.raises(errors.InvalidParameter):
            await svc.create(None, {"Image": "busybox", "HostConfig": {"Memory": 1024}})
        with pytest.raises(errors.InvalidParameter):
            await svc.create("bad name!", {"Image": "busybox"})
        assert len(svc.containers) == 1
        await svc.close()

    run(go())


def test_stop_kill_restart_policy_and_running_remove_refused(env):
    async def go():
        svc = env.make()
        await svc.restore()
        cid = (await svc.create(None, {"Image": "busybox", "Cmd": ["sleep", "300"]}))["Id"]
        await svc.start(cid)
        with pytest.raises(errors.Conflict, match="You cannot remove a running container"):
            await svc.remove(cid)
        with pytest.raises(errors.NotModified):
            await svc.start(cid)
        await svc.stop(cid, timeout=1)
        # PID 1 ignores SIGTERM unless it handles it: killed after the timeout
        assert svc.inspect(cid)["State"]["ExitCode"] == 137
        await svc.start(cid)
        await svc.kill(cid, "KILL")
        assert await asyncio.wait_for(svc.wait(cid), 10) == 137
        # on-failure restarts until the count is reached
        r = (await svc.create(None, {"Image": "busybox", "Cmd": ["sh", "-c", "exit 2"],
                                     "HostConfig": {"RestartPolicy": {"Name": "on-failure",
                                                                      "MaximumRetryCount": 2}}}))["Id"]
        await svc.start(r)
        for _ in range(100):
            c = svc.inspect(r)
            if c["RestartCount"] == 2 and c["State"]["Status"] == "exited":
                break
            await asyncio.sleep(0.1)
        assert c["RestartCount"] == 2 and c["State"]["ExitCode"] == 2
        await svc.close()

    run(go())


def test_attach_stdin_exec_and_diff(env):
    async def go():
        svc = env.make()
        await svc.restore()
        cid = (await svc.create(None, {"Image": "busybox", "Cmd": ["sh", "-c", "cat; touch /new"],
                                       "OpenStdin": True, "StdinOnce": True}))["Id"]
        attaching = asyncio.ensure_future(svc.attach(cid, True, True, True))
        await asyncio.sleep(0.05)  # clients attach first, then start (docker run)
        await svc.start(cid)
        tty, reader, writer = await attaching
        writer.write(b"ping\n")
        writer.write_eof()
        out = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 20):
            out += chunk
        assert FrameDecoder().feed(out) == [(1, b"ping\n")]
        assert await asyncio.wait_for(svc.wait(cid), 10) == 0
        assert {"Path": "/new", "Kind": 1} in await svc.changes(cid)

        cid2 = (await svc.create(None, {"Image": "busybox", "Cmd": ["sleep", "300"]}))["Id"]
        await svc.start(cid2)
        eid = await svc.exec_create(cid2, {"Cmd": ["sh", "-c", "echo in-exec; exit 4"],
                                           "AttachStdout": True, "AttachStderr": True})
        tty, reader, writer = await svc.exec_start(eid)
        out = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 20):
            out += chunk
        assert FrameDecoder().feed(out) == [(1, b"in-exec\n")]
        for _ in range(100):
            if svc.exec_inspect(eid)["ExitCode"] is not None:
                break
            await asyncio.sleep(0.05)
        assert svc.exec_inspect(eid)["ExitCode"] == 4
        top = await svc.top(cid2)
        assert any("sleep" in " ".join(p) for p in top["Processes"])
        await svc.pause(cid2)
        assert svc.inspect(cid2)["State"]["Paused"]
        await svc.unpause(cid2)
        await svc.remove(cid2, force=True)
        await svc.close()

    run(go())


def test_containers_outlive_the_service(env):
    async def first():
        svc = env.make()
        await svc.restore()
        cid = (await svc.create("keep", {"Image": "busybox",
                                         "Cmd": ["sh", "-c", "trap 'exit 7' TERM; i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done"]}))["Id"]
        await svc.start(cid)
        await asyncio.sleep(0.5)
        await svc.close()
        return cid

    async def second(cid):
        svc = env.make()  # a "restarted daemon": new service, same supervisor and data
        await svc.restore()
        assert svc.inspect(cid)["State"]["Running"]
        await asyncio.sleep(0.3)
        await svc.stop(cid, timeout=5)
        assert svc.inspect(cid)["State"]["ExitCode"] == 7
        nums = [int(e.data) async for e in svc.logs(cid)]
        assert nums == list(range(len(nums))) and len(nums) > 5  # nothing lost
        await svc.close()

    cid = run(first())
    run(second(cid))


def test_memory_limit_oom_kills_and_inspect_says_so(env):
    async def go():
        svc = env.make()
        await svc.restore()
        cid = (await svc.create(None, {
            "Image": "busybox",
            "Cmd": ["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"],
            "HostConfig": {"Memory": 16 * 1024 * 1024, "MemorySwap": 16 * 1024 * 1024}}))["Id"]
        await svc.start(cid)
        code = await asyncio.wait_for(svc.wait(cid), 60)
        state = svc.inspect(cid)["State"]
        await svc.close()
        return code, state

    code, state = run(go())
    assert code == 137 and state["OOMKilled"] is True


def test_pids_limit_holds(env):
    async def go():
        svc = env.make()
        await svc.restore()
        cid = (await svc.create(None, {
            "Image": "busybox",
            "Cmd": ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; wait"],
            "HostConfig": {"PidsLimit": 5}}))["Id"]
        await svc.start(cid)
        await asyncio.wait_for(svc.wait(cid), 30)
        errs = [e.data async for e in svc.logs(cid) if e.stream == "stderr"]
        await svc.close()
        return errs

    errs = run(go())
    assert any(b"can't fork" in e or b"Resource temporarily unavailable" in e for e in errs)
