"""What `docker version`, `docker info` and `docker system df` report (no HTTP here)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import uuid
from pathlib import Path
from typing import Any, Callable

from dockyard import __version__
from dockyard.api.versions import API_VERSION, MIN_API_VERSION


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    for p in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            for line in Path(p).read_text().splitlines():
                k, eq, v = line.partition("=")
                if eq:
                    out[k.strip()] = v.strip().strip('"')
            break
        except OSError:
            continue
    return out


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _go_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def _build_time() -> str:
    from dockyard import buildinfo

    ts = buildinfo.build_time()
    if ts is None:   # a source checkout: when its code last changed
        try:
            ts = os.stat(__file__).st_mtime
        except OSError:
            ts = 0
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00")


def _git_commit() -> str:
    """The commit recorded when this copy was built, or the source checkout's."""
    from dockyard import buildinfo

    return buildinfo.git_commit() or "unknown"


def _cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


class SystemService:
    """Engine-wide facts.  Counters come from callables so later services plug in."""

    def __init__(self, data_root: Path, images: Any = None, events: Any = None,
                 debug: bool = False, containers: Callable[[], dict] | None = None,
                 runtimes: dict[str, str] | None = None, default_runtime: str = "dockyard"):
        self.data_root = Path(data_root)
        self.images = images
        self.events = events
        self.debug = debug
        # containers() -> {"Containers","ContainersRunning","ContainersPaused","ContainersStopped"}
        self.containers = containers
        self.runtimes = runtimes or {"dockyard": "dockyard-runc"}
        self.default_runtime = default_runtime
        self.engine_id = self._engine_id()
        self._commit = _git_commit()
        self._build_time = _build_time()

    def _engine_id(self) -> str:
        p = self.data_root / "engine-id"
        try:
            return p.read_text().strip()
        except FileNotFoundError:
            from dockyard import statefiles

            eid = str(uuid.uuid4())
            statefiles.write(p, eid + "\n")
            return eid

    def version(self) -> dict:
        details = {
            "ApiVersion": API_VERSION,
            "Arch": _go_arch(),
            "BuildTime": self._build_time,
            "Experimental": "false",
            "GitCommit": self._commit,
            "GoVersion": "python" + platform.python_version(),
            "KernelVersion": platform.release(),
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
        }
        return {
            "Platform": {"Name": "Dockyard Engine"},
            "Components": [
                {"Name": "Engine", "Version": __version__, "Details": details},
                {"Name": "dockyard-runc", "Version": __version__,
                 "Details": {"GitCommit": self._commit}},
            ],
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": self._commit,
            "GoVersion": details["GoVersion"],
            "Os": "linux",
            "Arch": details["Arch"],
            "KernelVersion": details["KernelVersion"],
            "BuildTime": self._build_time,
        }

    def info(self) -> dict:
        """Blocking (counts images): run in a thread."""
        osr = _os_release()
        counts = {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0,
                  "ContainersStopped": 0}
        if self.containers is not None:
            counts.update(self.containers())
        n_images = 0
        if self.images is not None:
            n_images = len(self.images.list_images(all=True))
        driver = getattr(self.images, "snapshotter_name", None) or "overlayfs"
        return {
            "ID": self.engine_id,
            **counts,
            "Images": n_images,
            "Driver": driver,
            "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                        "Authorization": None, "Log": ["json-file"]},
            "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False,
            "KernelMemoryTCP": False, "CpuCfsPeriod": True, "CpuCfsQuota": True,
            "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
            "BridgeNfIptables": True, "BridgeNfIp6tables": True,
            "Debug": self.debug,
            "NFd": len(os.listdir("/proc/self/fd")),
            "OomKillDisable": True,
            "NGoroutines": 0,
            "SystemTime": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": _cgroup_version(),
            "NEventsListener": self.events.listeners if self.events is not None else 0,
            "KernelVersion": platform.release(),
            "OperatingSystem": osr.get("PRETTY_NAME", "Linux"),
            "OSVersion": osr.get("VERSION_ID", ""),
            "OSType": "linux",
            "Architecture": platform.machine(),
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "AllowNondistributableArtifactsCIDRs": [],
                "AllowNondistributableArtifactsHostnames": [],
                "InsecureRegistryCIDRs": ["::1/128", "127.0.0.0/8"],
                "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [],
                                               "Secure": True, "Official": True}},
                "Mirrors": [],
            },
            "GenericResources": None,
            "NCPU": os.cpu_count() or 1,
            "MemTotal": _mem_total(),
            "DockerRootDir": str(self.data_root),
            "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
            "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
            "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
            "Name": socket.gethostname(),
            "Labels": [],
            "ExperimentalBuild": False,
            "ServerVersion": __version__,
            "Runtimes": {name: {"path": path} for name, path in self.runtimes.items()},
            "DefaultRuntime": self.default_runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                      "ControlAvailable": False, "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": False,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": self._commit, "Expected": self._commit},
            "InitCommit": {"ID": "", "Expected": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "CDISpecDirs": [],
            "Warnings": None,
        }

    df_containers: Any = None   # () -> container summaries with SizeRw/SizeRootFs
    df_volumes: Any = None      # () -> volumes with UsageData

    def disk_usage(self) -> dict:
        """Blocking: run in a thread."""
        layers, images = 0, []
        if self.images is not None:
            du = self.images.disk_usage()
            layers, images = du.get("LayersSize", 0), du.get("Images", [])
        cache = []
        if self.images is not None:
            from dockyard.builder import cache as build_cache
            cache = build_cache.public(build_cache.records(self.images.store, self.images))
        # the container and volume services' parts, handed in by the daemon (daemon/app.py)
        containers = self.df_containers() if self.df_containers is not None else []
        volumes = self.df_volumes() if self.df_volumes is not None else []
        return {"LayersSize": layers, "Images": images, "Containers": containers,
                "Volumes": volumes, "BuildCache": cache}
