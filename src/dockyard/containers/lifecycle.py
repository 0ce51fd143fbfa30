"""Lifecycle: create, start, stop, kill, restart, wait, remove, prune, pause, update,
top, and what happens when a container exits (the restart policy)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess

from dockyard import crashpoints, errors, statefiles
from dockyard.containers import state as st
from dockyard.containers import warm as warmpool
from dockyard.oci import spec as ocispec
from dockyard.containers.hostconfig import (_check_storage_opt, _discard_unsupported_blkio,
                                            _discard_unsupported_memory,
                                            _discard_unsupported_realtime, _network_mode_warnings,
                                            _check_platform, _refuse_unsupported,
                                            _refuse_unsupported_update, _validate_host_config)
from dockyard.containers.records import _dir_size, _match_labels, _merge_config, _random_name
from dockyard.containers import health as healthcheck
from dockyard.containers import logopts
from dockyard.containers import mounts as mountpoints
from dockyard.containers.common import NAME_RE, ZERO_TIME, now, _warm_cgroup_attach, log
from dockyard.volumes import names as volnames


class Lifecycle:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

    # ---- create ----------------------------------------------------------------------
    async def create(self, name: str | None, body: dict, ro_non_recursive: bool = False,
                     platform: str | None = None) -> dict:
        """``ro_non_recursive``: read-only binds are made read-only non-recursively (what
        dockerd keeps for clients of API < 1.44; the API layer decides). ``platform``:
        the image must be of it (``docker run --platform``), else 404 as dockerd."""
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
        _refuse_unsupported(host, config)
        logopts.check(host)
        _check_storage_opt(host, str(getattr(getattr(self.images, "snapshotter", None), "root", self.root)))
        warnings = (_discard_unsupported_blkio(host) + _discard_unsupported_realtime(host)
                    + _discard_unsupported_memory(host) + _network_mode_warnings(host))
        _warm_cgroup_attach()   # `docker run` starts it right after
        image_id = await asyncio.to_thread(self.images.resolve, image_ref)
        image_full = await asyncio.to_thread(self.images.get_config, image_id)
        if platform:
            _check_platform(image_ref, platform, image_full)
        image_config = image_full.get("config") or {}
        cid = secrets.token_hex(32)
        # Merge the image's defaults into the container's Config as Docker shows it.
        merged = _merge_config(config, image_config)
        try:
            ocispec.command(config, image_config)
            ocispec.capabilities(host.get("CapAdd"), host.get("CapDrop"), bool(host.get("Privileged")))
            ocispec.resources(host)
            ocispec.security_options(host.get("SecurityOpt"))
            ocispec.parse_signal(merged.get("StopSignal"))
            healthcheck.validate(merged.get("Healthcheck"))
        except ocispec.SpecError as e:
            raise errors.InvalidParameter(str(e)) from None
        others = {}
        for ref in host.get("VolumesFrom") or []:
            others[ref.partition(":")[0]] = self.get(ref.partition(":")[0])   # 404 if unknown
        points = mountpoints.parse_all(host, merged, others, ro_non_recursive)
        if any(p["Type"] == "volume" for p in points) and self.volumes is None:
            raise errors.InvalidParameter("volumes are not available on this daemon")
        for p in points:
            if p["Type"] == "volume" and p["Driver"] != "local":
                raise errors.NotFound(f"error looking up volume plugin {p['Driver']}: plugin "
                                      f"\"{p['Driver']}\" not found")
        mode = host.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])  # 404 if the other container is unknown
        if (host.get("PidMode") or "").startswith("container:"):
            try:   # dockerd's 400: the CLI takes a 404 from create for a missing image
                self.get(host["PidMode"].split(":", 1)[1])
            except errors.NotFound as e:
                raise errors.InvalidParameter(str(e)) from None

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
            if host.get("Links"):
                from dockyard.containers import links

                if links.user_defined(host.get("NetworkMode")):
                    host["Links"] = None   # dockerd's: only the endpoints' Links count there
                else:
                    host["Links"] = links.normalize(host["Links"], name, self.get)
            out = await self._create_reserved(cid, name, config, host, body, merged, image_id,
                                              image_config, runtime, points)
            return {**out, "Warnings": warnings + list(out.get("Warnings") or [])}
        finally:
            self._reserved_names.discard(name)

    async def _create_reserved(self, cid: str, name: str, config: dict, host: dict, body: dict,
                               merged: dict, image_id: str, image_config: dict,
                               runtime: str, points: list[dict]) -> dict:
        rec = self._new_record(cid, name, config, host, body, merged, image_id, image_config,
                               runtime, points)
        if self.network is not None:
            from dockyard.containers.networking import plan_networks

            plan_networks(rec)
            rec["NetworkSettings"] = await asyncio.to_thread(self.network.planned_settings, rec)
        entry = None
        if self.warm.enabled and host.get("AutoRemove") and not _has_volumes(rec):
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
            # first made, last removed: a directory with no record is a create that did
            # not finish (boot recovery removes it, containers/recovery.py)
            statefiles.makedirs(cdir)
            crashpoints.at("create.dir")
            try:
                await asyncio.to_thread(self.images.prepare_rootfs, image_id, cid, True)
                crashpoints.at("create.rootfs")
                await asyncio.to_thread(self._make_volumes, rec)
                crashpoints.at("create.volumes")
            except BaseException:
                await asyncio.to_thread(self._remove_volumes, rec, True, True)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.images.remove_rootfs, cid)
                shutil.rmtree(cdir, ignore_errors=True)
                raise
        cid = rec["Id"]
        try:
            self._save(rec)
        except Exception:
            if entry is None:   # undone (a full disk): nothing of it stays
                await asyncio.to_thread(self._remove_volumes, rec, True, True)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.images.remove_rootfs, cid)
                shutil.rmtree(self._dir(cid), ignore_errors=True)
            else:
                self.warm.taken.pop(cid, None)
                await self._destroy_warm(rec)
            raise
        self.containers[cid] = rec
        self._creating.pop(cid, None)   # its record counts from now on (volume_users)
        self.exits[cid] = asyncio.Event()
        crashpoints.at("create.saved")
        self.emit("container", "create", cid, self._attrs(rec))
        return {"Id": cid, "Warnings": []}

    def _make_volumes(self, rec: dict) -> None:
        """The volumes of a new container: anonymous ones made (named after it), named
        ones made if missing (with the --mount's labels and driver options). Until the
        record is stored the container counts as their user (``volume_users``), so a
        `volume rm` or prune meanwhile cannot take a volume it was just given."""
        self._creating[rec["Id"]] = rec
        for mp in rec.get("MountPoints") or []:
            if mp["Type"] != "volume":
                continue
            vo = mp.get("VolumeOptions") or {}
            made_here = False
            anonymous = bool(mp.get("Anonymous") and not mp["Name"])
            if anonymous:
                # named before it exists: from its first moment a prune sees its user
                mp["Name"] = volnames.anonymous()
            # one call under the volume service's lock: the existing volume, or one made
            # now if a `volume rm` took it before this record counted as its user
            v, made_here = self.volumes.create(mp["Name"], mp["Driver"], vo.get("DriverOpts"),
                                               vo.get("Labels"), anonymous=anonymous,
                                               created_for=rec["Id"] if anonymous else None)
            mp["Source"] = v["Mountpoint"]
            mp["MadeHere"] = made_here
        rec["Mounts"] = [mountpoints.view(mp) for mp in rec.get("MountPoints") or []]

    def _anonymous_volumes(self, rec: dict) -> bool:
        """Whether any of the container's volumes is anonymous (``run --rm`` removes them)."""
        return self.volumes is not None and any(
            mp["Type"] == "volume" and mp["Name"] and self.volumes.is_anonymous(mp["Name"])
            for mp in rec.get("MountPoints") or [])

    def _remove_volumes(self, rec: dict, anonymous_only: bool = True,
                        made_here_only: bool = False) -> None:
        """``rm -v`` (and ``run --rm``): the container's anonymous volumes go with it
        (those another container still uses stay)."""
        self._creating.pop(rec["Id"], None)
        if self.volumes is None:
            return
        for mp in rec.get("MountPoints") or []:
            if mp["Type"] != "volume" or not mp["Name"]:
                continue
            if made_here_only and not mp.get("MadeHere"):
                continue
            if anonymous_only and not self.volumes.is_anonymous(mp["Name"]):
                continue
            try:
                self.volumes.remove(mp["Name"])
            except errors.DockyardError as e:
                log.info("volume %s of %s kept: %s", mp["Name"][:12], rec["Id"][:12], e)

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
            except Exception as e:   # a DockyardError, or a full disk's OSError: undone alike
                # clients attached for this start get their stream closed
                for go, _ in self._pending_attach.pop(cid, []):
                    if not go.done():
                        go.set_exception(errors.Conflict(f"container failed to start: {e}"))
                c["State"]["Error"] = str(e)
                c["State"]["ExitCode"] = _start_error_code(str(e))
                c.pop("Intent", None)
                await self._cleanup_after_stop(c)   # first: the save may fail (a full disk)
                try:
                    self._save(c)
                except Exception as save_error:  # noqa: BLE001 - the start's error is the one to report
                    log.warning("record of %s not saved: %s", cid[:12], save_error)
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
        # the log's options are read now, as dockerd's logger is made at start: bad values
        # fail the start; the attrs (labels, env, tag) go with the supervisor's start
        log_attrs = logopts.settings(c)["log_attrs"] if c.get("LogPath") else {}
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
                    from dockyard.containers.networking import network_events

                    network_events(self, c, "connect")
            if self.exits.get(cid) is None or self.exits[cid].is_set():
                self.exits[cid] = asyncio.Event()
            await self._connect_pending_attaches(cid)
            crashpoints.at("start.created")
            # the intent, with the network settings: a daemon killed from here on finds
            # the start done (its task running) and finishes it (containers/recovery.py)
            c["Intent"] = "start"
            self._save(c)
            started_at = now()
            if log_attrs:
                await self.sup.request("start", id=cid, log_attrs=log_attrs)
            else:
                await self.sup.request("start", id=cid)
            crashpoints.at("start.started")
        except BaseException:
            c.pop("Intent", None)
            await self._runtime("delete", "--force", cid, check=False, c=c)
            raise
        stt = c["State"]
        st.set_status(stt, "running")
        stt.update(Pid=pid, StartedAt=started_at, ExitCode=0, Error="", OOMKilled=False,
                   FinishedAt=ZERO_TIME)
        c["HasBeenStartedBefore"] = True
        c["HasBeenManuallyStopped"] = False
        c.pop("Intent", None)
        self._save(c)
        crashpoints.at("start.saved")
        self.emit("container", "start", cid, self._attrs(c))
        await self._start_health(c)
        if entry is not None and pid == entry.pid and host.get("AutoRemove"):
            self._want_warm(c)   # the next of a series of `run --rm`, made while this one runs

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
            try:
                self._save(c)
            except Exception as e:  # noqa: BLE001 - a full disk: the exit is still handled
                log.warning("exit of %s not saved: %s", cid[:12], e)
            crashpoints.at("exit.saved")

            def died() -> None:
                if stt["OOMKilled"]:
                    self.emit("container", "oom", cid, self._attrs(c))
                self.emit("container", "die", cid, {**self._attrs(c), "exitCode": str(code)})

            auto_remove = bool(c["HostConfig"].get("AutoRemove")) and not self._restart_wanted(c)
            anonymous = auto_remove and self._anonymous_volumes(c)
            if auto_remove:
                # `run --rm`: once its network is released (its ports free for the next
                # container), the container is gone for every client; its mounts,
                # cgroups and files are removed just after, still under this lock.
                await self._release_network(c)
                # its volumes too: the client may remove one as soon as the container is gone
                if await asyncio.to_thread(self._release_mount_points, c):
                    self._emit_mounts(c, "unmount")
                died()
                # With anonymous volumes, as dockerd: they are removed before the container
                # is reported removed (a `volume ls` right after `run --rm` lists none),
                # after its processes are gone (no stray of it writes into one).
                self._forget(c, pending_files=True, announce=not anonymous)
                crashpoints.at("exit.forgotten")
                try:
                    await self._cleanup_after_stop(c, network=False)
                    if anonymous:   # out of the daemon's view: they have no user now
                        await asyncio.to_thread(self._remove_volumes, c)
                finally:
                    if anonymous:
                        self._announce_removed(c)
            else:
                if self._restart_wanted(c) and not booting:
                    # restarting from now on (no gap a plain `rm` could slip through)
                    self._restart_pending.add(cid)
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
        if cid not in self._restart_pending:
            return
        if not self._restart_wanted(c) or booting:
            self._restart_pending.discard(cid)
            return
        try:
            c["RestartCount"] += 1
            self._save(c)
            delay = min(0.1 * (2 ** min(c["RestartCount"], 10)), 60) if c["RestartCount"] > 1 else 0.1
            await asyncio.sleep(delay)
            if c["Id"] in self.containers and c["State"]["Status"] == "exited" \
                    and not c.get("HasBeenManuallyStopped"):
                try:
                    await self.start(cid)
                    self.emit("container", "restart", cid, self._attrs(c))
                except errors.DockyardError as e:
                    log.warning("restart of %s failed: %s", cid[:12], e)
        finally:
            self._restart_pending.discard(cid)

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

    async def kill(self, ref: str, sig: str | int | None = None) -> None:
        c = self.get(ref)
        try:
            signum = ocispec.parse_signal(sig, default="SIGKILL")
        except ocispec.SpecError:
            raise errors.InvalidParameter(f"Invalid signal: {sig}") from None
        if c["State"]["Status"] not in ("running", "paused", "restarting"):
            raise errors.Conflict(f"Cannot kill container: {ref}: Container {c['Id']} is not running")
        self.emit("container", "kill", c["Id"], {**self._attrs(c), "signal": str(signum)})
        ev = self.exits.get(c["Id"])
        await self._runtime("kill", c["Id"], str(signum), check=False, c=c)
        if c["State"]["Status"] == "paused":
            await self._runtime("resume", c["Id"], check=False, c=c)
        if signum == 9 and ev is not None:
            # as dockerd: a SIGKILL returns once the container is seen dead (inspect then
            # shows exited 137, not running)
            await self._exit_seen(c, ev, 10)

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
        crashpoints.at("stop.signalled")
        if c["State"]["Status"] == "paused":
            await self._runtime("resume", c["Id"], check=False, c=c)
        if timeout < 0:
            await ev.wait()
        else:
            try:
                await asyncio.wait_for(asyncio.shield(ev.wait()), timeout)
            except asyncio.TimeoutError:
                await self._runtime("kill", "--all", c["Id"], "9", check=False, c=c)
                await self._runtime("kill", c["Id"], "9", check=False, c=c)
                if not await self._exit_seen(c, ev, 10):
                    raise errors.DockyardError(
                        f"cannot stop container {c['Id']}: it did not exit 10 s after SIGKILL")
        self.emit("container", "stop", c["Id"], self._attrs(c))

    async def _exit_seen(self, c: dict, ev: asyncio.Event, timeout: float) -> bool:
        """Wait (at most ``timeout``) for the exit of the container's run that ``ev``
        belongs to. If its init is gone but no exit came (the supervisor that should
        report it is gone), the exit is recorded here (137: killed). False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        gone_since = None
        while not ev.is_set():
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(asyncio.shield(ev.wait()), min(left, 0.5))
                break
            except asyncio.TimeoutError:
                pass
            pid = c["State"].get("Pid") or 0
            if pid and not _pid_alive(pid):
                if gone_since is None:
                    gone_since = loop.time()
                elif loop.time() - gone_since >= 1.0:   # the supervisor had its chance
                    log.warning("exit of %s not reported: recorded as killed", c["Id"][:12])
                    await self._on_exit(c["Id"], 137, now(), pid=pid)
                    return True
        return True

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
            await self._unless_closing(self.removed.setdefault(cid, asyncio.Event()))
            return c["State"]["ExitCode"]
        if condition != "next-exit" and not c["State"]["Running"]:
            return c["State"]["ExitCode"]
        ev = self.exits.get(cid)
        if ev is None or ev.is_set():
            ev = self.exits[cid] = asyncio.Event()
        await self._unless_closing(ev)
        return c["State"]["ExitCode"]

    async def _unless_closing(self, ev: asyncio.Event) -> None:
        """Wait for ``ev``; a daemon shutting down ends the wait (Unavailable) instead of
        cutting the client's response short."""
        closing = self._shutting_down()
        if closing.is_set():
            raise errors.Unavailable("the daemon is shutting down")
        w, cl = asyncio.ensure_future(ev.wait()), asyncio.ensure_future(closing.wait())
        try:
            await asyncio.wait({w, cl}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            w.cancel()
            cl.cancel()
        if not ev.is_set():
            raise errors.Unavailable("the daemon is shutting down")

    # ---- remove ----------------------------------------------------------------------
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        cid = c["Id"]
        if cid in self._restart_pending and not force:
            raise errors.Conflict(
                f"You cannot remove a restarting container {cid}. Stop the container before "
                f"attempting removal or force remove")
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
            ev = self.exits.get(cid)   # None: gone meanwhile (--rm), forgotten
            if ev is not None:
                await self._exit_seen(c, ev, 15)
        async with self._lock(cid):   # an exit's cleanup in progress ends first
            if c["State"]["Status"] == "removing" and not force:
                raise errors.Conflict(f"removal of container {ref} is already in progress")
            if cid not in self.containers:
                return   # removed meanwhile (--rm)
            c["State"]["Status"] = "removing"
            c["RemoveVolumes"] = bool(volumes)   # a restarted daemon finishes it alike
            try:
                self._save(c)
            except Exception as e:  # noqa: BLE001 - a full disk: free first, record after
                log.warning("removal of %s not recorded before it starts: %s", cid[:12], e)
            crashpoints.at("remove.marked")
            await self._finish_remove(c)

    async def _finish_remove(self, c: dict) -> None:
        try:
            await self._finish_remove_once(c)
        except Exception as e:
            # a full disk where even the removal cannot be recorded: the space held back
            # for this (dockyard/diskreserve.py) is freed and the removal tried once more
            from dockyard import diskreserve

            if not diskreserve.disk_full(e) or not self._reserve().release():
                raise
            log.warning("disk full: the reserve is released to remove %s", c["Id"][:12])
            await self._finish_remove_once(c)
        await asyncio.to_thread(self._reserve().ensure)

    def _reserve(self):
        from dockyard import diskreserve

        r = getattr(self, "_disk_reserve", None)
        if r is None:
            r = self._disk_reserve = diskreserve.Reserve(self.root)
        return r

    async def _finish_remove_once(self, c: dict) -> None:
        await self._cleanup_after_stop(c)
        crashpoints.at("remove.cleaned")
        await self._remove_files(c)
        self._forget(c)
        if c.get("RemoveVolumes") or c["HostConfig"].get("AutoRemove"):
            await asyncio.to_thread(self._remove_volumes, c)

    def _forget(self, c: dict, pending_files: bool = False, announce: bool = True) -> None:
        """The container leaves the daemon's view: record, name, events, waiters.
        With files still to remove, its row stays (status "removing", under a name no
        container can have) until _remove_files ends, so a daemon that stops before
        that finishes the removal on its next start (restore). Without ``announce`` the
        caller calls _announce_removed itself, later."""
        cid = c["Id"]
        if pending_files:
            c["State"]["Status"] = "removing"
            self.store.put({**c, "Name": f"/ removing {cid}"})
        else:
            self.store.delete(cid)
        self.containers.pop(cid, None)
        if announce:
            self._announce_removed(c)

    def _announce_removed(self, c: dict) -> None:
        """`destroy`, and the container's waiters, attaches and execs are ended."""
        cid = c["Id"]
        self.emit("container", "destroy", cid, self._attrs(c))
        # waiters hold their events: set, they go from the maps (no state per removed
        # container stays in the daemon)
        ev = self.removed.pop(cid, None)
        if ev:
            ev.set()
        ex = self.exits.pop(cid, None)
        if ex:
            ex.set()
        for go, _ in self._pending_attach.pop(cid, []):
            if not go.done():   # attaches waiting for a start that will not come
                go.set_exception(errors.NotFound(f"No such container: {cid}"))
        self._restart_pending.discard(cid)
        # its execs go with it (dockerd: "No such exec instance" after the rm); a wait
        # on one still running ends
        for eid in [e for e, x in self.execs.items() if x["ContainerID"] == cid]:
            x = self.execs.pop(eid)
            x["Running"] = False
            x["_started"].set()
            x["_done"].set()

    async def _remove_files(self, c: dict) -> None:
        cid = c["Id"]

        async def forget_task() -> None:
            try:
                await self.sup.request("forget", id=cid)
            except errors.DockyardError as e:
                log.warning("supervisor forget %s: %s", cid[:12], e)

        def remove_files() -> None:
            cdir = self._dir(cid)
            # its logs first: on a full disk they may be what frees the space the
            # snapshot's removal needs (the metadata database writes)
            with contextlib.suppress(OSError):
                for n in os.listdir(cdir):
                    if n.startswith(f"{cid}-json.log"):
                        os.unlink(os.path.join(cdir, n))
            self.images.remove_rootfs(cid)
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
        crashpoints.at("remove.files")
        if cid not in self.containers:
            self.store.delete(cid)

    async def prune(self, filters: dict | None = None) -> dict:
        deleted, space = [], 0
        for c in list(self.containers.values()):
            if c["State"]["Status"] in ("exited", "created", "dead") and _match_labels(c, filters):
                size = await asyncio.to_thread(_dir_size, self.images, c["Id"])
                await self.remove(c["Id"])
                deleted.append(c["Id"])
                space += size
        self.emit("container", "prune", "", {"reclaimed": str(space)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": space}

    def remove_link(self, link_name: str) -> None:
        """``DELETE /containers/{/parent/alias}?link=1`` (dockerd's rmLink)."""
        from dockyard.containers import links

        name = "/" + link_name.strip("/")
        parent_name, _, alias = name.rpartition("/")
        if not parent_name:
            raise errors.InvalidParameter("Conflict, cannot remove the default link name of the container")
        parent = self.get(parent_name)
        if not links.remove(parent, f"{parent['Name']}/{alias}"):
            raise errors.NotFound(f"Could not find link '{name}' in {parent['Name']}")
        self._save(parent)

    # ---- pause, rename, update, top ----------------------------------------------------
    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        if not c["State"]["Running"]:
            raise errors.Conflict(f"Container {c['Id']} is not running")
        if c["State"]["Paused"]:
            raise errors.Conflict(f"Container {c['Id']} is already paused")
        await self._runtime("pause", c["Id"], c=c)
        st.set_status(c["State"], "paused")
        await self._pause_health(c, True)
        self._save(c)
        self.emit("container", "pause", c["Id"], self._attrs(c))

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        if not c["State"]["Paused"]:
            raise errors.Conflict(f"Container {c['Id']} is not paused")
        await self._runtime("resume", c["Id"], c=c)
        st.set_status(c["State"], "running")
        await self._pause_health(c, False)
        self._save(c)
        self.emit("container", "unpause", c["Id"], self._attrs(c))

    async def update(self, ref: str, body: dict) -> dict:
        c = self.get(ref)
        host = c["HostConfig"]
        keys = ("CpuShares", "Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuQuota",
                "CpuPeriod", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight",
                "CpuRealtimePeriod", "CpuRealtimeRuntime", "KernelMemory")
        _refuse_unsupported_update(body, keys)
        new = dict(host)
        for k in keys:
            if body.get(k) not in (None, 0, ""):
                new[k] = body[k]
        if body.get("RestartPolicy") and body["RestartPolicy"].get("Name"):
            if host.get("AutoRemove") and body["RestartPolicy"]["Name"] != "no":
                raise errors.InvalidParameter(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container")
            new["RestartPolicy"] = body["RestartPolicy"]
        warnings = (_discard_unsupported_blkio(new) + _discard_unsupported_realtime(new)
                    + _discard_unsupported_memory(new))
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


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _start_error_code(msg: str) -> int:
    """dockerd's exit code for a start that failed in the runtime."""
    low = msg.lower()
    if "executable file not found" in low or "no such file or directory" in low:
        return 127
    if "permission denied" in low or "is a directory" in low or "exec format error" in low:
        return 126
    return 128


def _has_volumes(c: dict) -> bool:
    """Containers with volumes are not made ahead (an anonymous volume is per container)."""
    return any(mp["Type"] == "volume" for mp in c.get("MountPoints") or [])
