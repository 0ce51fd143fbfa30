"""No state stays in the daemon per removed container (issue 16: memory flat under churn).

Real containers through the service (tests/containers/conftest.py); after cycles of every
way a container comes and goes, each per-container map of the service is empty again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from dockyard import errors
from dockyard.containers import warm as warmpool

# the service's attributes that are configuration, not per-container state
CONFIG = {"runtimes"}


def leftovers(svc) -> dict:
    """Every non-empty collection the service (or its warm pool, or its supervisor client)
    holds: after all containers are gone there must be none."""
    left = {}
    for owner, obj, skip in (("svc", svc, CONFIG), ("warm", svc.warm, {"ready", "seen"}),
                             ("sup", svc.sup, set())):
        for k, v in vars(obj).items():
            if k not in skip and isinstance(v, Collection) and not isinstance(v, (str, bytes)) \
                    and len(v):
                left[f"{owner}.{k}"] = v
    return left


async def settle(svc) -> None:
    """Until the background work of removals (files of --rm containers, the warm pool's
    fills) is done."""
    for _ in range(200):
        if not svc._removals and not svc._background and not svc.warm.making:
            return
        await asyncio.sleep(0.05)


async def cycles(svc, n: int) -> None:
    for _ in range(n):
        # plain: create, start, wait, rm
        cid = (await svc.create(None, {"Image": "busybox", "Cmd": ["true"]}))["Id"]
        waiter = asyncio.ensure_future(svc.wait(cid, "next-exit"))
        await svc.start(cid)
        assert await asyncio.wait_for(waiter, 30) == 0
        await svc.remove(cid)
        # run --rm: waits for removal as the CLI does
        cid = (await svc.create(None, {"Image": "busybox", "Cmd": ["true"],
                                       "HostConfig": {"AutoRemove": True}}))["Id"]
        gone = asyncio.ensure_future(svc.wait(cid, "removed"))
        await svc.start(cid)
        await asyncio.wait_for(gone, 30)
        # an exec in a running container, then rm -f
        cid = (await svc.create("named", {"Image": "busybox", "Cmd": ["sleep", "300"]}))["Id"]
        await svc.start(cid)
        # a supervisor request its caller stopped waiting for leaves nothing behind
        try:
            await asyncio.wait_for(svc.sup.request("wait", id=cid), 0.2)
        except asyncio.TimeoutError:
            pass
        assert not svc.sup._pending
        eid = await svc.exec_create(cid, {"Cmd": ["true"]})
        await svc.exec_start(eid, detach=True)
        for _ in range(100):
            if svc.exec_inspect(eid)["ExitCode"] is not None:
                break
            await asyncio.sleep(0.05)
        await svc.remove(cid, force=True)
        # its exec goes with it (dockerd: No such exec instance)
        try:
            svc.exec_inspect(eid)
        except errors.NotFound:
            pass
        else:
            raise AssertionError("the exec of a removed container is still known")
        # created, never started, removed (an attach waiting for a start that never comes)
        cid = (await svc.create(None, {"Image": "busybox", "Cmd": ["true"]}))["Id"]
        attach = asyncio.ensure_future(svc.attach(cid, False, True, True))
        await asyncio.sleep(0.05)
        await svc.remove(cid)
        try:
            await asyncio.wait_for(attach, 10)
        except errors.DockyardError:
            pass
        else:
            attach.result()[2].close()


def test_removed_containers_leave_no_state(env):
    async def go():
        svc = env.make()
        await svc.restore()
        await cycles(svc, 3)
        await settle(svc)
        assert svc.containers == {}
        assert leftovers(svc) == {}
        await svc.close()

    asyncio.run(go())


def test_run_rm_with_the_warm_pool_leaves_no_state(env):
    async def go():
        svc = env.make()
        svc.warm = warmpool.Pool(2)
        await svc.restore()
        for _ in range(4):   # the second makes a pool entry, later ones take it
            cid = (await svc.create(None, {"Image": "busybox", "Cmd": ["true"],
                                           "HostConfig": {"AutoRemove": True}}))["Id"]
            gone = asyncio.ensure_future(svc.wait(cid, "removed"))
            await svc.start(cid)
            await asyncio.wait_for(gone, 30)
            await settle(svc)
        assert len(svc.warm.ready) == 1
        # one expiry timer for the pool, not one per entry ever made (each lived 60 s:
        # ~900 pending at 15 runs/s); asyncio's heap is read to count them
        loop = asyncio.get_running_loop()
        timers = [h for h in loop._scheduled if not h.cancelled()
                  and "warm" in getattr(h._callback, "__qualname__", "")]
        assert len(timers) == 1
        await svc.before_image_removal()   # tears the pool down
        await settle(svc)
        assert svc.containers == {}
        assert leftovers(svc) == {}
        assert not svc.warm.ready
        await svc.close()

    asyncio.run(go())
