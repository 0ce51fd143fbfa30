"""The container service: create, start, stop, wait, remove, exec, logs... (no HTTP here).

Flow of a start: the image's snapshot is mounted as the container's rootfs, the
/etc files are written, ``dockyard.oci.spec`` builds config.json, the supervisor
runs ``<runtime> create`` (the init blocks before exec), the network is wired
into the new network namespace, then ``<runtime> start`` releases the init.
The supervisor reports exits; the service records them and applies restart
policies. Records live in SQLite; the supervisor keeps the processes, so a
restarted daemon finds its containers with ``restore()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from typing import Any, AsyncIterator, Callable

from dockyard import errors, statefiles
from dockyard.containers import state as st
from dockyard.containers import warm as warmpool
from dockyard.cli.units import human_duration  # go-units, pure: shared with the CLI
from dockyard.containers.store import ContainerStore
from dockyard.oci import spec as ocispec
from dockyard.supervisor import client as supclient
from dockyard.supervisor import jsonlog

log = logging.getLogger("dockyard.containers")

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"
WARM_NAME = "/ warm "   # store rows of the warm pool: a name no container can have


def _warm_cgroup_attach() -> None:
    """The runtime is about to move a container's init into its cgroups: let the kernel's
    RCU grace period for that pass now, while we prepare the rootfs and the spec."""
    from dockyard.runtime import cgwarm
    cgwarm.warm_for(0.5)


def now() -> str:
    return jsonlog.rfc3339nano(time.time_ns())


class ContainerService:
    def __init__(self, *, root: str, images: Any, store: ContainerStore,
                 supervisor: supclient.AsyncClient, runtimes: dict[str, str],
                 default_runtime: str, emit: Callable[..., None] | None = None,
                 network: Any = None, seccomp_profile: Callable[[list[str]], dict] | None = None,
                 runtime_root: str | None = None, cgroup_parent: str = "/dockyard",
                 warm_pool: int = 0) -> None:
        self.root = root
        self.images = images
        self.store = store
        self.sup = supervisor
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.emit = emit or (lambda *a, **k: None)
        self.network = network
        self.seccomp_profile = seccomp_profile
        self.runtime_root = runtime_root or os.path.join(root, "runtime")
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.containers: dict[str, dict] = {}
        self.exits: dict[str, asyncio.Event] = {}
        self.removed: dict[str, asyncio.Event] = {}
        self.execs: dict[str, dict] = {}
        self._watch_task: asyncio.Task | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending_attach: dict[str, list] = {}
        self._restart_pending: set[str] = set()
        self._reserved_names: set[str] = set()
        self.warm = warmpool.Pool(warm_pool)
        self._background: set[asyncio.Future] = set()
        self._removals: set[asyncio.Future] = set()   # --rm files still being removed
        if hasattr(supervisor, "replace_dead"):
            supervisor.replace_dead = self._replace_dead_supervisor
        statefiles.makedirs(os.path.join(root, "containers"))   # modes: daemon/dataroot.py

    # ---- lookup ----------------------------------------------------------------------
    def get(self, ref: str) -> dict:
        """By full id, name (with or without '/'), or unique id prefix, as Docker resolves."""
        if ref in self.containers:
            return self.containers[ref]
        name = "/" + ref.lstrip("/")
        for c in self.containers.values():
            if c["Name"] == name:
                return c
        if ref:
            matches = [c for cid, c in self.containers.items() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise errors.InvalidParameter(
                    f"multiple IDs found with provided prefix: {ref}")
        raise errors.NotFound(f"No such container: {ref}")

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def _save(self, c: dict) -> None:
        self.store.put(c)

    def _dir(self, cid: str) -> str:
        return os.path.join(self.root, "containers", cid)

    def _cgroup(self, cid: str) -> str:
        return f"{self.cgroup_parent}/{cid}"

    def _oom_killed(self, cid: str) -> bool:
        try:
            from dockyard.runtime import cgroups

            return bool(cgroups.open_manager(self._cgroup(cid), cid).oom_killed())
        except Exception:  # noqa: BLE001 - no cgroup left: no evidence of an OOM kill
            return False

    def usage(self, image_id: str) -> list[str]:
        return [cid for cid, c in self.containers.items() if c["Image"] == image_id]

    # ---- boot ------------------------------------------------------------------------
    async def restore(self) -> None:
        """Load records and reconcile them with what the supervisor still runs."""
        warm_rows = []
        for rec in self.store.all():
            if rec["Name"].startswith(WARM_NAME):
                warm_rows.append(rec)   # made ahead by a daemon that stopped: torn down
                continue
            self.containers[rec["Id"]] = rec
            self.exits.setdefault(rec["Id"], asyncio.Event())
        tasks = {t["id"]: t for t in (await self.sup.request("list"))["tasks"]}
        self._watch_task = asyncio.ensure_future(self._watch_exits())
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
            elif s == "created" and tasks.get(cid, {}).get("status") == "created":
                await self._release_prepared(c)   # taken from the warm pool, never started
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
                    elif ev.get("kind") == "container":
                        asyncio.ensure_future(self._on_exit(ev["id"], ev["exit_code"], ev["time"],
                                                           pid=ev.get("pid", 0)))
                    elif ev.get("kind") == "exec" and ev["id"] in self.execs:
                        ex = self.execs[ev["id"]]
                        ex["Running"], ex["ExitCode"] = False, ev["exit_code"]
                        ex["_done"].set()
                        c = self.containers.get(ex["ContainerID"])
                        if c:
                            self.emit("container", f"exec_die", c["Id"],
                                      {**self._attrs(c), "execID": ev["id"],
                                       "exitCode": str(ev["exit_code"])})
            except (OSError, errors.DockyardError) as e:
                log.warning("supervisor event stream lost: %s; reconnecting", e)
                if isinstance(e, (ConnectionRefusedError, FileNotFoundError)):
                    await self._replace_dead_supervisor()
            await asyncio.sleep(0.5)

    async def _replace_dead_supervisor(self) -> None:
        """The supervisor is gone (killed): start a new one and record the containers it
        took with it as exited (their stdio and exit status went with it), so that
        waits end and restart policies apply instead of hanging forever."""
        try:
            await asyncio.to_thread(supclient.ensure_running, os.path.dirname(self.sup.path))
            tasks = {t["id"]: t for t in (await self.sup.request("list"))["tasks"]}
        except (OSError, errors.DockyardError) as e:
            log.warning("could not restart the supervisor: %s", e)
            return
        log.warning("supervisor restarted; containers it ran are recorded as exited")
        self._record_exits(tasks)

    async def _reconcile_exits(self) -> None:
        """Exits that happened while no event stream was connected (a lost supervisor
        connection, a restarted supervisor) are read from the supervisor's task list."""
        try:
            tasks = {t["id"]: t for t in (await self.sup.request("list"))["tasks"]}
        except (OSError, errors.DockyardError) as e:
            log.warning("could not list the supervisor's tasks: %s", e)
            return
        self._record_exits(tasks)

    def _record_exits(self, tasks: dict) -> None:
        for cid, c in list(self.containers.items()):
            t = tasks.get(cid)
            if c["State"]["Status"] in ("running", "paused", "restarting") and (
                    t is None or t["status"] == "exited"):
                code = (t or {}).get("exit_code")
                asyncio.ensure_future(self._on_exit(cid, 255 if code is None else code,
                                                    (t or {}).get("finished_at") or now(),
                                                    pid=(t or {}).get("pid") or 0))

    async def close(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
        for t in list(self._background):
            t.cancel()
        for e in self.warm.drain():
            await self._destroy_warm(e.record)
        for cid in list(self.warm.taken):
            c = self.containers.get(cid)
            if c is not None:
                async with self._lock(cid):
                    await self._release_prepared(c)

    # ---- create ----------------------------------------------------------------------
    async def create(self, name: str | None, body: dict) -> dict:
        if not isinstance(body, dict):
            raise errors.InvalidParameter("invalid JSON: container config must be an object")
        config = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
        host = dict(body.get("HostConfig") or {})
        image_ref = config.get("Image") or ""
        if not image_ref:
            raise errors.InvalidParameter("No image was specified")
        if name:
            if not NAME_RE.match(name):
                raise errors.InvalidParameter(
                    f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = "/" + name.lstrip("/")
            self._check_name_free(name)
        runtime = host.get("Runtime") or self.default_runtime
        if runtime not in self.runtimes:
            raise errors.InvalidParameter(f"unknown or invalid runtime name: {runtime}")
        _validate_host_config(host)
        _check_storage_opt(host, str(getattr(getattr(self.images, "snapshotter", None), "root", self.root)))
        warnings = _discard_unsupported_blkio(host)
        _warm_cgroup_attach()   # `docker run` starts it right after
        image_id = await asyncio.to_thread(self.images.resolve, image_ref)
        image_config = (await asyncio.to_thread(self.images.get_config, image_id)).get("config") or {}
        cid = secrets.token_hex(32)
        # Merge the image's defaults into the container's Config as Docker shows it.
        merged = _merge_config(config, image_config)
        try:
            ocispec.command(config, image_config)
            ocispec.capabilities(host.get("CapAdd"), host.get("CapDrop"), bool(host.get("Privileged")))
            ocispec.resources(host)
            for b in host.get("Binds") or []:
                ocispec.parse_bind(b)
            ocispec.parse_signal(merged.get("StopSignal"))
        except ocispec.SpecError as e:
            raise errors.InvalidParameter(str(e)) from None
        mode = host.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])  # 404 if the other container is unknown
        if self.network is not None:
            await asyncio.to_thread(self.network.validate, host, merged)
        # The name is taken here, with no await between the check and the reservation:
        # parallel creates (`docker run` x 50) never end up with the same name.
        if name:
            self._check_name_free(name)
        else:
            name = "/" + _random_name(set(c["Name"] for c in self.containers.values())
                                      | self._reserved_names)
        self._reserved_names.add(name)
        try:
            out = await self._create_reserved(cid, name, config, host, body, merged, image_id,
                                              image_config, runtime)
            return {**out, "Warnings": warnings + list(out.get("Warnings") or [])}
        finally:
            self._reserved_names.discard(name)

    def _check_name_free(self, name: str) -> None:
        for other in self.containers.values():
            if other["Name"] == name:
                raise errors.Conflict(
                    f'Conflict. The container name "{name}" is already in use by container '
                    f'"{other["Id"]}". You have to remove (or rename) that container to be '
                    f'able to reuse that name.')
        if name in self._reserved_names:
            raise errors.Conflict(
                f'Conflict. The container name "{name}" is already in use by a container being '
                f'created. You have to remove (or rename) that container to be able to reuse '
                f'that name.')

    def _new_record(self, cid: str, name: str, config: dict, host: dict, body: dict,
                    merged: dict, image_id: str, image_config: dict, runtime: str) -> dict:
        host.setdefault("NetworkMode", "default")
        host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        for k in ("KernelMemory", "KernelMemoryTCP"):  # deprecated; newer clients omit them
            host.setdefault(k, 0)
        host["Runtime"] = runtime
        entry_args = ocispec.command(config, image_config)
        return {
            "Id": cid, "Created": now(), "Path": entry_args[0], "Args": entry_args[1:],
            "State": st.new_state(), "Image": image_id, **self._id_paths(cid), "Name": name,
            "RestartCount": 0, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
            "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None, "HostConfig": host,
            "GraphDriver": {"Name": "overlay2", "Data": None},
            "Mounts": _mounts_view(host), "Config": merged,
            "NetworkingConfig": body.get("NetworkingConfig") or {},
            "NetworkSettings": _empty_network_settings(),
            "HasBeenStartedBefore": False, "HasBeenManuallyStopped": False,
        }

    def _id_paths(self, cid: str) -> dict:
        cdir = self._dir(cid)
        return {"ResolvConfPath": os.path.join(cdir, "resolv.conf"),
                "HostnamePath": os.path.join(cdir, "hostname"),
                "HostsPath": os.path.join(cdir, "hosts"),
                "LogPath": os.path.join(cdir, f"{cid}-json.log")}

    async def _create_reserved(self, cid: str, name: str, config: dict, host: dict, body: dict,
                               merged: dict, image_id: str, image_config: dict,
                               runtime: str) -> dict:
        rec = self._new_record(cid, name, config, host, body, merged, image_id, image_config,
                               runtime)
        entry = None
        if self.warm.enabled and host.get("AutoRemove"):
            k = warmpool.key(rec)
            self.warm.note(k)
            entry = self.warm.take(k)
            if entry is None and k in self.warm.making:
                # one is being made (the last identical run asked for it): it is ready
                # sooner than a new one would be
                await asyncio.shield(self.warm.making[k])
                entry = self.warm.take(k)
        if entry is not None:
            # made ahead for exactly this: its own (random) id, its rootfs mounted and its
            # init waiting in the runtime; _start_locked only releases it
            w = entry.record
            w.update(Name=name, Created=rec["Created"])
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self._dir(w["Id"]), warmpool.MARKER))
            self.warm.taken[w["Id"]] = entry
            self._schedule_warm_expiry()
            rec = w
        else:
            cdir = self._dir(cid)
            statefiles.makedirs(cdir)
            try:
                await asyncio.to_thread(self.images.prepare_rootfs, image_id, cid, True)
            except BaseException:
                shutil.rmtree(cdir, ignore_errors=True)
                raise
        cid = rec["Id"]
        self.containers[cid] = rec
        self.exits[cid] = asyncio.Event()
        self._save(rec)
        self.emit("container", "create", cid, self._attrs(rec))
        return {"Id": cid, "Warnings": []}

    def _attrs(self, c: dict) -> dict:
        attrs = {"image": c["Config"].get("Image", ""), "name": c["Name"].lstrip("/")}
        attrs.update(c["Config"].get("Labels") or {})
        return attrs

    # ---- start -----------------------------------------------------------------------
    async def start(self, ref: str) -> None:
        c = self.get(ref)
        cid = c["Id"]
        async with self._lock(cid):
            s = c["State"]["Status"]
            if s == "running":
                raise errors.NotModified("container already started")
            if s == "paused":
                raise errors.Conflict("cannot start a paused container, try unpause instead")
            if s in ("removing", "dead"):
                raise errors.Conflict(f"container is marked for removal and cannot be started")
            try:
                await self._start_locked(c)
            except errors.DockyardError as e:
                # clients attached for this start get their stream closed
                for go, _ in self._pending_attach.pop(cid, []):
                    if not go.done():
                        go.set_exception(errors.Conflict(f"container failed to start: {e}"))
                c["State"]["Error"] = str(e)
                c["State"]["ExitCode"] = _start_error_code(str(e))
                self._save(c)
                await self._cleanup_after_stop(c)
                failed = e
            else:
                return
        # Like dockerd: a --rm container that cannot start is removed (`docker run --rm`
        # waits for condition=removed before it reports the error).
        if c["HostConfig"].get("AutoRemove"):
            try:
                await self.remove(cid, force=True)
            except errors.DockyardError as e:
                log.warning("auto-remove of %s failed: %s", cid[:12], e)
        raise failed

    async def _start_locked(self, c: dict) -> None:
        cid = c["Id"]
        host = c["HostConfig"]
        mode = host.get("NetworkMode") or "default"
        entry = self.warm.taken.pop(cid, None)
        pid = None
        if entry is not None:
            if warmpool.key(c) == entry.key and os.path.exists(f"/proc/{entry.pid}"):
                pid = entry.pid
                log.debug("container %s starts from the warm pool", cid[:12])
            else:   # changed since (docker update...) or gone: made anew
                await self._release_prepared(c)
        if pid is None:
            _warm_cgroup_attach()
            pid = await self._create_task(c)
        try:
            if self.network is not None and mode != "host" and not mode.startswith("container:"):
                try:
                    settings = await self.network.attach(c, f"/proc/{pid}/ns/net")
                except errors.DockyardError as e:   # Docker 28's words around the driver's
                    raise type(e)(f"failed to set up container networking: {e}") from None
                if settings:
                    c["NetworkSettings"] = settings
            if self.exits.get(cid) is None or self.exits[cid].is_set():
                self.exits[cid] = asyncio.Event()
            await self._connect_pending_attaches(cid)
            started_at = now()
            await self.sup.request("start", id=cid)
        except BaseException:
            await self._runtime("delete", "--force", cid, check=False, c=c)
            raise
        stt = c["State"]
        st.set_status(stt, "running")
        stt.update(Pid=pid, StartedAt=started_at, ExitCode=0, Error="", OOMKilled=False,
                   FinishedAt=ZERO_TIME)
        c["HasBeenStartedBefore"] = True
        c["HasBeenManuallyStopped"] = False
        self._save(c)
        self.emit("container", "start", cid, self._attrs(c))
        if entry is not None and pid == entry.pid and host.get("AutoRemove"):
            self._want_warm(c)   # the next of a series of `run --rm`, made while this one runs

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
        etc = self._write_etc_files(c, hostname, mode)
        seccomp = None
        if self.seccomp_profile is not None and not host.get("Privileged"):
            caps = ocispec.capabilities(host.get("CapAdd"), host.get("CapDrop"), False)
            seccomp = self.seccomp_profile(caps)
        try:
            spec = ocispec.build_spec(container_id=cid, config=c["Config"], host_config=host,
                                      image_config=image_config, rootfs=rootfs, hostname=hostname,
                                      etc_files=etc, netns=netns, seccomp=seccomp,
                                      cgroup_parent=self.cgroup_parent)
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
        log_cfg = (host.get("LogConfig") or {}).get("Config") or {}
        runtime = self.runtimes[host["Runtime"]]
        reply = await self.sup.request(
            "create", id=cid, bundle=bundle, runtime=runtime, forkserver=self._forkserver(runtime),
            runtime_root=self.runtime_root, tty=bool(c["Config"].get("Tty")),
            open_stdin=bool(c["Config"].get("OpenStdin")),
            stdin_once=bool(c["Config"].get("StdinOnce")), log_path=c["LogPath"],
            log_max_size=jsonlog.parse_size(log_cfg.get("max-size", "10m")),
            log_max_file=int(log_cfg.get("max-file", 3)))
        return reply["pid"]

    # ---- the warm pool (see containers/warm.py) ----------------------------------------
    def _want_warm(self, c: dict) -> None:
        """After a `run --rm` container: make the next one like it ahead of time."""
        host = c["HostConfig"]
        if not self.warm.enabled or any(
                isinstance(v, str) and v.startswith("container:") for v in host.values()):
            return   # joins another container's namespaces: those may be gone by then
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
        loop = asyncio.get_running_loop()
        loop.call_later(self.warm.ttl + 0.5, lambda: self._in_background(self._expire_warm()))

    async def _expire_warm(self) -> None:
        for e in self.warm.expired():
            await self._destroy_warm(e.record)
        deadline = time.monotonic() - self.warm.ttl
        for cid, e in list(self.warm.taken.items()):
            c = self.containers.get(cid)
            if e.made <= deadline and c is not None:
                async with self._lock(cid):
                    if self.warm.taken.pop(cid, None) is not None:
                        await self._release_prepared(c)   # created long ago, not started

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

    # ---- exit, stop, kill --------------------------------------------------------------
    async def _on_exit(self, cid: str, code: int, finished: str, booting: bool = False,
                       pid: int = 0) -> None:
        c = self.containers.get(cid)
        if c is None:
            return
        # A start in progress holds the lock: its exit is handled once it is recorded.
        async with self._lock(cid):
            stt = c["State"]
            if stt["Status"] not in ("running", "paused", "restarting"):
                return
            if pid and stt["Pid"] and pid != stt["Pid"]:
                return  # the exit of an earlier run
            stt["OOMKilled"] = await asyncio.to_thread(self._oom_killed, cid) or stt.get("OOMKilled", False)
            st.set_status(stt, "exited")
            stt.update(ExitCode=code, FinishedAt=finished, Pid=0)
            self._save(c)

            def died() -> None:
                if stt["OOMKilled"]:
                    self.emit("container", "oom", cid, self._attrs(c))
                self.emit("container", "die", cid, {**self._attrs(c), "exitCode": str(code)})

            auto_remove = bool(c["HostConfig"].get("AutoRemove")) and not self._restart_wanted(c)
            if auto_remove:
                # `run --rm`: once its network is released (its ports free for the next
                # container), the container is gone for every client; its mounts,
                # cgroups and files are removed just after, still under this lock.
                await self._release_network(c)
                died()
                self._forget(c, pending_files=True)
                await self._cleanup_after_stop(c, network=False)
            else:
                await self._cleanup_after_stop(c)
                died()
                ev = self.exits.get(cid)
                if ev:
                    ev.set()
        if auto_remove:
            removal = asyncio.ensure_future(self._remove_files(c))
            self._removals.add(removal)
            removal.add_done_callback(self._removals.discard)
            await removal
            self._want_warm(c)
            return
        if self._restart_wanted(c) and not booting:
            c["RestartCount"] += 1
            self._save(c)
            delay = min(0.1 * (2 ** min(c["RestartCount"], 10)), 60) if c["RestartCount"] > 1 else 0.1
            self._restart_pending.add(cid)
            try:
                await asyncio.sleep(delay)
            finally:
                self._restart_pending.discard(cid)
            if c["Id"] in self.containers and c["State"]["Status"] == "exited" \
                    and not c.get("HasBeenManuallyStopped"):
                try:
                    await self.start(cid)
                    self.emit("container", "restart", cid, self._attrs(c))
                except errors.DockyardError as e:
                    log.warning("restart of %s failed: %s", cid[:12], e)

    def _restart_wanted(self, c: dict) -> bool:
        policy = c["HostConfig"].get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if c.get("HasBeenManuallyStopped") or name == "no":
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return c["State"]["ExitCode"] != 0 and (limit == 0 or c["RestartCount"] < limit)
        return False

    async def _cleanup_after_stop(self, c: dict, network: bool = True) -> None:
        # Independent steps, run side by side: the runtime's delete (cgroups, state),
        # the network endpoint, the rootfs mount (detached lazily).
        await asyncio.gather(
            self._runtime_cleanup(c), self._release_network(c) if network else asyncio.sleep(0),
            asyncio.to_thread(_unmount_rootfs, os.path.join(self._dir(c["Id"]), "rootfs")))

    async def _release_network(self, c: dict) -> None:
        if self.network is None:
            return
        try:
            await self.network.detach(c)
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

    async def kill(self, ref: str, sig: str | int | None = None) -> None:
        c = self.get(ref)
        try:
            signum = ocispec.parse_signal(sig, default="SIGKILL")
        except ocispec.SpecError:
            raise errors.InvalidParameter(f"Invalid signal: {sig}") from None
        if c["State"]["Status"] not in ("running", "paused", "restarting"):
            raise errors.Conflict(f"Cannot kill container: {ref}: Container {c['Id']} is not running")
        self.emit("container", "kill", c["Id"], {**self._attrs(c), "signal": str(signum)})
        await self._runtime("kill", c["Id"], str(signum), check=False, c=c)
        if c["State"]["Status"] == "paused":
            await self._runtime("resume", c["Id"], check=False, c=c)

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        c = self.get(ref)
        if c["State"]["Status"] not in ("running", "paused", "restarting"):
            if c["Id"] in self._restart_pending:  # between a death and its restart: cancel the restart
                c["HasBeenManuallyStopped"] = True
                self._save(c)
                return
            raise errors.NotModified("container already stopped")
        c["HasBeenManuallyStopped"] = True
        self._save(c)
        if timeout is None:
            timeout = c["Config"].get("StopTimeout")
            timeout = 10 if timeout is None else int(timeout)
        stop_sig = ocispec.parse_signal(sig or c["Config"].get("StopSignal") or "SIGTERM")
        ev = self.exits[c["Id"]]
        await self._runtime("kill", c["Id"], str(stop_sig), check=False, c=c)
        if c["State"]["Status"] == "paused":
            await self._runtime("resume", c["Id"], check=False, c=c)
        if timeout < 0:
            await ev.wait()
        else:
            try:
                await asyncio.wait_for(ev.wait(), timeout)
            except asyncio.TimeoutError:
                await self._runtime("kill", "--all", c["Id"], "9", check=False, c=c)
                await self._runtime("kill", c["Id"], "9", check=False, c=c)
                await ev.wait()
        self.emit("container", "stop", c["Id"], self._attrs(c))

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        c = self.get(ref)
        if c["State"]["Running"]:
            await self.stop(ref, timeout)
        await self.start(c["Id"])
        self.emit("container", "restart", c["Id"], self._attrs(c))

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        """Docker's conditions: not-running (default), next-exit, removed.

        ``exits[cid]`` is the event of the container's current (or next) run: set when
        that run ends, replaced by a fresh one when a new run starts.
        """
        c = self.get(ref)
        cid = c["Id"]
        if condition not in ("not-running", "next-exit", "removed", ""):
            raise errors.InvalidParameter(f"invalid condition: \"{condition}\"")
        if condition == "removed":
            await self.removed.setdefault(cid, asyncio.Event()).wait()
            return c["State"]["ExitCode"]
        if condition != "next-exit" and not c["State"]["Running"]:
            return c["State"]["ExitCode"]
        ev = self.exits.get(cid)
        if ev is None or ev.is_set():
            ev = self.exits[cid] = asyncio.Event()
        await ev.wait()
        return c["State"]["ExitCode"]

    # ---- remove ----------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        cid = c["Id"]
        if c["State"]["Running"]:
            if not force:
                # dockerd 20.10's words
                if c["State"]["Paused"]:
                    raise errors.Conflict(
                        f"You cannot remove a paused container {cid}. Unpause and then stop the "
                        f"container before attempting removal or force remove")
                raise errors.Conflict(
                    f"You cannot remove a running container {cid}. Stop the container before "
                    f"attempting removal or force remove")
            c["HasBeenManuallyStopped"] = True
            await self._runtime("kill", "--all", cid, "9", check=False, c=c)
            await self._runtime("kill", cid, "9", check=False, c=c)
            if c["State"]["Paused"]:
                await self._runtime("resume", cid, check=False, c=c)
            try:
                await asyncio.wait_for(self.exits[cid].wait(), 15)
            except asyncio.TimeoutError:
                pass
        async with self._lock(cid):   # an exit's cleanup in progress ends first
            if c["State"]["Status"] == "removing" and not force:
                raise errors.Conflict(f"removal of container {ref} is already in progress")
            if cid not in self.containers:
                return   # removed meanwhile (--rm)
            c["State"]["Status"] = "removing"
            self._save(c)
            await self._finish_remove(c)

    async def _finish_remove(self, c: dict) -> None:
        await self._cleanup_after_stop(c)
        await self._remove_files(c)
        self._forget(c)

    def _forget(self, c: dict, pending_files: bool = False) -> None:
        """The container leaves the daemon's view: record, name, events, waiters.
        With files still to remove, its row stays (status "removing", under a name no
        container can have) until _remove_files ends, so a daemon that stops before
        that finishes the removal on its next start (restore)."""
        cid = c["Id"]
        if pending_files:
            c["State"]["Status"] = "removing"
            self.store.put({**c, "Name": f"/ removing {cid}"})
        else:
            self.store.delete(cid)
        self.containers.pop(cid, None)
        self.emit("container", "destroy", cid, self._attrs(c))
        ev = self.removed.setdefault(cid, asyncio.Event())
        ev.set()
        ex = self.exits.get(cid)
        if ex:
            ex.set()

    async def _remove_files(self, c: dict) -> None:
        cid = c["Id"]

        async def forget_task() -> None:
            try:
                await self.sup.request("forget", id=cid)
            except errors.DockyardError as e:
                log.warning("supervisor forget %s: %s", cid[:12], e)

        def remove_files() -> None:
            self.images.remove_rootfs(cid)
            cdir = self._dir(cid)
            if os.path.exists(os.path.join(cdir, warmpool.MARKER)):
                # the marker goes last: whoever lists containers/ sees a pool entry
                # until the directory is gone
                for n in os.listdir(cdir):
                    if n != warmpool.MARKER:
                        shutil.rmtree(os.path.join(cdir, n), ignore_errors=True)
            shutil.rmtree(cdir, ignore_errors=True)

        if self.warm.taken.pop(cid, None) is not None:
            await self._reaped(cid)   # its init was waiting: killed by the runtime's delete
        await asyncio.gather(forget_task(), asyncio.to_thread(remove_files))
        if cid not in self.containers:
            self.store.delete(cid)
            self._locks.pop(cid, None)

    async def prune(self, filters: dict | None = None) -> dict:
        deleted, space = [], 0
        for c in list(self.containers.values()):
            if c["State"]["Status"] in ("exited", "created", "dead") and _match_labels(c, filters):
                await self.remove(c["Id"])
                deleted.append(c["Id"])
        self.emit("container", "prune", "", {"reclaimed": str(space)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}

    # ---- pause, rename, update, top ----------------------------------------------------
    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        if c["State"]["Paused"]:
            raise errors.Conflict(f"Container {c['Id']} is already paused")
        await self._runtime("pause", c["Id"], c=c)
        st.set_status(c["State"], "paused")
        self._save(c)
        self.emit("container", "pause", c["Id"], self._attrs(c))

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if not c["State"]["Paused"]:
            raise errors.Conflict(f"Container {c['Id']} is not paused")
        await self._runtime("resume", c["Id"], c=c)
        st.set_status(c["State"], "running")
        self._save(c)
        self.emit("container", "unpause", c["Id"], self._attrs(c))

    async def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name or not NAME_RE.match(new_name):
            raise errors.InvalidParameter(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new = "/" + new_name.lstrip("/")
        if new == c["Name"]:
            raise errors.InvalidParameter("Renaming a container with the same name as its current name")
        try:
            self._check_name_free(new)
        except errors.Conflict as e:
            raise errors.Conflict(f"Error when allocating new name: {e}") from None
        old = c["Name"]
        c["Name"] = new
        self._save(c)
        self.emit("container", "rename", c["Id"], {**self._attrs(c), "oldName": old})

    async def update(self, ref: str, body: dict) -> dict:
        c = self.get(ref)
        host = c["HostConfig"]
        keys = ("CpuShares", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuQuota",
                "CpuPeriod", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight")
        new = dict(host)
        for k in keys:
            if body.get(k) not in (None, 0, ""):
                new[k] = body[k]
        if body.get("RestartPolicy") and body["RestartPolicy"].get("Name"):
            if host.get("AutoRemove") and body["RestartPolicy"]["Name"] != "no":
                raise errors.InvalidParameter(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container")
            new["RestartPolicy"] = body["RestartPolicy"]
        warnings = _discard_unsupported_blkio(new)
        try:
            res = ocispec.resources(new)
        except ocispec.SpecError as e:
            raise errors.InvalidParameter(str(e)) from None
        if c["State"]["Running"]:
            from dockyard.runtime import cgroups

            try:
                mgr = cgroups.open_manager(self._cgroup(c["Id"]), c["Id"])
                res.pop("devices", None)
                await asyncio.to_thread(mgr.apply, res)
            except cgroups.CgroupError as e:
                raise errors.InvalidParameter(f"Cannot update container {c['Id']}: {e}") from None
        c["HostConfig"] = new
        self._save(c)
        self.emit("container", "update", c["Id"], self._attrs(c))
        return {"Warnings": warnings or None}

    async def top(self, ref: str, ps_args: str = "-ef") -> dict:
        c = self.get(ref)
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        out = await self._runtime("ps", "--format", "json", c["Id"], c=c)
        pids = set(json.loads(out or "[]"))
        args = ps_args.split() if ps_args else ["-ef"]
        proc = await asyncio.create_subprocess_exec("ps", *args, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        pout, perr = await proc.communicate()
        if proc.returncode != 0:
            raise errors.DockyardError(f"ps: {perr.decode().strip()}")
        lines = pout.decode().splitlines()
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError:
            raise errors.DockyardError("Couldn't find PID field in ps output") from None
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    # ---- streams -------------------------------------------------------------------------
    async def attach(self, ref: str, stdin: bool, stdout: bool, stderr: bool):
        """Open the live stream; returns (tty, reader, writer) to the supervisor.

        Clients attach before they start a container (``docker run``). Such an
        attach waits until the next start has created the task, connects, and
        only then lets the start release the process, so no output is lost.
        """
        c = self.get(ref)
        cid = c["Id"]
        self.emit("container", "attach", cid, self._attrs(c))
        if c["State"]["Running"]:
            reply, reader, writer = await self.sup.open_stream(
                "attach", id=cid, stdin=stdin, stdout=stdout, stderr=stderr)
            return bool(c["Config"].get("Tty")), reader, writer
        loop = asyncio.get_running_loop()
        go, done = loop.create_future(), loop.create_future()
        self._pending_attach.setdefault(cid, []).append((go, done))
        try:
            await go
            reply, reader, writer = await self.sup.open_stream(
                "attach", id=cid, stdin=stdin, stdout=stdout, stderr=stderr)
        except BaseException as e:
            if not done.done():
                done.set_exception(e) if isinstance(e, Exception) else done.cancel()
            raise
        done.set_result(None)
        return bool(c["Config"].get("Tty")), reader, writer

    async def _connect_pending_attaches(self, cid: str) -> None:
        waiting = self._pending_attach.pop(cid, [])
        for go, _ in waiting:
            if not go.done():
                go.set_result(None)
        if waiting:
            await asyncio.wait([d for _, d in waiting], timeout=10)

    async def resize(self, ref: str, height: int, width: int) -> None:
        c = self.get(ref)
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        await self.sup.request("resize", id=c["Id"], height=height, width=width)

    async def logs(self, ref: str, *, follow: bool = False, since_ns: int = 0, until_ns: int = 0,
                   tail: int = -1) -> AsyncIterator[jsonlog.LogEntry]:
        c = self.get(ref)
        path = c["LogPath"]
        follower = jsonlog.LogFollower(path) if follow else None
        try:
            for e in await asyncio.to_thread(jsonlog.read_entries, path, since_ns, until_ns, tail):
                yield e
            if follower is None:
                return
            ev = self.exits.get(c["Id"])
            while True:
                running = c["State"]["Running"] and c["Id"] in self.containers
                for e in follower.poll():
                    if until_ns and e.time_ns > until_ns:
                        return
                    yield e
                if not running:
                    return
                if until_ns and time.time_ns() > until_ns:
                    return
                try:
                    await asyncio.wait_for(asyncio.shield(ev.wait()), 0.1)
                except asyncio.TimeoutError:
                    pass
        finally:
            if follower:
                follower.close()

    # ---- exec --------------------------------------------------------------------------
    async def exec_create(self, ref: str, body: dict) -> str:
        c = self.get(ref)
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        if c["State"]["Paused"]:
            raise errors.Conflict(f"Container {ref} is paused, unpause the container before exec")
        cmd = body.get("Cmd")
        if not cmd:
            raise errors.InvalidParameter("No exec command specified")
        eid = secrets.token_hex(32)
        self.execs[eid] = {
            "ID": eid, "Running": False, "ExitCode": None, "ProcessConfig": {
                "tty": bool(body.get("Tty")), "entrypoint": cmd[0], "arguments": cmd[1:],
                "privileged": bool(body.get("Privileged")), "user": body.get("User") or ""},
            "OpenStdin": bool(body.get("AttachStdin")), "OpenStderr": bool(body.get("AttachStderr")),
            "OpenStdout": bool(body.get("AttachStdout")), "CanRemove": False,
            "ContainerID": c["Id"], "DetachKeys": body.get("DetachKeys") or "", "Pid": 0,
            "_body": body, "_done": asyncio.Event(), "_started": asyncio.Event(),
        }
        c["ExecIDs"] = (c.get("ExecIDs") or []) + [eid]
        self.emit("container", f"exec_create: {' '.join(cmd)}", c["Id"],
                  {**self._attrs(c), "execID": eid})
        return eid

    def exec_inspect(self, eid: str) -> dict:
        ex = self.execs.get(eid)
        if ex is None:
            raise errors.NotFound(f"No such exec instance: {eid}")
        return {k: v for k, v in ex.items() if not k.startswith("_")}

    async def exec_start(self, eid: str, detach: bool = False):
        """Start an exec; attached: returns (tty, reader, writer) of its stream."""
        ex = self.execs.get(eid)
        if ex is None:
            raise errors.NotFound(f"No such exec instance: {eid}")
        if ex["Running"] or ex["ExitCode"] is not None:
            raise errors.Conflict(f"Error: Exec command {eid} has already run")
        c = self.get(ex["ContainerID"])
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        body = ex["_body"]
        rootfs = os.path.join(self._dir(c["Id"]), "rootfs")
        try:
            user = ocispec.resolve_user(body.get("User") or c["Config"].get("User") or "", rootfs)
            host = c["HostConfig"]
            caps = ocispec.capabilities(host.get("CapAdd"), host.get("CapDrop"),
                                        bool(host.get("Privileged") or body.get("Privileged")))
        except ocispec.SpecError as e:
            # the exec never ran: dockerd reports 126 in its inspect
            ex["Running"], ex["ExitCode"] = False, 126
            ex["_done"].set()
            ex["_started"].set()
            raise errors.InvalidParameter(str(e)) from None
        tty = bool(body.get("Tty"))
        env = ocispec.merge_env(c["Config"].get("Env"), body.get("Env"), c["Config"]["Hostname"], tty)
        process = {"terminal": tty, "args": body["Cmd"], "env": env,
                   "cwd": body.get("WorkingDir") or c["Config"].get("WorkingDir") or "/",
                   "user": user,
                   "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
                   "rlimits": ocispec.rlimits(host),   # the container's, as dockerd's exec
                   "noNewPrivileges": any(o.startswith("no-new-privileges") for o in
                                          host.get("SecurityOpt") or [])}
        cs = body.get("ConsoleSize")
        if tty and isinstance(cs, list) and len(cs) == 2 and all(isinstance(v, int) and v > 0 for v in cs):
            process["consoleSize"] = {"height": cs[0], "width": cs[1]}  # the CLI's pty, from the start
        ex["Running"] = True
        runtime = self.runtimes[c["HostConfig"]["Runtime"]]
        fields = dict(id=eid, container_id=c["Id"], process=process,
                      runtime=runtime, runtime_root=self.runtime_root,
                      forkserver=self._forkserver(runtime),
                      tty=tty, open_stdin=bool(body.get("AttachStdin")))
        self.emit("container", f"exec_start: {' '.join(body['Cmd'])}", c["Id"],
                  {**self._attrs(c), "execID": eid})
        try:
            if detach:
                reply = await self.sup.request("exec", **fields)
                ex["Pid"] = reply["pid"]
                ex["_started"].set()
                return None
            reply, reader, writer = await self.sup.open_stream(
                "exec", attach=True, stdin=bool(body.get("AttachStdin")),
                stdout=bool(body.get("AttachStdout", True)),
                stderr=bool(body.get("AttachStderr", True)), **fields)
        except errors.DockyardError as e:
            ex["Running"] = False
            code = _start_error_code(str(e))
            ex["ExitCode"] = 126 if code == 128 else code
            ex["_done"].set()
            ex["_started"].set()
            raise
        ex["Pid"] = reply["pid"]
        ex["_started"].set()
        return tty, reader, writer

    async def exec_resize(self, eid: str, height: int, width: int) -> None:
        ex = self.execs.get(eid)
        if ex is None:
            raise errors.NotFound(f"No such exec instance: {eid}")
        # The CLI resizes as soon as it has the 101, which may be before the process
        # exists: wait for the start, as dockerd does.
        try:
            await asyncio.wait_for(ex["_started"].wait(), 10)
        except asyncio.TimeoutError:
            raise errors.Conflict(f"exec {eid} is not running") from None
        if not ex["Running"]:
            return
        await self.sup.request("resize", id=eid, height=height, width=width)

    async def exec_wait(self, eid: str) -> int:
        ex = self.execs[eid]
        await ex["_done"].wait()
        return ex["ExitCode"]

    # ---- views -----------------------------------------------------------------------------
    def inspect(self, ref: str, size: bool = False) -> dict:
        c = self.get(ref)
        out = {k: v for k, v in c.items() if k not in ("HasBeenStartedBefore", "HasBeenManuallyStopped")}
        out = json.loads(json.dumps(out))
        out["GraphDriver"] = {"Name": "overlay2", "Data": None}
        if size:
            rw = _dir_size(self.images, c["Id"])
            out["SizeRw"] = rw
            out["SizeRootFs"] = rw + _image_size(self.images, c["Image"])
        return out

    def list(self, all: bool = False, limit: int = -1, filters: dict | None = None,
             size: bool = False) -> list[dict]:
        cs = sorted(self.containers.values(), key=lambda c: c["Created"], reverse=True)
        out = []
        # Like Docker: -n implies -a; a status filter looks at stopped ones too.
        show_all = all or limit > 0 or bool((filters or {}).get("status"))
        for c in cs:
            if not show_all and not c["State"]["Running"]:
                continue
            if filters and not _match_filters(c, filters, self):
                continue
            out.append(self._summary(c, size))
            if limit > 0 and len(out) >= limit:
                break
        return out

    def _summary(self, c: dict, size: bool) -> dict:
        ports = []
        for port, binds in (c["NetworkSettings"].get("Ports") or {}).items():
            num, _, proto = port.partition("/")
            if not binds:
                ports.append({"PrivatePort": int(num), "Type": proto})
            for b in binds or []:
                ports.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(num),
                              "PublicPort": int(b["HostPort"]), "Type": proto})
        cmd = " ".join([c["Path"]] + c["Args"])
        created = int(jsonlog.parse_rfc3339nano(c["Created"]) // 1_000_000_000)
        out = {
            "Id": c["Id"], "Names": [c["Name"]], "Image": c["Config"].get("Image", ""),
            "ImageID": c["Image"], "Command": cmd, "Created": created, "Ports": ports,
            "Labels": c["Config"].get("Labels") or {}, "State": c["State"]["Status"],
            "Status": _status_text(c), "HostConfig": {"NetworkMode": c["HostConfig"].get("NetworkMode")},
            "NetworkSettings": {"Networks": c["NetworkSettings"].get("Networks") or {}},
            "Mounts": c.get("Mounts") or [],
        }
        if size:
            out["SizeRw"] = _dir_size(self.images, c["Id"])
            out["SizeRootFs"] = out["SizeRw"] + _image_size(self.images, c["Image"])
        return out

    async def changes(self, ref: str) -> list[dict]:
        c = self.get(ref)
        return await asyncio.to_thread(self.images.changes, c["Id"])

    async def commit(self, ref: str, *, repo: str | None, tag: str | None, author: str = "",
                     comment: str = "", changes: list[str] = (), pause: bool = True,
                     config: dict | None = None) -> str:
        c = self.get(ref)
        paused_here = False
        if pause and c["State"]["Status"] == "running":
            await self._runtime("pause", c["Id"], check=False, c=c)
            paused_here = True
        try:
            image_id = await asyncio.to_thread(
                self.images.commit_rootfs, c["Id"], c["Image"], config=config or c["Config"],
                changes=list(changes), author=author, comment=comment, repo=repo, tag=tag,
                container_id=c["Id"])
        finally:
            if paused_here:
                await self._runtime("resume", c["Id"], check=False, c=c)
        self.emit("container", "commit", c["Id"], {**self._attrs(c), "comment": comment})
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

    def event_attrs(self, c: dict) -> dict:
        """The attributes of a container's events (image, name, labels)."""
        return self._attrs(c)

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

    def stats(self, ref: str) -> dict:
        c = self.get(ref)
        raw: dict = {}
        if c["State"]["Running"]:
            try:
                from dockyard.runtime import cgroups

                raw = cgroups.open_manager(self._cgroup(c["Id"]), c["Id"]).stats()
            except Exception:  # noqa: BLE001 - stats are best effort
                raw = {}
        return _docker_stats(c, raw)


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


def _start_error_code(msg: str) -> int:
    """dockerd's exit code for a start that failed in the runtime."""
    low = msg.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low or "is a directory" in low or "exec format error" in low:
        return 126
    return 128


def _validate_host_config(host: dict) -> None:
    policy = host.get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    if name not in ("no", "always", "unless-stopped", "on-failure", ""):
        raise errors.InvalidParameter(f"invalid restart policy '{name}'")
    if name != "on-failure" and policy.get("MaximumRetryCount"):
        raise errors.InvalidParameter(
            f"invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if host.get("AutoRemove") and name not in ("no", ""):
        raise errors.InvalidParameter("can't create 'AutoRemove' container with restart policy")
    for k in ("Memory", "MemorySwap", "CpuShares", "NanoCpus", "PidsLimit"):
        v = host.get(k)
        if v is not None and not isinstance(v, int):
            raise errors.InvalidParameter(f"invalid value for {k}: {v!r}")
    if (host.get("Memory") or 0) < 0:
        raise errors.InvalidParameter("invalid memory limit")
    if (host.get("CpuShares") or 0) < 0:
        raise errors.InvalidParameter(f"invalid CPU shares: {host['CpuShares']}: must be positive")
    for key, online in (("CpusetCpus", "/sys/devices/system/cpu/online"),
                        ("CpusetMems", "/sys/devices/system/node/online")):
        if host.get(key):
            want = _parse_cpuset(host[key])
            if want is None:
                raise errors.InvalidParameter(f"Invalid value {host[key]} for cpuset {key[6:].lower()}")
            try:
                with open(online) as f:
                    avail_s = f.read().strip()
            except OSError:
                continue
            avail = _parse_cpuset(avail_s) or set()
            if not want <= avail:
                what = "CPUs" if key == "CpusetCpus" else "memory nodes"
                raise errors.InvalidParameter(
                    f"Requested {what} are not available - requested {host[key]}, available: {avail_s}")


# HostConfig field, blkio_support() key, dockerd's warning when the host cannot enforce it
_BLKIO_SUPPORT = (
    ("BlkioWeight", "weight", "Your kernel does not support Block I/O weight or the cgroup is not "
     "mounted. Weight discarded."),
    ("BlkioWeightDevice", "weight_device", "Your kernel does not support Block I/O weight_device or "
     "the cgroup is not mounted. Weight-device discarded."),
    ("BlkioDeviceReadBps", "read_bps", "Your kernel does not support BPS Block I/O read limit or the "
     "cgroup is not mounted. Block I/O BPS read limit discarded."),
    ("BlkioDeviceWriteBps", "write_bps", "Your kernel does not support BPS Block I/O write limit or "
     "the cgroup is not mounted. Block I/O BPS write limit discarded."),
    ("BlkioDeviceReadIOps", "read_iops", "Your kernel does not support IOPS Block read limit or the "
     "cgroup is not mounted. Block I/O IOPS read limit discarded."),
    ("BlkioDeviceWriteIOps", "write_iops", "Your kernel does not support IOPS Block write limit or the "
     "cgroup is not mounted. Block I/O IOPS write limit discarded."),
)


def _discard_unsupported_blkio(host: dict) -> list[str]:
    """dockerd's rule for block I/O settings this host cannot enforce: the field is
    reset (inspect shows it unset) and the create/update answer carries a warning,
    which the CLI prints; what the host supports goes to the spec and is applied."""
    wanted = [(f, k, w) for f, k, w in _BLKIO_SUPPORT if host.get(f)]
    if not wanted:
        return []
    from dockyard.runtime import cgroups

    support = cgroups.blkio_support()
    warnings = []
    for field, key, warning in wanted:
        if not support.get(key):
            host[field] = 0 if field == "BlkioWeight" else []
            warnings.append(warning)
    return warnings


def _check_storage_opt(host: dict, snapshot_root: str) -> None:
    """--storage-opt: dockerd's overlay2 takes only ``size``, and only on xfs mounted
    with project quotas; anywhere else it refuses rather than ignore the limit. We
    have no project-quota support, so a size is refused on every backing fs."""
    opts = host.get("StorageOpt")
    if not opts:
        return
    if not isinstance(opts, dict):
        raise errors.InvalidParameter("invalid StorageOpt: expected an object of strings")
    if not any(k.lower() == "size" for k in opts):
        raise errors.DockyardError(f"Unknown option {sorted(opts)[0]}")
    if not _xfs_with_pquota(snapshot_root):
        raise errors.DockyardError("--storage-opt is supported only for overlay over xfs with "
                                   "'pquota' mount option")
    raise errors.DockyardError("--storage-opt size: xfs project quotas are not implemented by "
                               "this daemon's snapshotter")


def _xfs_with_pquota(path: str) -> bool:
    """Whether ``path`` lies on an xfs mount with project quotas (the mount whose
    mount point is the longest prefix of its real path, from mountinfo)."""
    real = os.path.realpath(path)
    best: tuple[int, bool] = (-1, False)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fields, tail = pre.split(), post.split()
                if len(fields) < 5 or len(tail) < 3:
                    continue
                mnt = fields[4].encode().decode("unicode_escape")
                if real == mnt or real.startswith(mnt.rstrip("/") + "/"):
                    if len(mnt) >= best[0]:
                        opts = set(tail[2].split(",")) | set(fields[5].split(","))
                        best = (len(mnt), tail[0] == "xfs" and bool(
                            opts & {"prjquota", "pquota", "pqnoenforce"}))
    except OSError:
        return False
    return best[1]


def _parse_cpuset(spec: str) -> set[int] | None:
    """'0-2,4' -> {0, 1, 2, 4}; None when malformed (Docker's parsers.ParseUintList)."""
    out: set[int] = set()
    for part in str(spec).split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return None
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            return None
        out.update(range(a, b + 1))
    return out


def _merge_config(config: dict, image_config: dict) -> dict:
    merged = {
        "Hostname": config.get("Hostname") or "", "Domainname": config.get("Domainname") or "",
        "User": config.get("User") or image_config.get("User") or "",
        "AttachStdin": bool(config.get("AttachStdin")), "AttachStdout": bool(config.get("AttachStdout")),
        "AttachStderr": bool(config.get("AttachStderr")), "Tty": bool(config.get("Tty")),
        "OpenStdin": bool(config.get("OpenStdin")), "StdinOnce": bool(config.get("StdinOnce")),
        "Env": _merge_env_list(image_config.get("Env"), config.get("Env")),
        "Cmd": config.get("Cmd") if config.get("Cmd") else (
            image_config.get("Cmd") if config.get("Entrypoint") is None else None),
        "Image": config.get("Image"), "Volumes": config.get("Volumes") or image_config.get("Volumes"),
        "WorkingDir": config.get("WorkingDir") or image_config.get("WorkingDir") or "",
        "Entrypoint": config.get("Entrypoint") if config.get("Entrypoint") is not None
        else image_config.get("Entrypoint"),
        "OnBuild": image_config.get("OnBuild"),
        "Labels": {**(image_config.get("Labels") or {}), **(config.get("Labels") or {})},
    }
    if config.get("ExposedPorts") or image_config.get("ExposedPorts"):
        merged["ExposedPorts"] = {**(image_config.get("ExposedPorts") or {}),
                                  **(config.get("ExposedPorts") or {})}
    for k in ("StopSignal", "StopTimeout", "Healthcheck"):
        v = config.get(k) or image_config.get(k)
        if v is not None:
            merged[k] = v
    return merged


def _merge_env_list(image_env, env) -> list[str]:
    out: dict[str, str] = {}
    for item in list(image_env or []) + list(env or []):
        k, sep, v = item.partition("=")
        out[k] = item
    return list(out.values())


def _mounts_view(host: dict) -> list[dict]:
    out = []
    for b in host.get("Binds") or []:
        try:
            m = ocispec.parse_bind(b)
        except ocispec.SpecError:
            continue
        out.append({"Type": "bind", "Source": m["source"], "Destination": m["destination"],
                    "Mode": b.split(":")[2] if b.count(":") >= 2 else "", "RW": "ro" not in m["options"],
                    "Propagation": "rprivate"})
    for dest in host.get("Tmpfs") or {}:
        out.append({"Type": "tmpfs", "Source": "", "Destination": dest, "Mode": "", "RW": True,
                    "Propagation": ""})
    return out


def _empty_network_settings() -> dict:
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "MacAddress": "", "Networks": {}}


def _status_text(c: dict) -> str:
    s = c["State"]
    status = s["Status"]
    if status == "created":
        return "Created"
    if status in ("running", "paused", "restarting"):
        started = jsonlog.parse_rfc3339nano(s["StartedAt"]) / 1e9
        text = "Up " + human_duration(time.time() - started)
        if status == "paused":
            text += " (Paused)"
        if status == "restarting":
            return f"Restarting ({s['ExitCode']}) {human_duration(time.time() - started)} ago"
        return text
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if s["FinishedAt"] == ZERO_TIME:
        return "Created"
    finished = jsonlog.parse_rfc3339nano(s["FinishedAt"]) / 1e9
    return f"Exited ({s['ExitCode']}) {human_duration(time.time() - finished)} ago"


def _match_labels(c: dict, filters: dict | None) -> bool:
    for want in (filters or {}).get("label", []):
        k, sep, v = want.partition("=")
        labels = c["Config"].get("Labels") or {}
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


def _match_filters(c: dict, filters: dict, svc: ContainerService) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "status":
            if c["State"]["Status"] not in values:
                return False
        elif key == "name":
            if not any(re.search(v, c["Name"].lstrip("/")) or re.search(v, c["Name"]) for v in values):
                return False
        elif key == "id":
            if not any(c["Id"].startswith(v) for v in values):
                return False
        elif key == "label":
            if not _match_labels(c, {"label": values}):
                return False
        elif key == "exited":
            if c["State"]["Status"] != "exited" or str(c["State"]["ExitCode"]) not in values:
                return False
        elif key == "ancestor":
            ok = False
            for v in values:
                try:
                    if svc.images.resolve(v) == c["Image"]:
                        ok = True
                except errors.DockyardError:
                    pass
                if c["Config"].get("Image") == v:
                    ok = True
            if not ok:
                return False
        elif key in ("before", "since"):
            try:
                other = svc.get(values[0])
            except errors.NotFound:
                raise errors.NotFound(f"No such container: {values[0]}") from None
            if key == "before" and not c["Created"] < other["Created"]:
                return False
            if key == "since" and not c["Created"] > other["Created"]:
                return False
        elif key == "network":
            if not any(v in (c["NetworkSettings"].get("Networks") or {}) for v in values):
                return False
        else:
            raise errors.InvalidParameter(f"invalid filter '{key}'")
    return True


def _dir_size(images: Any, cid: str) -> int:
    try:
        return int(images.rootfs_usage(cid))
    except Exception:  # noqa: BLE001
        return 0


def _image_size(images: Any, image_id: str) -> int:
    try:
        return int(images._row(image_id)["size"])
    except Exception:  # noqa: BLE001 - the image may be gone (rmi -f)
        return 0


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


def _docker_stats(c: dict, raw: dict) -> dict:
    mem = raw.get("memory") or {}
    cpu = raw.get("cpu") or {}
    pids = raw.get("pids") or {}
    ncpu = os.cpu_count() or 1
    try:
        with open("/proc/stat") as f:
            system = sum(int(x) for x in f.readline().split()[1:]) * 10_000_000
    except OSError:
        system = 0
    return {
        "read": now(), "preread": ZERO_TIME, "name": c["Name"], "id": c["Id"],
        "pids_stats": {"current": pids.get("current", 0), **({"limit": pids["limit"]} if pids.get("limit") else {})},
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None,
                        "io_time_recursive": None, "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": {"cpu_usage": {"total_usage": cpu.get("usage_ns", 0),
                                    "usage_in_kernelmode": cpu.get("system_ns", 0),
                                    "usage_in_usermode": cpu.get("user_ns", 0)},
                      "system_cpu_usage": system, "online_cpus": ncpu,
                      "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                                       "usage_in_usermode": 0},
                         "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {"usage": mem.get("usage", 0), "max_usage": mem.get("max_usage", 0),
                         "limit": mem.get("limit") or _mem_total(), "stats": {}} if raw else {},
        "networks": {},
    }


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except OSError:
        return 0


_ADJ = ["admiring", "brave", "clever", "dazzling", "eager", "festive", "gallant", "happy",
        "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "quirky", "relaxed",
        "serene", "tender", "upbeat", "vibrant", "wizardly", "zealous"]
_NAMES = ["albattani", "babbage", "curie", "darwin", "euclid", "fermi", "galileo", "hopper",
          "lovelace", "mayer", "newton", "noether", "pasteur", "ritchie", "shannon", "tesla",
          "turing", "wozniak"]


def _random_name(taken: set[str]) -> str:
    for attempt in range(10_000):
        n = f"{secrets.choice(_ADJ)}_{secrets.choice(_NAMES)}"
        if attempt >= 20:  # crowded: add a number, as Docker's generator does on retry
            n += str(secrets.randbelow(10 ** (1 + attempt // 1000)))
        if "/" + n not in taken:
            return n
    return "c_" + secrets.token_hex(8)
