"""The composition root: builds every service, wires them together and serves the API.

    Daemon(cfg).run()   # blocks until SIGTERM/SIGINT

Order of start: data root -> lock (one daemon per data root) -> pidfile ->
metadata store -> services -> boot recovery hooks -> listeners -> serve.
Shutdown undoes it in reverse.  Services never see HTTP: the API app gets
them through an ApiContext.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from dockyard.daemon.config import ConfigError, DaemonConfig
from dockyard.daemon.events import EventBus

log = logging.getLogger("dockyard.daemon")


class DataRootLock:
    """An exclusive flock on ``<data-root>/dockyard.lock``, holding our pid."""

    def __init__(self, data_root: Path):
        self.path = data_root / "dockyard.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                holder = os.pread(fd, 32, 0).decode().strip()
            except OSError:
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f" (pid {holder})" if holder else ""
                raise ConfigError(f"data root {self.path.parent} is in use by another dockyard "
                                  f"daemon{who}: lock {self.path} is held") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_pidfile(path: Path, mode: int = 0o644) -> None:
    try:
        old = int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        old = 0
    if old and old != os.getpid() and _pid_alive(old):
        try:
            cmdline = Path(f"/proc/{old}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if b"dockyard" in cmdline:
            raise ConfigError(f"pid file found, ensure dockyard is not running or delete {path}")
    from dockyard import statefiles

    path.parent.mkdir(parents=True, exist_ok=True)
    statefiles.write(path, f"{os.getpid()}\n", mode=mode)


class Daemon:
    def __init__(self, cfg: DaemonConfig):
        self.cfg = cfg
        self.data_root = Path(cfg.data_root).absolute()
        self.events = EventBus()
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="dockyard-svc")
        self.store: Any = None
        self.images: Any = None
        self.system: Any = None
        self.containers: Any = None
        self.volumes: Any = None
        self.networks: Any = None
        self.runtimes = cfg.runtime_paths()
        # called (in a thread) after the services are built, before serving:
        # the place where later services reconcile state left by a crash
        self.boot_hooks: list[Callable[[], None]] = []
        self._lock = DataRootLock(self.data_root)
        self._pidfile = Path(cfg.effective_pidfile)
        self._stop: asyncio.Event | None = None
        self._trimmer: Any = None   # daemon/memory.Trimmer, on the loop

    # -- services -----------------------------------------------------------
    def _emit(self, type: str, action: str, actor_id: str, attributes: dict | None = None) -> None:
        self.events.emit(type, action, actor_id, attributes or {})
        if action == "destroy" and self._trimmer is not None:
            self._trimmer.poke()   # what the container's handling allocated goes back

    def build_services(self) -> None:
        from dockyard.daemon.system import SystemService

        try:
            from dockyard.images.service import ImageService
            from dockyard.metadata import open_store
        except ImportError as e:
            log.warning("image service not available: %s", e)
        else:
            self.store = open_store(self.data_root / "metadata.db")
            self.images = ImageService(root=self.data_root, store=self.store, emit=self._emit)
            recover = getattr(self.images, "recover", None)
            if callable(recover):
                self.boot_hooks.insert(0, recover)
            from dockyard.builder import boot as build_boot
            # an interrupted build's mounts go before its snapshots (removed by recover)
            self.boot_hooks.insert(0, lambda: build_boot.sweep_tmp(self.data_root))
        self.networks = self._build_networks()
        from dockyard.volumes.service import VolumeService

        self.volumes = VolumeService(str(self.data_root), emit=self._emit)
        from dockyard.containers import copyview

        self.boot_hooks.insert(0, lambda: copyview.sweep(str(self.data_root)))
        self.boot_hooks.insert(0, lambda: copyview.sweep(str(self.data_root), "mounts"))
        if self.images is not None:
            self.containers = self._build_containers()
        self.system = SystemService(self.data_root, images=self.images, events=self.events,
                                    debug=self.cfg.log_level == "debug",
                                    containers=self._container_counts,
                                    runtimes=self.runtimes, default_runtime=self.cfg.default_runtime)
        if self.containers is not None:
            self.system.df_containers = lambda: self.containers.list(all=True, size=True)
        self.system.df_volumes = self.volumes.df

    def _build_containers(self):
        """Containers run under the supervisor, which outlives this daemon."""
        from dockyard.containers.service import ContainerService
        from dockyard.containers.store import ContainerStore
        from dockyard.oci.seccomp_default import default_profile
        from dockyard.supervisor import client as supclient

        sup_root = str(self.data_root / "supervisor")
        sup_path = supclient.ensure_running(sup_root)
        networking = None
        if self.networks is not None:
            from dockyard.containers.networking import ContainerNetworking

            networking = ContainerNetworking(self.networks)
        svc = ContainerService(
            network=networking,
            root=str(self.data_root), images=self.images,
            store=ContainerStore(str(self.data_root / "metadata.db")),
            supervisor=supclient.AsyncClient(sup_path), runtimes=self.runtimes,
            default_runtime=self.cfg.default_runtime, emit=self._emit,
            seccomp_profile=default_profile, cgroup_parent=self.cfg.cgroup_parent,
            warm_pool=self.cfg.warm_pool, volumes=self.volumes)
        self.images.set_usage_checker(svc.usage)
        self.volumes.set_users(svc.volume_users)
        return svc

    def _build_networks(self):
        """The network manager, its state kept in <data-root>/network.json (None: --bridge none)."""
        settings = self.cfg.network_settings()
        if settings is None:
            return None
        import json

        from dockyard.network.manager import NetworkManager

        path = self.data_root / "network.json"
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            state = None
        except ValueError:
            log.warning("network state %s is unreadable; starting afresh", path)
            state = None

        def save(st: dict) -> None:
            from dockyard import statefiles

            statefiles.write(path, json.dumps(st), fsync=True)

        return NetworkManager(state, on_change=save, loop=asyncio.get_running_loop(), **settings)

    def _network_host_cleanup(self) -> None:
        """Remove our bridges and rules from the host but keep the networks' definitions."""
        keep = self.networks.state()
        save = self.networks.on_change
        self.networks.teardown()
        if save is not None:
            save(keep)

    def _container_counts(self) -> dict:
        if self.containers is None:
            return {}
        states = [c["State"]["Status"] for c in list(self.containers.containers.values())]
        return {"Containers": len(states),
                "ContainersRunning": sum(s in ("running", "restarting") for s in states),
                "ContainersPaused": states.count("paused"),
                "ContainersStopped": sum(s not in ("running", "restarting", "paused")
                                         for s in states)}

    def build_app(self):
        from dockyard.api.app import ApiContext, create_app

        ctx = ApiContext(system=self.system, events=self.events, images=self.images,
                         executor=self.executor)
        if self.containers is not None:
            ctx.extra["containers"] = self.containers
        if self.networks is not None:
            ctx.extra["networks"] = self.networks
        if self.volumes is not None:
            ctx.extra["volumes"] = self.volumes
        ctx.extra["insecure_registries"] = list(self.cfg.insecure_registries or ())
        return create_app(ctx)

    # -- lifecycle ----------------------------------------------------------
    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def run(self) -> None:
        # dockerd's umask, whatever we were started with (a UMask=0077 unit, say): what we
        # create inside containers' root filesystems (layers' implied directories, the init
        # layer, the snapshots' roots) and the runtime under the supervisor get the modes
        # Docker's do. Our own state does not rely on it: it is written with explicit
        # owner-only modes (daemon/dataroot.py).
        os.umask(0o022)
        from dockyard.daemon import memory

        memory.limit_arenas()   # before the service threads start (daemon/memory.py)
        asyncio.run(self._main())

    async def _main(self) -> None:
        from aiohttp import web

        from dockyard.daemon.listeners import close_listeners, open_listeners

        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        from dockyard.daemon import memory

        self._trimmer = memory.Trimmer(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)

        from dockyard.daemon import dataroot

        changed = dataroot.prepare(self.data_root)   # owner-only, also when made by an older version
        if changed:
            log.info("data root %s: %d entries made owner-only (%s%s)", self.data_root,
                     len(changed), ", ".join(changed[:8]), ", ..." if len(changed) > 8 else "")
        self._lock.acquire()
        listeners: list = []
        runner = None
        pid_written = False
        try:
            # under a private data root the pidfile is owner-only like the rest of it
            inside = self.data_root in self._pidfile.absolute().parents
            write_pidfile(self._pidfile, 0o600 if inside else 0o644)
            pid_written = True
            # Bind first: a taken address must fail before any service (or the
            # supervisor, which outlives us) is started.
            listeners = open_listeners(self.cfg)
            self.build_services()
            for hook in self.boot_hooks:
                await loop.run_in_executor(self.executor, hook)
            if self.networks is not None:
                # bridges, our chains, endpoints of containers that kept running
                await loop.run_in_executor(self.executor, self.networks.start)
            if self.containers is not None:
                await self.containers.restore()  # find the containers that kept running
                from dockyard.builder import boot as build_boot
                await build_boot.remove_containers(self.containers)  # interrupted RUN steps
            app = self.build_app()
            runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                   shutdown_timeout=3.0)
            await runner.setup()
            for lst in listeners:
                site = web.SockSite(runner, lst.sock, ssl_context=lst.ssl_context)
                await site.start()
                log.info("API listen on %s", lst.address)
                if lst.address.startswith("tcp://") and lst.ssl_context is None:
                    log.warning(_INSECURE_BANNER.format(addr=lst.address))
            log.info("Daemon has completed initialization (data root %s)", self.data_root)
            await self._stop.wait()
            log.info("Processing signal, shutting down")
        finally:
            if self.containers is not None:
                await self.containers.close()  # containers keep running under the supervisor
            if self.networks is not None:
                # Running containers keep their addresses, bridges and rules; with none
                # left, nothing of ours stays on the host (start() rebuilds it all).
                running = self._container_counts().get("ContainersRunning", 0) + \
                    self._container_counts().get("ContainersPaused", 0)
                done = self.networks.close if running else self._network_host_cleanup
                try:
                    await asyncio.get_running_loop().run_in_executor(None, done)
                except Exception as e:  # noqa: BLE001 - shutdown goes on
                    log.warning("network shutdown: %s", e)
            self.events.close()
            if runner is not None:
                await runner.cleanup()
            close_listeners(listeners)
            self.executor.shutdown(wait=False, cancel_futures=True)
            await _join_threads(self.executor, 10.0)
            if self.store is not None:
                close = getattr(self.store, "close", None)
                if callable(close):
                    close()
            if pid_written:
                try:
                    if self._pidfile.read_text().strip() == str(os.getpid()):
                        self._pidfile.unlink()
                except OSError:
                    pass
            self._lock.release()
            log.info("Daemon shutdown complete")


async def _join_threads(executor: ThreadPoolExecutor, timeout: float) -> None:
    threads = list(getattr(executor, "_threads", ()))

    def join() -> None:
        for t in threads:
            t.join(timeout)

    try:
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, join), timeout)
    except asyncio.TimeoutError:
        log.warning("some service calls were still running at shutdown")


_INSECURE_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
  DANGER: the API is listening on {addr} WITHOUT TLS (--insecure-tcp).
  Anyone who can reach this address can run anything as root on this host.
  Use --tlsverify --tlscacert --tlscert --tlskey instead.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""
