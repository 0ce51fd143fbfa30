"""The container service: create, start, stop, wait, remove, exec, logs... (no HTTP here).

Flow of a start: the image's snapshot is mounted as the container's rootfs, the
/etc files are written, ``dockyard.oci.spec`` builds config.json, the supervisor
runs ``<runtime> create`` (the init blocks before exec), the network is wired
into the new network namespace, then ``<runtime> start`` releases the init.
The supervisor reports exits; the service records them and applies restart
policies. Records live in SQLite; the supervisor keeps the processes, so a
restarted daemon finds its containers with ``restore()``.

The service is one facade over parts, one job each (containerd keeps one service per
concern): ``records`` (store, names, lookups, views), ``lifecycle`` (create/start/stop/
kill/restart/remove/wait, the restart policy), ``task`` (rootfs, /etc files, spec, the
runtime's create and cleanup), ``supervision`` (boot, the supervisor's events),
``warming`` (the warm pool's work), ``execs``, ``streams`` (attach, logs),
``health`` (health checks: config, results, ps), ``filesystem`` (export, diff, commit)
and ``recovery`` (boot recovery of half-done operations). They share the service's state (``self``).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any, Callable

from dockyard import statefiles
from dockyard.containers import warm as warmpool
from dockyard.containers.common import NAME_RE, WARM_NAME, ZERO_TIME, now  # noqa: F401
from dockyard.containers.execs import Execs
from dockyard.containers.filesystem import Filesystem
from dockyard.containers.health import HealthChecks
from dockyard.containers.hostconfig import _xfs_with_pquota  # noqa: F401 - tests use it
from dockyard.containers.lifecycle import Lifecycle
from dockyard.containers.records import Records
from dockyard.containers.recovery import Recovery
from dockyard.containers.store import ContainerStore
from dockyard.containers.streams import Streams
from dockyard.containers.supervision import Supervision
from dockyard.containers.task import Task, find_init  # noqa: F401
from dockyard.containers.warming import WarmPoolWork
from dockyard.supervisor import client as supclient


class ContainerService(Records, Lifecycle, Task, Supervision, WarmPoolWork, Execs,
                       Streams, Filesystem, HealthChecks, Recovery):
    def __init__(self, *, root: str, images: Any, store: ContainerStore,
                 supervisor: supclient.AsyncClient, runtimes: dict[str, str],
                 default_runtime: str, emit: Callable[..., None] | None = None,
                 network: Any = None, seccomp_profile: Callable[[list[str]], dict] | None = None,
                 runtime_root: str | None = None, cgroup_parent: str = "/dockyard",
                 warm_pool: int = 0, volumes: Any = None) -> None:
        self.root = root
        self.images = images
        self.store = store
        self.sup = supervisor
        self.runtimes = runtimes
        self.default_runtime = default_runtime
        self.emit = emit or (lambda *a, **k: None)
        self.network = network
        self.volumes = volumes   # dockyard.volumes.service.VolumeService (None: no volumes)
        self.seccomp_profile = seccomp_profile
        self.runtime_root = runtime_root or os.path.join(root, "runtime")
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.containers: dict[str, dict] = {}
        self.exits: dict[str, asyncio.Event] = {}
        self.removed: dict[str, asyncio.Event] = {}
        self.execs: dict[str, dict] = {}
        self._watch_task: asyncio.Task | None = None
        # weakly: a container's lock goes when no one holds or waits for it (records._lock)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._pending_attach: dict[str, list] = {}
        self._restart_pending: set[str] = set()
        self._reserved_names: set[str] = set()
        self._creating: dict[str, dict] = {}   # id -> record whose volumes are being made
        self.warm = warmpool.Pool(warm_pool)
        self._background: set[asyncio.Future] = set()
        self._removals: set[asyncio.Future] = set()   # --rm files still being removed
        if hasattr(supervisor, "replace_dead"):
            supervisor.replace_dead = self._replace_dead_supervisor
        statefiles.makedirs(os.path.join(root, "containers"))   # modes: daemon/dataroot.py
