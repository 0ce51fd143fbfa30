"""Boot and the supervisor's events: records reconciled with the supervisor's tasks at
start, exits followed (and caught up after a lost connection or a dead supervisor),
shutdown."""

from __future__ import annotations

import asyncio
import os

from dockyard import errors
from dockyard.supervisor import client as supclient
from dockyard.containers.common import WARM_NAME, now, log


class Supervision:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    # ---- boot ------------------------------------------------------------------------
    async def restore(self) -> None:
        """Load records and reconcile them with what the supervisor still runs."""
        await asyncio.to_thread(self._reserve().ensure)   # space for removals on a full disk
        warm_rows = []
        for rec in self.store.all():
            if rec["Name"].startswith(WARM_NAME):
                warm_rows.append(rec)   # made ahead by a daemon that stopped: torn down
                continue
            if "MountPoints" not in rec:   # a record from before volumes: its binds
                rec["MountPoints"] = _legacy_points(rec)
            self.containers[rec["Id"]] = rec
            self.exits.setdefault(rec["Id"], asyncio.Event())
            if rec["State"]["Status"] in ("running", "paused", "restarting") and self.volumes:
                for mp in rec["MountPoints"]:
                    if mp["Type"] == "volume" and mp["Name"]:
                        self.volumes.restore_mounted(mp["Name"], rec["Id"])
        tasks = {t["id"]: t for t in (await self.sup.request("list"))["tasks"]}
        self._watch_task = asyncio.ensure_future(self._watch_exits())
        self._adopt_health(tasks)
        for rec in warm_rows:
            await self._destroy_warm(rec)
        for cid, c in list(self.containers.items()):
            s = c["State"]["Status"]
            if s in ("running", "paused", "restarting"):
                t = tasks.get(cid)
                if t is None or t["status"] == "exited":
                    code = t["exit_code"] if t else 255
                    await self._on_exit(cid, code if code is not None else 255,
                                        (t or {}).get("finished_at") or now(), booting=True)
            elif s == "removing":
                await self._finish_remove(c)
        # half-done creates, starts, exits, --rm removals and commits (containers/recovery.py)
        await self._recover(tasks)
        for cid, c in list(self.containers.items()):
            policy = (c["HostConfig"].get("RestartPolicy") or {}).get("Name", "no")
            if (c["State"]["Status"] in ("exited", "created") and policy in ("always", "unless-stopped")
                    and c.get("HasBeenStartedBefore") and not c.get("HasBeenManuallyStopped")):
                try:
                    await self.start(cid)
                except errors.DockyardError as e:
                    log.warning("restart of %s on boot failed: %s", cid[:12], e)

    async def _watch_exits(self) -> None:
        while True:
            try:
                async for ev in self.sup.subscribe():
                    if ev.get("subscribed"):
                        await self._reconcile_exits()
                    elif ev.get("kind") == "health":
                        self._on_health(ev["id"], ev["health"], bool(ev.get("changed")), True)
                    elif ev.get("kind") == "container":
                        asyncio.ensure_future(self._on_exit(ev["id"], ev["exit_code"], ev["time"],
                                                           pid=ev.get("pid", 0)))
                    elif ev.get("kind") == "exec":
                        self._exec_exited(ev["id"], ev["exit_code"])
            except (OSError, errors.DockyardError) as e:
                log.warning("supervisor event stream lost: %s; reconnecting", e)
                if isinstance(e, (ConnectionRefusedError, FileNotFoundError)):
                    await self._replace_dead_supervisor()
            await asyncio.sleep(0.5)

    async def _replace_dead_supervisor(self) -> None:
        """The supervisor is gone (killed): make sure a new one runs (its holder,
        supervisor/holder.py, has usually started it already). It adopts what the old
        one ran (output, ttys and stdin from what the holder kept, true exit codes from
        what it reaped); containers that ended meanwhile are recorded as exited, so that
        waits end and restart policies apply instead of hanging forever."""
        # one replacement at a time: the event stream and a request can both find it gone,
        # and two new supervisors would share (and fight over) one socket path
        lock = getattr(self, "_replacing_sup", None)
        if lock is None:
            lock = self._replacing_sup = asyncio.Lock()
        try:
            async with lock:
                await asyncio.to_thread(supclient.ensure_running, os.path.dirname(self.sup.path))
            tasks = {t["id"]: t for t in (await self.sup.request("list"))["tasks"]}
        except (OSError, errors.DockyardError) as e:
            log.warning("could not restart the supervisor: %s", e)
            return
        log.warning("supervisor restarted; it adopted %d running tasks",
                    sum(1 for t in tasks.values() if t["status"] == "running"))
        self._record_exits(tasks)

    async def _reconcile_exits(self) -> None:
        """Exits that happened while no event stream was connected (a lost supervisor
        connection, a restarted supervisor) are read from the supervisor's task list."""
        try:
            tasks = {t["id"]: t for t in (await self.sup.request("list"))["tasks"]}
        except (OSError, errors.DockyardError) as e:
            log.warning("could not list the supervisor's tasks: %s", e)
            return
        self._adopt_health(tasks)
        self._record_exits(tasks)

    def _record_exits(self, tasks: dict) -> None:
        for eid, ex in list(self.execs.items()):
            t = tasks.get(eid)   # an exec that ended while no event stream was connected
            if ex["Running"] and t is not None and t["status"] == "exited" \
                    and t.get("exit_code") is not None:
                self._exec_exited(eid, t["exit_code"])
        for cid, c in list(self.containers.items()):
            t = tasks.get(cid)
            if c["State"]["Status"] in ("running", "paused", "restarting") and (
                    t is None or t["status"] == "exited"):
                code = (t or {}).get("exit_code")
                asyncio.ensure_future(self._on_exit(cid, 255 if code is None else code,
                                                    (t or {}).get("finished_at") or now(),
                                                    pid=(t or {}).get("pid") or 0))

    async def close(self) -> None:
        self.end_streams()   # logs -f and attach followers end now, cleanly
        if self._watch_task:
            self._watch_task.cancel()
        for t in list(self._background):
            t.cancel()
        timer = getattr(self, "_warm_timer", None)
        if timer is not None:
            timer.cancel()
            self._warm_timer = None
        for e in self.warm.drain():
            await self._destroy_warm(e.record)
        for cid in list(self.warm.taken):
            c = self.containers.get(cid)
            if c is not None:
                async with self._lock(cid):
                    await self._release_prepared(c)


def _legacy_points(rec: dict) -> list[dict]:
    from dockyard.containers import mounts as mountpoints

    out = []
    for b in rec["HostConfig"].get("Binds") or []:
        try:
            mp = mountpoints.parse_bind(b)
        except errors.DockyardError:
            continue
        if mp["Type"] == "bind":
            out.append(mp)
    return out
