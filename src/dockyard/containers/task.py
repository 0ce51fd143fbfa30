"""A container's task: the rootfs mounted, the /etc files and the OCI spec written, the
supervisor's `<runtime> create`, the runtime calls, and the cleanup after a run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

from dockyard import errors, statefiles
from dockyard.oci import spec as ocispec
from dockyard.containers.common import log


class Task:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    def _cgroup_parent_of(self, c: dict | None) -> str:
        """The container's HostConfig.CgroupParent (absolute, checked at create), else
        the daemon's --cgroup-parent."""
        own = ((c or {}).get("HostConfig") or {}).get("CgroupParent") or ""
        return "/" + own.strip("/") if own else self.cgroup_parent

    def _cgroup(self, cid: str) -> str:
        return f"{self._cgroup_parent_of(self.containers.get(cid))}/{cid}"

    def _oom_killed(self, cid: str) -> bool:
        try:
            from dockyard.runtime import cgroups

            return bool(cgroups.open_manager(self._cgroup(cid), cid).oom_killed())
        except Exception:  # noqa: BLE001 - no cgroup left: no evidence of an OOM kill
            return False

    async def _create_task(self, c: dict) -> int:
        """Mount the rootfs, write the /etc files and the spec, and have the supervisor
        run ``<runtime> create``: the container's init then waits to be started."""
        cid = c["Id"]
        cdir = self._dir(cid)
        rootfs = os.path.join(cdir, "rootfs")
        mounts = await asyncio.to_thread(self.images.rootfs_mounts, cid)
        await asyncio.to_thread(_mount_rootfs, mounts, rootfs)
        hostname = c["Config"].get("Hostname") or cid[:12]
        c["Config"]["Hostname"] = hostname
        image_config = (await asyncio.to_thread(self.images.get_config, c["Image"])).get("config") or {}
        host = c["HostConfig"]
        mode = host.get("NetworkMode") or "default"
        netns = None
        if mode == "host":
            netns = "host"
        elif mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            if not other["State"]["Running"]:
                raise errors.Conflict(f"cannot join network of a non running container: "
                                      f"{other['Id']}")
            netns = f"/proc/{other['State']['Pid']}/ns/net"
        link_env: list[str] = []
        if host.get("Links"):
            from dockyard.containers import links

            link_env, c["LinkHosts"] = links.resolve(c, self.get)
        else:
            c.pop("LinkHosts", None)
        etc = self._write_etc_files(c, hostname, mode)
        seccomp = None
        if not host.get("Privileged"):
            caps = ocispec.capabilities(host.get("CapAdd"), host.get("CapDrop"), False)
            try:
                profile = ocispec.security_options(host.get("SecurityOpt"))["seccomp"]
            except ocispec.SpecError as e:
                raise errors.InvalidParameter(str(e)) from None
            if isinstance(profile, dict):   # --security-opt seccomp=<profile's JSON>
                from dockyard.oci import seccomp_default

                seccomp = seccomp_default.oci_from_docker(profile, caps)
            elif self.seccomp_profile is not None:
                seccomp = self.seccomp_profile(caps)
        pidns = None
        pid_mode = host.get("PidMode") or ""
        if pid_mode.startswith("container:"):
            other = self.get(pid_mode.split(":", 1)[1])
            if not other["State"]["Running"]:
                raise errors.Conflict(f"cannot join PID of a non running container: {other['Id']}")
            pidns = f"/proc/{other['State']['Pid']}/ns/pid"
        user_mounts, root_prop = await asyncio.to_thread(self._mount_points, c, rootfs)
        self._emit_mounts(c, "mount")
        try:
            config = c["Config"]
            if link_env:   # before the container's own, which override them (dockerd)
                config = {**config, "Env": link_env + list(config.get("Env") or [])}
            spec = ocispec.build_spec(container_id=cid, config=config, host_config=host,
                                      image_config=image_config, rootfs=rootfs, hostname=hostname,
                                      etc_files=etc, netns=netns, seccomp=seccomp,
                                      cgroup_parent=self._cgroup_parent_of(c),
                                      resolved_mounts=user_mounts,
                                      rootfs_propagation=root_prop, pidns=pidns)
        except ocispec.SpecError as e:
            raise errors.InvalidParameter(str(e)) from None
        if host.get("Init"):
            spec["mounts"].append({"destination": "/sbin/docker-init", "type": "bind",
                                   "source": find_init(), "options": ["rbind", "ro", "nosuid"]})
        for m in spec["mounts"]:
            if m["type"] == "bind" and not os.path.exists(m["source"]):
                if m["source"] in etc.values():
                    continue
                os.makedirs(m["source"], exist_ok=True)  # Docker creates missing bind sources
        _check_command(rootfs, spec["process"]["args"][0])
        bundle = os.path.join(cdir, "bundle")
        statefiles.makedirs(bundle)
        # owner-only: the environment holds secrets
        statefiles.write(os.path.join(bundle, "config.json"), json.dumps(spec))
        await self._runtime_cleanup(c)  # a stale runtime state from an earlier run
        from dockyard.containers import logopts

        log_path = "" if (host.get("LogConfig") or {}).get("Type") == "none" else c["LogPath"]
        logset = logopts.settings(c) if log_path else {}
        runtime = self.runtimes[host["Runtime"]]
        reply = await self.sup.request(
            "create", id=cid, bundle=bundle, runtime=runtime, forkserver=self._forkserver(runtime),
            runtime_root=self.runtime_root, tty=bool(c["Config"].get("Tty")),
            open_stdin=bool(c["Config"].get("OpenStdin")),
            stdin_once=bool(c["Config"].get("StdinOnce")),
            log_path=log_path, log_max_size=logset.get("log_max_size"),
            log_max_file=logset.get("log_max_file"),
            **({"log_compress": True} if logset.get("log_compress") else {}))
        if c.get("MountPoints") and any(mp.get("Subpath") for mp in c["MountPoints"]):
            # the container's mount namespace holds them now
            await asyncio.to_thread(self._unstage, c)
        return reply["pid"]

    def _write_etc_files(self, c: dict, hostname: str, mode: str) -> dict:
        cdir = self._dir(c["Id"])
        files = {}
        hn = os.path.join(cdir, "hostname")
        _write(hn, hostname + "\n")
        files["/etc/hostname"] = hn
        if mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            files["/etc/hosts"] = other["HostsPath"]
            files["/etc/resolv.conf"] = other["ResolvConfPath"]
        elif mode != "host" and self.network is not None:
            files.update(self.network.etc_files(c, cdir))
        else:
            hosts = os.path.join(cdir, "hosts")
            extra = "".join(f"{h.split(':', 1)[1]}\t{h.split(':', 1)[0]}\n"
                            for h in c["HostConfig"].get("ExtraHosts") or [])
            _write(hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                          f"{extra}")
            resolv = os.path.join(cdir, "resolv.conf")
            _write(resolv, _host_resolv(c["HostConfig"].get("Dns")))
            files["/etc/hosts"] = hosts
            files["/etc/resolv.conf"] = resolv
        return files

    def _mount_points(self, c: dict, rootfs: str) -> tuple[list[dict], str]:
        """The container's mount points as OCI mounts: volumes mounted by their driver
        (filled from the image at first use unless nocopy), subpaths staged, bind
        sources resolved on the host (and made for -v), propagation checked."""
        from dockyard.containers import mounts as mountpoints

        points = c.get("MountPoints") or []
        out = []
        try:
            for i, mp in enumerate(points):
                if mp["Type"] == "tmpfs":
                    out.append(mountpoints.oci_mount(mp, ""))
                    continue
                if mp["Type"] == "volume":
                    if self.volumes is None:
                        raise errors.InvalidParameter("volumes are not available on this daemon")
                    src = self.volumes.mount(mp["Name"], c["Id"])
                    mp["Source"] = src
                    if mp.get("CopyData") and not mp.get("Subpath"):
                        from dockyard.volumes import copyup

                        copyup.copy_up(rootfs, mp["Destination"], src)
                        mp["CopyData"] = False   # once, as dockerd (at the first start here)
                    if mp.get("Subpath"):
                        src = self._stage_subpath(c, i, src, mp["Subpath"])
                    out.append(mountpoints.oci_mount(mp, src))
                    continue
                src = mp["Source"]
                if not os.path.exists(src):
                    if not mp.get("CreateSource"):
                        raise errors.InvalidParameter(
                            f'invalid mount config for type "bind": bind source path does not '
                            f'exist: {src}')
                    os.makedirs(src, exist_ok=True)   # -v: Docker makes a missing source
                real = os.path.realpath(src)          # a symlinked source, resolved as Docker
                prop = mp.get("Propagation") or "rprivate"
                if prop.endswith(("shared", "slave")):
                    mnt, kind = mountpoints.source_propagation(real)
                    if prop.endswith("shared") and kind != "shared":
                        raise errors.InvalidParameter(
                            f"path {src} is mounted on {mnt} but it is not a shared mount")
                    if prop.endswith("slave") and kind == "private":
                        raise errors.InvalidParameter(
                            f"path {src} is mounted on {mnt} but it is not a shared or slave mount")
                out.append(mountpoints.oci_mount(mp, real))
        except BaseException:
            self._release_mount_points(c)
            raise
        return out, mountpoints.root_propagation(points)

    def _stage_subpath(self, c: dict, index: int, src: str, sub: str) -> str:
        """``volume-subpath``: the subpath is looked up below the volume with no symlink
        followed and that very inode bind-mounted at a private staging point, which the
        runtime then mounts (a container sharing the volume cannot redirect it)."""
        from dockyard.fsroot.nodes import lookup, open_root
        from dockyard.snapshots import mount as snapmount

        root = open_root(src)
        try:
            node = lookup(root, [p for p in sub.split("/") if p and p != "."])
        finally:
            os.close(root)
        if node is None:   # dockerd (safepath.Join): a missing subpath is not made; 404
            raise errors.NotFound(
                f"cannot access path {os.path.join(src, os.path.normpath(sub))}: "
                f"no such file or directory")
        if node.is_link():   # as openat2's RESOLVE_NO_SYMLINKS in dockerd
            node.close()
            raise errors.NotFound(
                f"cannot access path {os.path.join(src, os.path.normpath(sub))}: "
                f"too many levels of symbolic links")
        with node:
            stage_dir = self._stage_dir(c)
            statefiles.makedirs(stage_dir)
            stage = os.path.join(stage_dir, str(index))
            if node.is_dir():
                os.makedirs(stage, exist_ok=True)
            elif not os.path.exists(stage):
                os.close(statefiles.create(stage))
            snapmount.mount_one({"type": "bind", "source": f"/proc/self/fd/{node.fd}",
                                 "options": ["bind"]}, stage)
        return stage

    def _stage_dir(self, c: dict) -> str:
        """Staged subpaths: ``<data-root>/mounts/<id>/<n>``, outside the container's
        directory (whose removal deletes everything below it) and needed only until the
        runtime's create has mounted them into the container."""
        return os.path.join(self.root, "mounts", c["Id"])

    def _unstage(self, c: dict) -> None:
        stage_dir = self._stage_dir(c)
        if os.path.isdir(stage_dir):
            from dockyard.snapshots import mount as snapmount

            try:
                snapmount.unmount_all(stage_dir)
            except OSError as e:
                log.warning("staged mounts of %s left: %s", c["Id"][:12], e)
                return   # never delete below a mount
            shutil.rmtree(stage_dir, ignore_errors=True)

    def _release_mount_points(self, c: dict) -> bool:
        """After a run: staged subpaths unmounted, volumes released (their driver
        unmounts them after their last user). True if any volume was released."""
        self._unstage(c)
        released = False
        if self.volumes is not None:
            for mp in c.get("MountPoints") or []:
                if mp["Type"] == "volume" and mp["Name"]:
                    released = self.volumes.unmount(mp["Name"], c["Id"]) or released
        return released

    def _emit_mounts(self, c: dict, action: str) -> None:
        for mp in c.get("MountPoints") or []:
            if mp["Type"] == "volume" and mp["Name"]:
                self.emit("volume", action, mp["Name"], {
                    "container": c["Id"], "destination": mp["Destination"],
                    "driver": mp["Driver"], "propagation": mp.get("Propagation") or "",
                    "read/write": "true" if mp["RW"] else "false"} if action == "mount"
                    else {"container": c["Id"], "driver": mp["Driver"]})

    async def _cleanup_after_stop(self, c: dict, network: bool = True) -> None:
        # Independent steps, run side by side: the runtime's delete (cgroups, state),
        # the network endpoint, the rootfs mount (detached lazily).
        await asyncio.gather(
            self._runtime_cleanup(c), self._release_network(c) if network else asyncio.sleep(0),
            asyncio.to_thread(_unmount_rootfs, os.path.join(self._dir(c["Id"]), "rootfs")))
        if await asyncio.to_thread(self._release_mount_points, c):
            self._emit_mounts(c, "unmount")

    async def _release_network(self, c: dict) -> None:
        if self.network is None:
            return
        try:
            if c["NetworkSettings"].get("SandboxKey"):
                from dockyard.containers.networking import network_events

                network_events(self, c, "disconnect")
            await self.network.detach(c)
            # as dockerd: the networks stay listed, without their addresses
            c["NetworkSettings"] = await asyncio.to_thread(self.network.planned_settings, c)
        except Exception as e:  # noqa: BLE001 - cleanup goes on
            log.warning("network detach of %s: %s", c["Id"][:12], e)

    async def _runtime_cleanup(self, c: dict) -> None:
        # Both runtimes keep a container's state in <root>/<id>: no state, nothing to delete
        # (saves a runtime process on every start and remove).
        if not os.path.exists(os.path.join(self.runtime_root, c["Id"])):
            return
        await self._runtime("delete", "--force", c["Id"], check=False, c=c)

    def _forkserver(self, runtime_path: str) -> bool:
        """Our own runtime runs in the supervisor's fork server (no interpreter start
        per call); any other runtime is executed."""
        return runtime_path == self.runtimes.get("dockyard")

    async def _runtime(self, *args: str, check: bool = True, c: dict | None = None) -> str:
        runtime = self.runtimes[(c or {}).get("HostConfig", {}).get("Runtime") or self.default_runtime]
        try:
            reply = await self.sup.request("runtime", runtime=runtime, runtime_root=self.runtime_root,
                                           args=list(args), forkserver=self._forkserver(runtime))
            code, out, err = reply["code"], reply["stdout"], reply["stderr"]
        except errors.DockyardError as e:
            if "unknown operation" not in str(e):
                raise
            # a supervisor from an older Dockyard: run the command ourselves
            proc = await asyncio.create_subprocess_exec(
                runtime, "--root", self.runtime_root, *args, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            bout, berr = await proc.communicate()
            code, out, err = proc.returncode, bout.decode(), berr.decode()
        if check and code != 0:
            raise errors.DockyardError(f"OCI runtime {args[0]} failed: {err.strip()}")
        return out


# ---- helpers ---------------------------------------------------------------------------------
def _write(path: str, text: str) -> None:
    """/etc/hostname, hosts, resolv.conf: 0644 whatever the umask (a non-root user in the
    container reads them; the container's 0700 directory keeps other host users out)."""
    statefiles.write(path, text, mode=0o644)


def _host_resolv(dns: list[str] | None) -> str:
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    try:
        with open("/etc/resolv.conf") as f:
            lines = [ln for ln in f if not ln.strip().startswith("nameserver 127.")]
    except OSError:
        lines = []
    if not any(ln.strip().startswith("nameserver") for ln in lines):
        lines += ["nameserver 8.8.8.8\n", "nameserver 8.8.4.4\n"]
    return "".join(lines)


def _mount_rootfs(mounts: list[dict], target: str) -> None:
    statefiles.makedirs(target)   # the mount point; mounted, it shows the image's / mode
    if os.path.ismount(target):
        return
    try:
        from dockyard.snapshots import mount as snapmount

        snapmount.mount_all(mounts, target)
        return
    except ImportError:
        pass
    for m in mounts:
        opts = ",".join(m.get("options") or [])
        argv = ["mount", "-t", m["type"], m.get("source") or "none", target]
        if opts:
            argv[1:1] = ["-o", opts]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise errors.DockyardError(f"mount of the container's rootfs failed: {r.stderr.strip()}")


def _unmount_rootfs(target: str) -> None:
    from dockyard.snapshots import mount as snapmount

    for _ in range(5):
        if not os.path.ismount(target):
            return
        try:
            snapmount.unmount(target)  # umount2(2): no umount process per stop
        except OSError:
            try:
                snapmount.unmount(target, 2)  # MNT_DETACH
            except OSError:
                pass


INIT_CANDIDATES = ("docker-init", "tini-static")


def find_init() -> str:
    """The static init that ``--init`` bind-mounts at /sbin/docker-init (tini, as Docker)."""
    for name in INIT_CANDIDATES:
        path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/bin:/usr/local/bin:/usr/libexec/docker")
        if path:
            return os.path.realpath(path)
    raise errors.InvalidParameter(
        "--init: no init binary found on the daemon's host: install tini (tini-static or "
        "docker-init in PATH)")


def _check_command(rootfs: str, path: str) -> None:
    """Refuse what runc refuses at create: an absolute command that is a directory or a
    file nobody may execute (our runtime would only fail after start, with exit 1)."""
    if not path.startswith("/"):
        return
    from dockyard.fsroot.nodes import open_root
    from dockyard.fsroot.resolve import resolve

    try:   # in the container's root: an intermediate symlink leads nowhere on the host
        fd = open_root(rootfs)
        try:
            res = resolve(fd, path, follow_last=False)
        finally:
            os.close(fd)
        res.close()
        st_ = res.st
    except OSError:
        return
    if st_ is None:
        return  # missing, or behind a symlink: the runtime resolves and reports it
    import stat as stat_mod

    if stat_mod.S_ISDIR(st_.st_mode):
        raise errors.DockyardError(f'OCI runtime create failed: exec: "{path}": is a directory')
    if stat_mod.S_ISREG(st_.st_mode) and not st_.st_mode & 0o111:
        raise errors.DockyardError(f'OCI runtime create failed: exec: "{path}": permission denied')
