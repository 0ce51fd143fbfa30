"""Boot recovery: what a daemon that was killed (or lost its disk) left half-done is
finished or undone from the records, the intents they carry, the supervisor's tasks
and what is on the host.

What is written before each step (the journal), and what recovery does with it:

- create: ``containers/<id>/`` is made before the snapshot, and the record is stored
  last. A directory with no record is a create that did not finish: its rootfs
  (unmounted), snapshot and directory are removed (``_sweep_orphans``), with the
  anonymous volumes that create made (their ``volume.json`` names it: ``CreatedFor``)
  unless a record uses them; named volumes are never removed.
- start: the record is stored with ``Intent: "start"`` (and its network settings) just
  before the supervisor's ``start``. A record still ``created`` whose task runs is a
  start that happened: it is finished (``running``, the task's pid and start time); one
  whose task ran and exited is recorded as exited with the task's code and times;
  anything else of it (a waiting init, a mounted rootfs, runtime state, endpoints) is
  undone.
- exit and stop: a record ``running`` whose task is gone or exited is recorded as
  exited (``_on_exit``); a record ``exited`` (or ``created``) with leftovers (mounted
  rootfs, runtime state, a live task, staged mounts) has them cleaned up.
- remove: the record is stored as ``removing`` first (on a full disk that write may
  fail: the files are then freed first and the row deleted after); recovery finishes
  the removal. ``--rm`` containers that exited (or whose run was finished here) are
  removed.
- commit: the record is stored with ``Intent: "commit"`` before the container is
  paused; a running or paused container with that intent is resumed (its health probes
  too).
"""

from __future__ import annotations

import asyncio
import os
import shutil

from dockyard import errors
from dockyard.containers import state as st
from dockyard.containers.common import log, now


class Recovery:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    async def _recover(self, tasks: dict) -> None:
        """Called by restore() once the records are loaded and before restart policies
        apply: every half-done state finished or undone."""
        await asyncio.to_thread(self._sweep_orphans)
        for cid, c in list(self.containers.items()):
            intent = c.pop("Intent", None)
            t = tasks.get(cid)
            s = c["State"]["Status"]
            try:
                if s == "created" or (s == "exited" and intent == "start"):
                    # a start (or the start of a restart) that may have happened
                    await self._recover_created(c, t, intent)
                elif s in ("running", "paused") and intent == "commit" and t \
                        and t["status"] == "running":
                    await self._runtime("resume", cid, check=False, c=c)
                    st.set_status(c["State"], "running")
                    await self._pause_health(c, False)   # probes stopped for the commit
                    self._save(c)
                elif s in ("exited", "dead"):
                    await self._recover_stopped(c, t)
                    if c["HostConfig"].get("AutoRemove") and c.get("HasBeenStartedBefore"):
                        await self.remove(cid, force=True)
                elif intent is not None:
                    self._save(c)
            except (OSError, errors.DockyardError) as e:
                log.warning("recovery of %s: %s", cid[:12], e)

    async def _recover_created(self, c: dict, t: dict | None, intent: str | None) -> None:
        cid = c["Id"]
        stt = c["State"]
        if t is not None and t["status"] == "running":
            # the supervisor released the init: the start happened, finish it
            st.set_status(stt, "running")
            stt.update(Pid=t["pid"], StartedAt=t.get("started_at") or now(), ExitCode=0,
                       Error="", FinishedAt="0001-01-01T00:00:00Z")
            c["HasBeenStartedBefore"] = True
            c["HasBeenManuallyStopped"] = False
            self._save(c)
            self.exits[cid] = asyncio.Event()
            log.info("recovery: start of %s finished", cid[:12])
            return
        if t is not None and t["status"] == "exited" and t.get("started_at"):
            # it ran and exited while nobody recorded it
            st.set_status(stt, "running")
            st.set_status(stt, "exited")
            stt.update(Pid=0, StartedAt=t["started_at"], ExitCode=t.get("exit_code") or 0,
                       FinishedAt=t.get("finished_at") or now())
            c["HasBeenStartedBefore"] = True
            self._save(c)
            await self._cleanup_after_stop(c)
            log.info("recovery: run of %s recorded as exited", cid[:12])
            if c["HostConfig"].get("AutoRemove"):
                await self.remove(cid, force=True)
            return
        # never started: whatever the start did is undone
        if t is not None and t["status"] != "exited":
            await self._release_prepared(c)   # its init killed, the task forgotten
        if self._leftovers(c, None):
            await self._cleanup_after_stop(c)
        if intent is not None:
            self._save(c)

    async def _recover_stopped(self, c: dict, t: dict | None) -> None:
        if t is not None and t["status"] != "exited":
            await self._release_prepared(c)
        if self._leftovers(c, None):
            log.info("recovery: leftovers of stopped %s cleaned up", c["Id"][:12])
            await self._cleanup_after_stop(c)

    def _leftovers(self, c: dict, t: dict | None) -> bool:
        cid = c["Id"]
        cdir = self._dir(cid)
        return (os.path.ismount(os.path.join(cdir, "rootfs"))
                or os.path.exists(os.path.join(self.runtime_root, cid))
                or os.path.isdir(os.path.join(cdir, "mounts"))
                or (t is not None and t["status"] != "exited")
                or bool(self.network is not None and _has_endpoints(self.network, cid)))

    def _sweep_orphans(self) -> None:
        """``containers/<id>`` directories no store row knows: creates that did not
        finish (or removals whose row went first). Unmounted and removed with their
        snapshot."""
        from dockyard.containers.task import _unmount_rootfs

        known = {r["Id"] for r in self.store.all()}
        base = os.path.join(self.root, "containers")
        try:
            names = os.listdir(base)
        except OSError:
            return
        for name in names:
            if name in known or len(name) != 64:
                continue
            cdir = os.path.join(base, name)
            log.info("recovery: removing %s (no record: a create that did not finish)",
                     name[:12])
            _unmount_rootfs(os.path.join(cdir, "rootfs"))
            stage = os.path.join(cdir, "mounts")
            if os.path.isdir(stage):
                from dockyard.snapshots import mount as snapmount

                try:
                    snapmount.unmount_all(stage)
                except OSError:
                    pass
            try:
                self.images.remove_rootfs(name)
            except Exception as e:  # noqa: BLE001 - none was made: nothing to remove
                log.debug("rootfs of %s: %s", name[:12], e)
            if not os.path.ismount(os.path.join(cdir, "rootfs")):
                shutil.rmtree(cdir, ignore_errors=True)
            if self.volumes is not None:
                for v in self.volumes.made_for(name):
                    try:   # refused while a record uses it (volume_users)
                        self.volumes.remove(v)
                        log.info("recovery: removed anonymous volume %s of %s", v[:12],
                                 name[:12])
                    except errors.DockyardError as e:
                        log.info("recovery: volume %s of %s kept: %s", v[:12], name[:12], e)


def _has_endpoints(network, cid: str) -> bool:
    m = getattr(network, "m", None)
    eps = getattr(m, "endpoints", None)
    if not isinstance(eps, dict):
        return False
    return any(getattr(e, "container_id", None) == cid for e in list(eps.values()))
