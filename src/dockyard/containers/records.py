"""Container records and names: the store, lookups, name reservation, the views
(inspect, ps, stats) and what they are computed from."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from typing import Any

from dockyard import errors
from dockyard.containers import state as st
from dockyard.cli.units import human_duration  # go-units, pure: shared with the CLI
from dockyard.oci import spec as ocispec
from dockyard.supervisor import jsonlog
from dockyard.containers import health as healthcheck
from dockyard.containers import mounts as mountpoints
from dockyard.containers.common import NAME_RE, ZERO_TIME, now


# record fields that are the daemon's own, not Docker's inspect
_PRIVATE_FIELDS = ("HasBeenStartedBefore", "HasBeenManuallyStopped", "MountPoints", "RemoveVolumes",
                   "NetworksPlanned", "LinkHosts", "Intent")


class Records:
    """Part of ContainerService (containers/service.py): see the module's docstring."""

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
        """The container's lock (``async with``): it lives only while held or waited for
        (``_locks`` keeps it weakly), so none stays per removed container."""
        lock = self._locks.get(cid)
        if lock is None:
            lock = self._locks[cid] = asyncio.Lock()
        return lock

    def _save(self, c: dict) -> None:
        self.store.put(c)

    def _dir(self, cid: str) -> str:
        return os.path.join(self.root, "containers", cid)

    def usage(self, image_id: str) -> list[tuple[str, bool]]:
        """The containers made from ``image_id``, each with whether it runs (a paused or
        restarting one counts, as dockerd's IsRunning): removing the image is a conflict
        that force cannot override while one runs."""
        return [(cid, bool(c["State"].get("Running") or c["State"].get("Restarting")))
                for cid, c in self.containers.items() if c["Image"] == image_id]

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
                    merged: dict, image_id: str, image_config: dict, runtime: str,
                    points: list[dict] | None = None) -> dict:
        host.setdefault("NetworkMode", "default")
        host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        for k in ("KernelMemory", "KernelMemoryTCP"):  # deprecated; newer clients omit them
            host.setdefault(k, 0)
        host["Runtime"] = runtime
        entry_args = ocispec.command(config, image_config)
        paths = self._id_paths(cid)
        if host["LogConfig"].get("Type") == "none":
            paths["LogPath"] = ""
        return {
            "Id": cid, "Created": now(), "Path": entry_args[0], "Args": entry_args[1:],
            "State": st.new_state(), "Image": image_id, **paths, "Name": name,
            "RestartCount": 0, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
            "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None, "HostConfig": host,
            "GraphDriver": {"Name": "overlay2", "Data": None},
            "Mounts": [mountpoints.view(p) for p in points or []], "MountPoints": points or [],
            "Config": merged,
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

    def _attrs(self, c: dict) -> dict:
        attrs = {"image": c["Config"].get("Image", ""), "name": c["Name"].lstrip("/")}
        attrs.update(c["Config"].get("Labels") or {})
        return attrs

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

    # ---- views -----------------------------------------------------------------------------
    def volume_users(self, name: str) -> list[str]:
        """Ids of the containers (running or not) whose mount points use volume ``name``."""
        recs = list(self.containers.items())
        recs += [(cid, rec) for cid, rec in list(self._creating.items())   # not stored yet
                 if cid not in self.containers]
        return [cid for cid, c in recs
                if any(mp["Type"] == "volume" and mp["Name"] == name
                       for mp in c.get("MountPoints") or [])]

    def inspect(self, ref: str, size: bool = False) -> dict:
        c = self.get(ref)
        out = {k: v for k, v in c.items() if k not in _PRIVATE_FIELDS}
        out = json.loads(json.dumps(out))
        out["State"] = {**out["State"], **self._backoff_state(c)}
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
            if not show_all and not (c["State"]["Running"] or self._backoff_state(c)):
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
        state = {**c["State"], **self._backoff_state(c)}
        out = {
            "Id": c["Id"], "Names": [c["Name"]], "Image": c["Config"].get("Image", ""),
            "ImageID": c["Image"], "Command": cmd, "Created": created, "Ports": ports,
            "Labels": c["Config"].get("Labels") or {}, "State": state["Status"],
            "Status": _status_text(c, state), "HostConfig": {"NetworkMode": c["HostConfig"].get("NetworkMode")},
            "NetworkSettings": {"Networks": c["NetworkSettings"].get("Networks") or {}},
            "Mounts": c.get("Mounts") or [],
        }
        if size:
            out["SizeRw"] = _dir_size(self.images, c["Id"])
            out["SizeRootFs"] = out["SizeRw"] + _image_size(self.images, c["Image"])
        return out

    def _backoff_state(self, c: dict) -> dict:
        """What the State of a container between a death and its restart-policy restart
        shows on top of its record, as dockerd's: restarting (Running and Restarting true,
        no pid), the exit code and FinishedAt of the run that ended; {} otherwise."""
        if c["Id"] not in getattr(self, "_restart_pending", ()) or c["State"]["Status"] != "exited":
            return {}
        return {"Status": "restarting", "Running": True, "Restarting": True, "Pid": 0}

    def event_attrs(self, c: dict) -> dict:
        """The attributes of a container's events (image, name, labels)."""
        return self._attrs(c)

    def stats(self, ref: str) -> dict:
        c = self.get(ref)
        raw: dict = {}
        io: dict = {}
        if c["State"]["Running"]:
            from dockyard.containers import iostats

            try:
                from dockyard.runtime import cgroups

                raw = cgroups.open_manager(self._cgroup(c["Id"]), c["Id"]).stats()
            except Exception:  # noqa: BLE001 - stats are best effort
                raw = {}
            io = {"blkio_stats": iostats.blkio_stats(self._cgroup(c["Id"])),
                  "networks": {}}
            mode = c["HostConfig"].get("NetworkMode") or "default"
            if c["State"]["Pid"] and mode != "host" and not mode.startswith("container:"):
                io["networks"] = iostats.network_stats(c["State"]["Pid"])
        return {**_docker_stats(c, raw), **io}



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
        "Image": config.get("Image"),
        "Volumes": {**(image_config.get("Volumes") or {}), **(config.get("Volumes") or {})} or None,
        "WorkingDir": config.get("WorkingDir") or image_config.get("WorkingDir") or "",
        "Entrypoint": config.get("Entrypoint") if config.get("Entrypoint") is not None
        else image_config.get("Entrypoint"),
        "OnBuild": config.get("OnBuild") or image_config.get("OnBuild"),
        "Labels": {**(image_config.get("Labels") or {}), **(config.get("Labels") or {})},
    }
    # kept as given (omitted when empty, as dockerd's JSON): the MAC address is the
    # first network's (containers/networking.py), Shell and ArgsEscaped go with a commit
    for k in ("MacAddress", "Shell", "ArgsEscaped"):
        if config.get(k):
            merged[k] = config[k]
    if config.get("ExposedPorts") or image_config.get("ExposedPorts"):
        merged["ExposedPorts"] = {**(image_config.get("ExposedPorts") or {}),
                                  **(config.get("ExposedPorts") or {})}
    for k in ("StopSignal", "StopTimeout"):
        v = config.get(k) or image_config.get(k)
        if v is not None:
            merged[k] = v
    hc = healthcheck.merge(config.get("Healthcheck"), image_config.get("Healthcheck"))
    if hc is not None:
        merged["Healthcheck"] = hc
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


def _status_text(c: dict, state: dict | None = None) -> str:
    s = state or c["State"]
    status = s["Status"]
    if status == "created":
        return "Created"
    if status in ("running", "paused", "restarting"):
        if status == "restarting":   # dockerd: since the run that ended
            finished = jsonlog.parse_rfc3339nano(s["FinishedAt"]) / 1e9
            return f"Restarting ({s['ExitCode']}) {human_duration(time.time() - finished)} ago"
        started = jsonlog.parse_rfc3339nano(s["StartedAt"]) / 1e9
        text = "Up " + human_duration(time.time() - started)
        if status == "paused":
            text += " (Paused)"
        return text + healthcheck.status_suffix(c)
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


def _match_filters(c: dict, filters: dict, svc: Any) -> bool:
    for key, values in filters.items():
        if not values:
            continue
        if key == "status":
            shown = svc._backoff_state(c).get("Status") or c["State"]["Status"]
            if shown not in values:
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
        elif key == "volume":
            if not any(v in (mp["Name"], mp["Destination"], mp["Source"])
                       for mp in c.get("MountPoints") or [] for v in values):
                return False
        elif key == "health":
            for v in values:
                if v not in ("starting", "healthy", "unhealthy", "none"):
                    raise errors.InvalidParameter(
                        f"Unrecognised filter value for health: {v}")
            if healthcheck.filter_status(c) not in values:
                return False
        elif key == "is-task":
            for v in values:
                if v not in ("true", "false", "1", "0"):
                    raise errors.InvalidParameter(f"Invalid filter 'is-task={v}'")
            if any(v in ("true", "1") for v in values):
                return False    # no swarm: no container is a task
        elif key in ("publish", "expose"):
            wanted = set()
            for v in values:
                wanted |= _port_filter(v)
            if key == "publish":
                have = {p for p, b in (c["NetworkSettings"].get("Ports") or {}).items() if b}
                have |= set(c["HostConfig"].get("PortBindings") or {})
            else:
                have = set(c["Config"].get("ExposedPorts") or {})
            if not wanted & {p if "/" in p else p + "/tcp" for p in have}:
                return False
        elif key == "network":
            if not any(v in (c["NetworkSettings"].get("Networks") or {}) for v in values):
                return False
        else:
            raise errors.InvalidParameter(f"invalid filter '{key}'")
    return True


def _port_filter(v: str) -> set[str]:
    """``80``, ``80/udp``, ``8000-8010/tcp`` as the set of ``port/proto`` keys."""
    spec, _, proto = v.partition("/")
    proto = proto or "tcp"
    lo, _, hi = spec.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise errors.InvalidParameter(f"invalid port range: {v}") from None
    if not 0 < a <= b <= 65535 or proto not in ("tcp", "udp", "sctp"):
        raise errors.InvalidParameter(f"invalid port range: {v}")
    return {f"{p}/{proto}" for p in range(a, b + 1)}


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
