"""Daemon configuration: command-line flags merged with a daemon.json-style file.

Like dockerd, a directive given both as a flag and in the file is an error,
and so is an unknown key in the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "unix:///run/dockyard.sock"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_PIDFILE = "/run/dockyard.pid"
DEFAULT_CONFIG_FILE = "/etc/dockyard/daemon.json"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")

# file key -> (attribute, type)
FILE_KEYS: dict[str, tuple[str, type]] = {
    "hosts": ("hosts", list),
    "data-root": ("data_root", str),
    "pidfile": ("pidfile", str),
    "log-level": ("log_level", str),
    "debug": ("debug", bool),
    "tls": ("tls", bool),
    "tlsverify": ("tlsverify", bool),
    "tlscacert": ("tlscacert", str),
    "tlscert": ("tlscert", str),
    "tlskey": ("tlskey", str),
    "insecure-tcp": ("insecure_tcp", bool),
    "group": ("group", str),
    "runtimes": ("runtimes", dict),
    "default-runtime": ("default_runtime", str),
    "cgroup-parent": ("cgroup_parent", str),
    "bridge": ("bridge", str),
    "network-prefix": ("network_prefix", str),
    "default-address-pool": ("default_address_pool", str),
    "ipv6": ("ipv6", bool),
    "fixed-cidr-v6": ("fixed_cidr_v6", str),
    "insecure-registries": ("insecure_registries", list),
    "warm-pool": ("warm_pool", int),
}


class ConfigError(Exception):
    pass


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=list)
    data_root: str = DEFAULT_DATA_ROOT
    pidfile: str | None = None
    log_level: str = "info"
    debug: bool = False
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_tcp: bool = False
    group: str = "docker"
    # OCI runtimes by name: {"runc": {"path": "/usr/sbin/runc"}}; "dockyard" is built in
    runtimes: dict = field(default_factory=dict)
    add_runtime: list[str] = field(default_factory=list)   # --add-runtime NAME=PATH
    default_runtime: str = "dockyard"
    cgroup_parent: str = "/dockyard"
    bridge: str = ""                 # "none": no networking (containers get only lo)
    network_prefix: str = ""         # names of our iptables chains and bridges
    default_address_pool: str = ""   # default bridge subnet; user networks get the next /17
    ipv6: bool = False               # the default bridge has IPv6 (fixed_cidr_v6 is its subnet)
    fixed_cidr_v6: str = ""
    # registries reached over plain HTTP / unverified TLS (loopback ones always are)
    insecure_registries: list[str] = field(default_factory=list)
    # containers made ahead for the next identical `run --rm` (containers/warm.py); 0: off
    warm_pool: int = 2

    def network_settings(self) -> dict | None:
        """Names and pools for the network manager, or None with ``--bridge none``.

        A daemon on a private data root (tests, side-by-side installs) gets its
        own chain and bridge names and its own address pool, derived from the
        data root, so that two daemons never touch each other's rules.
        """
        import hashlib
        import ipaddress

        if self.bridge == "none":
            return None
        default_root = Path(self.data_root) == Path(DEFAULT_DATA_ROOT)
        h = int(hashlib.sha256(str(Path(self.data_root).absolute()).encode()).hexdigest(), 16)
        prefix = self.network_prefix or ("DOCKYARD" if default_root else f"DY{h % 16**5:05X}")
        bridge_prefix = "dy" if default_root else f"d{h % 16**4:04x}"
        pool = self.default_address_pool or (
            "172.30.0.0/16" if default_root else _free_pool(h))
        try:
            net = ipaddress.IPv4Network(pool)
        except ValueError:
            raise ConfigError(f"invalid default-address-pool {pool!r}") from None
        if default_root and not self.default_address_pool:
            user = [("172.31.0.0/16", 24)]
        else:
            nxt = ipaddress.IPv4Network((int(net.network_address) + net.num_addresses,
                                         net.prefixlen))
            user = [(str(nxt), 24)]
        if self.ipv6 and not self.fixed_cidr_v6:
            raise ConfigError("--ipv6 needs --fixed-cidr-v6 (the default bridge's IPv6 subnet)")
        if self.fixed_cidr_v6:
            try:
                ipaddress.IPv6Network(self.fixed_cidr_v6)
            except ValueError:
                raise ConfigError(f"invalid fixed-cidr-v6 {self.fixed_cidr_v6!r}") from None
        return {"prefix": prefix, "bridge_prefix": bridge_prefix,
                "default_bridge": self.bridge or None, "default_pool": str(net),
                "user_pools": user,
                "default_ipv6": self.fixed_cidr_v6 if self.ipv6 else None}

    def fast_runtime_launcher(self) -> str:
        """A tiny launcher for dockyard-runc under <data-root>/bin.

        The console script (or a pyenv shim in front of it) costs tens of
        milliseconds per call; this one starts the interpreter without ``site``
        (see ``dockyard.runtime.runtime_argv`` and ``launcher_script``).
        """
        import os

        from dockyard.runtime import launcher_script

        from dockyard import statefiles

        root = Path(self.data_root).absolute()
        path = root / "bin" / "dockyard-runc"
        text = launcher_script()
        try:
            if not path.exists() or path.read_text() != text:
                # the data root's parents get the default mode, the root and bin/ 0700
                # (daemon/dataroot.py): only root runs the launcher
                os.makedirs(root.parent, exist_ok=True)
                statefiles.makedirs(path.parent)
                statefiles.write(path, text, mode=0o700)
        except OSError:
            import shutil

            return shutil.which("dockyard-runc") or "dockyard-runc"
        return str(path)

    def runtime_paths(self) -> dict[str, str]:
        """Every runtime the daemon knows, name -> executable."""
        import shutil

        out = {"dockyard": self.fast_runtime_launcher()}
        runc = shutil.which("runc")
        if runc:
            out["runc"] = runc
        for name, spec in (self.runtimes or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
                raise ConfigError(f"invalid runtime {name!r}: expected {{\"path\": \"...\"}}")
            out[name] = spec["path"]
        for item in self.add_runtime:
            name, eq, path = item.partition("=")
            if not eq or not name or not path:
                raise ConfigError(f"invalid runtime {item!r}: expected NAME=PATH")
            out[name] = path
        if self.default_runtime not in out:
            raise ConfigError(f"default runtime {self.default_runtime!r} is not defined")
        return out

    @property
    def effective_hosts(self) -> list[str]:
        return self.hosts or [DEFAULT_HOST]

    @property
    def effective_pidfile(self) -> str:
        if self.pidfile:
            return self.pidfile
        # a daemon on a private data root must not fight over the system pidfile
        if Path(self.data_root) == Path(DEFAULT_DATA_ROOT):
            return DEFAULT_PIDFILE
        return str(Path(self.data_root) / "dockyard.pid")

    @property
    def use_tls(self) -> bool:
        return self.tls or self.tlsverify


def load_file(path: str) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"unable to read configuration file {path}: {e.strerror}") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"unable to configure the Dockyard daemon with file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"unable to configure the Dockyard daemon with file {path}: "
                          "the file must hold a JSON object")
    return data


def merge(flags: dict, file_data: dict, path: str = "") -> DaemonConfig:
    """``flags``: only the attributes the user set explicitly (attribute -> value)."""
    unknown = sorted(k for k in file_data if k not in FILE_KEYS)
    if unknown:
        raise ConfigError("the following directives don't match any configuration option: "
                          + ", ".join(unknown))
    conflicts = []
    cfg = DaemonConfig()
    for key, value in file_data.items():
        attr, typ = FILE_KEYS[key]
        if typ is list and (not isinstance(value, list) or
                            not all(isinstance(v, str) for v in value)):
            raise ConfigError(f"invalid value for {key!r} in {path}: expected a list of strings")
        if typ is bool and not isinstance(value, bool):
            raise ConfigError(f"invalid value for {key!r} in {path}: expected true or false")
        if typ is dict and not isinstance(value, dict):
            raise ConfigError(f"invalid value for {key!r} in {path}: expected an object")
        if typ is str and not isinstance(value, str):
            raise ConfigError(f"invalid value for {key!r} in {path}: expected a string")
        if attr in flags:
            conflicts.append(f"{key}: (from flag: {_fmt(flags[attr])}, from file: {_fmt(value)})")
        setattr(cfg, attr, value)
    if conflicts:
        raise ConfigError("the following directives are specified both as a flag and in the "
                          "configuration file: " + ", ".join(conflicts))
    for attr, value in flags.items():
        setattr(cfg, attr, value)
    if cfg.debug:
        cfg.log_level = "debug"
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"unable to parse logging level: {cfg.log_level}")
    validate(cfg)
    return cfg


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + " ".join(v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def validate(cfg: DaemonConfig) -> None:
    for host in cfg.effective_hosts:
        scheme = host.split("://", 1)[0] if "://" in host else ""
        if scheme not in ("unix", "tcp"):
            raise ConfigError(f"invalid host {host!r}: only unix:// and tcp:// are supported")
        if scheme == "tcp" and not cfg.use_tls and not cfg.insecure_tcp:
            raise ConfigError(
                f"refusing to listen on {host} without TLS: anyone who can reach it gets root "
                "on this host. Use --tlsverify --tlscacert --tlscert --tlskey, or "
                "--insecure-tcp if you really mean it")
    if cfg.use_tls:
        if not cfg.tlscert or not cfg.tlskey:
            raise ConfigError("TLS needs both --tlscert and --tlskey")
        if cfg.tlsverify and not cfg.tlscacert:
            raise ConfigError("--tlsverify needs --tlscacert to verify clients")


def _host_routes() -> list:
    import ipaddress
    import socket
    import struct

    nets = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                p = line.split()
                dest = socket.inet_ntoa(struct.pack("<L", int(p[1], 16)))
                mask = socket.inet_ntoa(struct.pack("<L", int(p[7], 16)))
                if dest != "0.0.0.0":
                    nets.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except (OSError, ValueError, IndexError):
        pass
    return nets


def _free_pool(h: int) -> str:
    """10.X.0.0/17 for a private data root: X from the hash, skipping routed ranges."""
    import ipaddress

    routes = _host_routes()
    for i in range(200):
        x = 20 + (h + i) % 200
        cand = ipaddress.IPv4Network(f"10.{x}.0.0/16")
        if not any(cand.overlaps(r) for r in routes):
            return f"10.{x}.0.0/17"
    return f"10.{20 + h % 200}.0.0/17"
