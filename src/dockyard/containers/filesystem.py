"""The container's filesystem as a whole: mounted on demand, exported, diffed, committed."""

from __future__ import annotations

import asyncio
import contextlib
import os

from dockyard import errors, statefiles
from dockyard.containers import state as st
from dockyard.containers.task import _mount_rootfs, _unmount_rootfs


class Filesystem:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    async def changes(self, ref: str) -> list[dict]:
        c = self.get(ref)
        return await asyncio.to_thread(self.images.changes, c["Id"])

    async def commit(self, ref: str, *, repo: str | None, tag: str | None, author: str = "",
                     comment: str = "", changes: list[str] = (), pause: bool = True,
                     config: dict | None = None) -> str:
        """As dockerd 20.10's (checked side by side): a running container is paused for
        the commit as by ``docker pause`` (its state shows paused, a ``pause`` event, health
        probes stop and its health shows unhealthy), the image is tagged, the ``commit``
        event is sent, then it is unpaused (an ``unpause`` event; probing starts again one
        interval later). A pause that fails is ignored, as dockerd ignores it."""
        from dockyard import crashpoints

        c = self.get(ref)
        paused_here = False
        if pause and c["State"]["Status"] == "running":
            # the intent first: a daemon killed while the container is frozen resumes it
            # at its next start (containers/recovery.py)
            c["Intent"] = "commit"
            self._save(c)
            try:
                await self._runtime("pause", c["Id"], c=c)
            except errors.DockyardError:
                pass
            else:
                paused_here = True
                st.set_status(c["State"], "paused")
                await self._pause_health(c, True)
                self._save(c)
                self.emit("container", "pause", c["Id"], self._attrs(c))
                crashpoints.at("commit.paused")
        try:
            image_id = await asyncio.to_thread(
                self.images.commit_rootfs, c["Id"], c["Image"], config=config or c["Config"],
                changes=list(changes), author=author, comment=comment, repo=repo, tag=tag,
                container_id=c["Id"])
            crashpoints.at("commit.committed")
            self.emit("container", "commit", c["Id"], {**self._attrs(c), "comment": comment})
        finally:
            # still paused by us (not unpaused, stopped or killed meanwhile): resumed
            if paused_here and c["State"]["Status"] == "paused":
                await self._runtime("resume", c["Id"], check=False, c=c)
                st.set_status(c["State"], "running")
                await self._pause_health(c, False)
                c.pop("Intent", None)
                with contextlib.suppress(Exception):
                    self._save(c)
                self.emit("container", "unpause", c["Id"], self._attrs(c))
            elif c.get("Intent") == "commit":
                c.pop("Intent", None)
                with contextlib.suppress(Exception):
                    self._save(c)
        return image_id

    @contextlib.asynccontextmanager
    async def rootfs_mounted(self, ref: str):
        """``(record, path)``: the container's root filesystem, mounted at ``path`` for the
        duration. A running container's own mount is used as is (it may stop meanwhile:
        callers that open it check it is still a mount); a stopped one is mounted for the
        duration under the container's lock, so a start waits for it."""
        c = self.get(ref)
        rootfs = os.path.join(self._dir(c["Id"]), "rootfs")
        if os.path.ismount(rootfs):
            yield c, rootfs
            return
        async with self._lock(c["Id"]):
            if os.path.ismount(rootfs):   # started meanwhile
                yield c, rootfs
                return
            mounts = await asyncio.to_thread(self.images.rootfs_mounts, c["Id"])
            await asyncio.to_thread(_mount_rootfs, mounts, rootfs)
            try:
                yield c, rootfs
            finally:
                await asyncio.to_thread(_unmount_rootfs, rootfs)

    @contextlib.asynccontextmanager
    async def copy_view(self, ref: str):
        """``(record, path)``: the container's filesystem with its volumes, binds and
        /etc files mounted (containers/copyview.py), for the duration."""
        import secrets

        from dockyard.containers import copyview

        async with self.rootfs_mounted(ref) as (c, rootfs):
            if _tmpfs_dests(c) and c.get("State", {}).get("Running"):
                # its tmpfs mounts exist only in its mount namespace: the copy goes
                # through the container's own root (every mount as it sees them), an fd
                # pinned for the duration and checked to be this container's rootfs
                fd = await asyncio.to_thread(_pin_container_root, c, rootfs)
                if fd is not None:
                    try:
                        yield c, f"/proc/self/fd/{fd}/."   # (opened with O_NOFOLLOW)
                    finally:
                        os.close(fd)
                    return
            token = "cp-" + secrets.token_hex(6)
            binds, vols = [], []
            try:
                for mp in c.get("MountPoints") or []:
                    if mp["Type"] == "volume" and mp["Name"] and self.volumes is not None:
                        src = await asyncio.to_thread(self.volumes.mount, mp["Name"], token)
                        vols.append(mp["Name"])
                        if mp.get("Subpath"):
                            continue   # shown through the container's own view only
                        binds.append((mp["Destination"], src, mp["RW"]))
                    elif mp["Type"] == "bind" and os.path.exists(mp["Source"]):
                        binds.append((mp["Destination"], os.path.realpath(mp["Source"]),
                                      mp["RW"]))
                taken = {b[0] for b in binds}
                for dest, key in (("/etc/hostname", "HostnamePath"), ("/etc/hosts", "HostsPath"),
                                  ("/etc/resolv.conf", "ResolvConfPath")):
                    if dest not in taken and c.get(key) and os.path.isfile(c[key]):
                        binds.append((dest, c[key], True))
                if not binds:
                    yield c, rootfs
                    return
                # beside the containers, not in one's directory: a view a crash left
                # mounted is never under a tree the container's removal deletes
                views = os.path.join(self.root, copyview.DIR)
                statefiles.makedirs(views)
                view = os.path.join(views, token)
                await asyncio.to_thread(copyview.make, rootfs, view, binds)
                try:
                    yield c, view
                finally:
                    await asyncio.to_thread(copyview.remove, view)
            finally:
                for name in vols:
                    await asyncio.to_thread(self.volumes.unmount, name, token)

    async def export(self, ref: str, out) -> None:
        """Write the container's filesystem as a tar to the binary file ``out`` (read
        through fsroot: nothing below the rootfs mount is opened by a host path)."""
        for _ in range(3):
            async with self.rootfs_mounted(ref) as (c, rootfs):
                done = await asyncio.to_thread(_tar_dir, rootfs, out)
            if done:
                break
        else:
            raise errors.Conflict(f"container {ref} kept starting and stopping during the export")
        self.emit("container", "export", c["Id"], self._attrs(c))


def _tmpfs_dests(c: dict) -> list[str]:
    return ([mp["Destination"] for mp in c.get("MountPoints") or [] if mp["Type"] == "tmpfs"]
            + list((c.get("HostConfig") or {}).get("Tmpfs") or {}))


def _pin_container_root(c: dict, rootfs: str) -> int | None:
    """A directory fd of the running container's root as its init sees it (through
    ``/proc/<pid>/root``: its mount namespace, tmpfs mounts included), or None if the
    init is gone or that pid is no longer its init (the root is then not its rootfs)."""
    pid = (c.get("State") or {}).get("Pid") or 0
    if pid <= 0:
        return None
    try:
        fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        mine, theirs = os.stat(rootfs), os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        os.close(fd)   # a recycled pid (a host process's root), or an init that chrooted
        return None
    return fd


def _tar_dir(root: str, out) -> bool:
    """``docker export``: the tree below the mount ``root`` as a tar (names relative, no
    "." entry), every entry pinned before it is read (fsroot), entries that vanish
    meanwhile skipped, overlay whiteouts (0:0 character devices) and sockets left out.
    False, with nothing written, if ``root`` is no longer a mount (the container stopped
    between the caller's check and the open)."""
    from dockyard.fsroot.nodes import is_mount_root, open_root
    from dockyard.fsroot.tar import TarWriter

    fd = open_root(root)
    try:
        if not is_mount_root(fd, root):
            return False
        with TarWriter(out) as tw:
            tw.add_tree(fd, "", skip=lambda _path, node: node.is_whiteout())
        return True
    finally:
        os.close(fd)
