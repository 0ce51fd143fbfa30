"""The warm pool's work (the policy is containers/warm.py): containers made ahead of a
`run --rm`, taken by an identical create, torn down when unused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time

from dockyard import errors, statefiles
from dockyard.containers import state as st
from dockyard.containers import warm as warmpool
from dockyard.containers.records import _empty_network_settings
from dockyard.containers.common import WARM_NAME, now, log


class WarmPoolWork:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    # ---- the warm pool (see containers/warm.py) ----------------------------------------
    def _want_warm(self, c: dict) -> None:
        """After a `run --rm` container: make the next one like it ahead of time."""
        host = c["HostConfig"]
        if not self.warm.enabled or any(
                isinstance(v, str) and v.startswith("container:") for v in host.values()):
            return   # joins another container's namespaces: those may be gone by then
        if any(mp["Type"] == "volume" for mp in c.get("MountPoints") or []):
            return   # an anonymous volume is per container; named ones are mounted at start
        k = warmpool.key(c)
        make, evicted = self.warm.admit(k)
        for e in evicted:
            self._in_background(self._destroy_warm(e.record))
        if not make:
            return
        self.warm.making[k] = asyncio.get_running_loop().create_future()
        self._in_background(self._fill_warm(k, c))

    def _in_background(self, coro) -> None:
        t = asyncio.ensure_future(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def _fill_warm(self, k: str, template: dict) -> None:
        import copy

        wid = secrets.token_hex(32)
        rec = copy.deepcopy(template)
        if rec["Config"].get("Hostname") == template["Id"][:12]:
            rec["Config"]["Hostname"] = ""
        rec.update(Id=wid, Name=WARM_NAME + wid, Created=now(), State=st.new_state(),
                   RestartCount=0, NetworkSettings=_empty_network_settings(),
                   HasBeenStartedBefore=False, HasBeenManuallyStopped=False, **self._id_paths(wid))
        made = False
        try:
            if warmpool.key(rec) != k:
                return
            self.store.put(rec)   # so that a daemon that dies now tears it down later
            cdir = self._dir(wid)
            os.mkdir(cdir, statefiles.DIR_MODE)
            os.close(statefiles.create(os.path.join(cdir, warmpool.MARKER)))
            await asyncio.to_thread(self.images.prepare_rootfs, rec["Image"], wid, True)
            pid = await self._create_task(rec)
            made = True
        except Exception as e:  # noqa: BLE001 - a warm container is only an optimisation
            log.debug("warm container for %s not made: %s", template["Id"][:12], e)
        finally:
            done = self.warm.making.pop(k, None)
            if made:
                self.warm.ready[k] = warmpool.Entry(k, rec, pid)
                self._schedule_warm_expiry()
            if done is not None and not done.done():
                done.set_result(None)
            if not made:
                await asyncio.shield(self._destroy_warm(rec))

    def _schedule_warm_expiry(self) -> None:
        """One timer for the whole pool, due when its oldest entry (ready or taken) ends;
        it arms itself again for the next. (A timer per entry made stayed 60 s each:
        hundreds pending under a `run --rm` churn.) Entries are made in time order, so a
        timer already pending is due no later than a new entry's end."""
        if getattr(self, "_warm_timer", None) is not None:
            return
        entries = [*self.warm.ready.values(), *self.warm.taken.values()]
        if not entries:
            return
        due = min(e.made for e in entries) + self.warm.ttl + 0.5
        self._warm_timer = asyncio.get_running_loop().call_later(
            max(0.0, due - time.monotonic()), self._warm_timer_due)

    def _warm_timer_due(self) -> None:
        self._warm_timer = None
        self._in_background(self._expire_warm())

    async def _expire_warm(self) -> None:
        try:
            for e in self.warm.expired():
                await self._destroy_warm(e.record)
            deadline = time.monotonic() - self.warm.ttl
            for cid, e in list(self.warm.taken.items()):
                c = self.containers.get(cid)
                if e.made <= deadline and c is not None:
                    async with self._lock(cid):
                        if self.warm.taken.pop(cid, None) is not None:
                            await self._release_prepared(c)   # created long ago, not started
        finally:
            if not self._shutting_down().is_set():
                self._schedule_warm_expiry()

    async def _destroy_warm(self, rec: dict) -> None:
        await self._cleanup_after_stop(rec, network=False)
        await self._reaped(rec["Id"])
        await self._remove_files(rec)

    async def _reaped(self, cid: str) -> None:
        """After the runtime's delete --force of a created container: wait until the
        supervisor has seen its init die (it refuses to forget a live task)."""
        with contextlib.suppress(errors.DockyardError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.sup.request("wait", id=cid), 5)

    async def _release_prepared(self, c: dict) -> None:
        """A created container whose init already waits in the runtime (from the warm
        pool): back to plainly created, with nothing running and nothing mounted."""
        await self._cleanup_after_stop(c, network=False)
        await self._reaped(c["Id"])
        try:
            await self.sup.request("forget", id=c["Id"])
        except errors.DockyardError as e:
            log.warning("supervisor forget %s: %s", c["Id"][:12], e)

    async def before_image_removal(self) -> None:
        """Before an image is removed: tear the warm pool down (those being made too) and
        let the removals of `--rm` containers still under way finish (they hold
        snapshots of their image until then)."""
        if self._removals:
            await asyncio.gather(*[asyncio.shield(t) for t in self._removals],
                                 return_exceptions=True)
        while self.warm.making:
            await asyncio.gather(*[asyncio.shield(f) for f in self.warm.making.values()])
        for e in self.warm.drain():
            await self._destroy_warm(e.record)
