"""OCI ``config.json`` -> a frozen :class:`Config`, and the checks it must pass.

Why a separate step: nothing may be created on the host (state directory,
cgroup, namespaces) for a bundle that is wrong. ``load()`` parses, and
``validate()`` runs a list of small pure checks, stopping at the first
problem with a message that names the field — the way runc's validator does.

Also here: ``default_spec()`` (what ``dockyard-runc spec`` writes, shaped like
runc's) and ``make_spec()``/``write_bundle()``, which tests and the daemon use
to write bundles without hand-building the whole document.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os
from .record import Factory, record

from dockyard.errors import InvalidParameter

from . import fastjson

OCI_VERSION = "1.2.0"

NAMESPACES = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")
RLIMITS = {"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
           "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE",
           "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING",
           "RLIMIT_STACK"}
PROPAGATIONS = {"", "private", "rprivate", "slave", "rslave", "shared", "rshared",
                "unbindable", "runbindable"}
IGNORED_BIND_OPTIONS = {"tmpcopyup", "idmap", "ridmap", "X-mount.mkdir"}

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


class ConfigError(InvalidParameter):
    """The bundle or its config.json is invalid; the message is user-facing."""


@record(frozen=True)
class Namespace:
    type: str
    path: str | None = None


@record(frozen=True)
class IDMap:
    container_id: int
    host_id: int
    size: int


@record(frozen=True)
class Mount:
    destination: str
    type: str
    source: str
    options: tuple[str, ...] = ()

    @property
    def is_bind(self) -> bool:
        return self.type in ("bind", "rbind") or "bind" in self.options or "rbind" in self.options


@record(frozen=True)
class Device:
    path: str
    type: str
    major: int
    minor: int
    file_mode: int | None
    uid: int | None
    gid: int | None


@record(frozen=True)
class Hook:
    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: int | None


@record(frozen=True)
class User:
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()


@record(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    terminal: bool = False
    user: User = Factory(User)
    capabilities: dict = Factory(dict)     # set name -> list of names
    rlimits: tuple[tuple[str, int, int], ...] = ()       # (type, hard, soft)
    no_new_privileges: bool = False
    oom_score_adj: int | None = None
    console_size: tuple[int, int] | None = None          # (height, width)


@record(frozen=True)
class Config:
    bundle: str
    oci_version: str
    rootfs: str
    readonly: bool
    process: Process | None
    hostname: str | None
    domainname: str | None
    mounts: tuple[Mount, ...]
    hooks: dict                                          # kind -> tuple[Hook, ...]
    annotations: dict
    namespaces: tuple[Namespace, ...]
    uid_mappings: tuple[IDMap, ...]
    gid_mappings: tuple[IDMap, ...]
    devices: tuple[Device, ...]
    cgroups_path: str | None
    resources: dict | None
    sysctl: dict
    seccomp: dict | None
    rootfs_propagation: str
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    raw: dict

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None

    def has_mount_at(self, dest: str) -> Mount | None:
        for m in self.mounts:
            if os.path.normpath(m.destination) == dest:
                return m
        return None


# --------------------------------------------------------------------- loading

def read_bundle(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (is {bundle!r} an OCI bundle?)") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        raw = fastjson.loads(data)
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return raw


def load(bundle: str, raw: dict | None = None) -> Config:
    """Read, convert and validate ``<bundle>/config.json`` (``raw``: already read)."""
    bundle = os.path.abspath(bundle)
    if raw is None:
        raw = read_bundle(bundle)
    cfg = from_dict(raw, bundle)
    validate(cfg)
    return cfg


def _t(x) -> tuple:
    return tuple(x or ())


def _process(p: dict | None) -> Process | None:
    if p is None:
        return None
    u = p.get("user") or {}
    user = User(uid=u.get("uid", 0), gid=u.get("gid", 0), umask=u.get("umask"),
                additional_gids=_t(u.get("additionalGids")))
    rl = tuple((r.get("type"), r.get("hard"), r.get("soft")) for r in p.get("rlimits") or ())
    cs = p.get("consoleSize")
    return Process(args=_t(p.get("args")), env=_t(p.get("env")), cwd=p.get("cwd") or "/",
                   terminal=bool(p.get("terminal")), user=user,
                   capabilities=dict(p.get("capabilities") or {}), rlimits=rl,
                   no_new_privileges=bool(p.get("noNewPrivileges")),
                   oom_score_adj=p.get("oomScoreAdj"),
                   console_size=(cs.get("height", 0), cs.get("width", 0)) if cs else None)


def _maps(items) -> tuple[IDMap, ...]:
    return tuple(IDMap(m.get("containerID"), m.get("hostID"), m.get("size")) for m in items or ())


def _hooks(h: dict | None) -> dict:
    out = {}
    for kind, items in (h or {}).items():
        out[kind] = tuple(Hook(path=i.get("path"), args=_t(i.get("args")), env=_t(i.get("env")),
                               timeout=i.get("timeout")) for i in items or ())
    return out


def from_dict(raw: dict, bundle: str) -> Config:
    """Convert without judging; shapes that cannot even be converted raise ConfigError."""
    try:
        linux = raw.get("linux") or {}
        root = raw.get("root") or {}
        rootfs = root.get("path") or ""
        if rootfs and not os.path.isabs(rootfs):
            rootfs = os.path.join(bundle, rootfs)
        mounts = tuple(Mount(destination=m.get("destination"), type=m.get("type") or "",
                             source=m.get("source") or "", options=_t(m.get("options")))
                       for m in raw.get("mounts") or ())
        devices = tuple(Device(path=d.get("path"), type=d.get("type"), major=d.get("major", 0),
                               minor=d.get("minor", 0), file_mode=d.get("fileMode"),
                               uid=d.get("uid"), gid=d.get("gid"))
                        for d in linux.get("devices") or ())
        return Config(
            bundle=bundle, oci_version=raw.get("ociVersion"), rootfs=os.path.normpath(rootfs)
            if rootfs else "", readonly=bool(root.get("readonly")),
            process=_process(raw.get("process")), hostname=raw.get("hostname"),
            domainname=raw.get("domainname"), mounts=mounts, hooks=_hooks(raw.get("hooks")),
            annotations=dict(raw.get("annotations") or {}),
            namespaces=tuple(Namespace(n.get("type"), n.get("path") or None)
                             for n in linux.get("namespaces") or ()),
            uid_mappings=_maps(linux.get("uidMappings")),
            gid_mappings=_maps(linux.get("gidMappings")),
            devices=devices, cgroups_path=linux.get("cgroupsPath") or None,
            resources=linux.get("resources"), sysctl=dict(linux.get("sysctl") or {}),
            seccomp=linux.get("seccomp"),
            rootfs_propagation=linux.get("rootfsPropagation") or "",
            masked_paths=_t(linux.get("maskedPaths")),
            readonly_paths=_t(linux.get("readonlyPaths")), raw=raw)
    except (AttributeError, TypeError) as e:
        raise ConfigError(f"config.json has an unexpected shape: {e}") from None


# ------------------------------------------------------------------ validation

def _check_version(c: Config) -> str | None:
    if not isinstance(c.oci_version, str) or not c.oci_version:
        return "ociVersion must be a non-empty string"
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _check_root(c: Config) -> str | None:
    if not c.rootfs:
        return "root.path is required"
    if not os.path.isdir(c.rootfs):
        return f"root.path {c.rootfs!r} does not exist or is not a directory"
    if _same_file(c.rootfs, "/"):
        return "root.path must not be the host's /"
    return None


def _check_process(c: Config) -> str | None:
    p = c.process
    if p is None:
        return "process is required"
    if not p.args or not all(isinstance(a, str) for a in p.args):
        return "process.args must be a non-empty list of strings"
    if not isinstance(p.cwd, str) or not os.path.isabs(p.cwd):
        return f"process.cwd {p.cwd!r} must be an absolute path"
    if not all(isinstance(e, str) and "=" in e for e in p.env):
        return "process.env entries must be strings of the form KEY=value"
    for v in (p.user.uid, p.user.gid, *p.user.additional_gids):
        if not isinstance(v, int) or v < 0:
            return "process.user uid, gid and additionalGids must be non-negative integers"
    return None


def _check_capabilities(c: Config) -> str | None:
    from . import caps
    for s, names in (c.process.capabilities if c.process else {}).items():
        if s not in caps.SETS:
            return f"process.capabilities: unknown set {s!r}"
        bad = caps.unknown(list(names or ()))
        if bad:
            return f"process.capabilities.{s}: unknown capability {bad[0]!r}"
    return None


def _check_rlimits(c: Config) -> str | None:
    seen = set()
    for typ, hard, soft in c.process.rlimits if c.process else ():
        if typ not in RLIMITS:
            return f"process.rlimits: unknown type {typ!r}"
        if typ in seen:
            return f"process.rlimits: {typ} given twice"
        seen.add(typ)
        if not isinstance(hard, int) or not isinstance(soft, int) or soft > hard:
            return f"process.rlimits: {typ} needs integer soft <= hard"
    return None


def _check_namespaces(c: Config) -> str | None:
    seen = set()
    for ns in c.namespaces:
        if ns.type not in NAMESPACES:
            return f"linux.namespaces: unknown namespace type {ns.type!r}"
        if ns.type in seen:
            return f"linux.namespaces: {ns.type} given twice"
        seen.add(ns.type)
        if ns.path is not None and not os.path.exists(ns.path):
            return f"linux.namespaces: {ns.type} namespace path {ns.path!r} does not exist"
    return None


def _check_user_mappings(c: Config) -> str | None:
    userns = c.namespace("user")
    if (c.uid_mappings or c.gid_mappings) and userns is None:
        return "uid/gid mappings need a user namespace in linux.namespaces"
    if userns is not None and userns.path is None:
        if not c.uid_mappings or not c.gid_mappings:
            return "a new user namespace needs linux.uidMappings and linux.gidMappings"
    for m in (*c.uid_mappings, *c.gid_mappings):
        if not all(isinstance(v, int) and v >= 0 for v in (m.container_id, m.host_id, m.size)):
            return "linux.uidMappings/gidMappings need containerID, hostID and size integers"
    return None


def _check_mounts(c: Config) -> str | None:
    from .rootfs import MOUNT_FLAGS, PROPAGATION_FLAGS
    for m in c.mounts:
        if not isinstance(m.destination, str) or not os.path.isabs(m.destination):
            return f"mount destination {m.destination!r} must be an absolute path"
        if ".." in m.destination.split("/"):
            return f"mount destination {m.destination!r} must not contain '..'"
        if m.is_bind:
            if not m.source or not os.path.exists(m.source if os.path.isabs(m.source)
                                                   else os.path.join(c.bundle, m.source)):
                return f"bind mount source {m.source!r} for {m.destination} does not exist"
        elif not m.type:
            return f"mount {m.destination}: type is required"
        for o in m.options:
            if not isinstance(o, str):
                return f"mount {m.destination}: options must be strings"
            known = o in MOUNT_FLAGS or o in PROPAGATION_FLAGS or o in ("bind", "rbind")
            if m.is_bind and not known and "=" not in o and o not in IGNORED_BIND_OPTIONS:
                return f"mount {m.destination}: unknown bind mount option {o!r}"
    return None


def _check_devices(c: Config) -> str | None:
    for d in c.devices:
        if not isinstance(d.path, str) or not d.path.startswith("/dev/"):
            return f"linux.devices: path {d.path!r} must be under /dev"
        if d.type not in ("c", "b", "u", "p"):
            return f"linux.devices {d.path}: type must be c, b, u or p"
    return None


def _check_paths(c: Config) -> str | None:
    for what, paths in (("maskedPaths", c.masked_paths), ("readonlyPaths", c.readonly_paths)):
        for p in paths:
            if not isinstance(p, str) or not os.path.isabs(p):
                return f"linux.{what}: {p!r} must be an absolute path"
    return None


def _check_hostname(c: Config) -> str | None:
    # a uts namespace joined by path is the container's too: runc sets the
    # name in it (a pod's containers share one); the host's is never changed
    if c.hostname and c.namespace("uts") is None:
        return "hostname needs a uts namespace"
    if c.domainname and c.namespace("uts") is None:
        return "domainname needs a uts namespace"
    return None


def _check_mount_namespace(c: Config) -> str | None:
    """Without a mount namespace (runc allows it) init only chroots into the root:
    whatever would change mounts would change the host's, so it is refused."""
    if c.namespace("mount") is not None:
        return None
    if c.mounts:
        return (f"mount {c.mounts[0].destination}: mounts need a mount namespace "
                "(linux.namespaces has none)")
    if c.masked_paths or c.readonly_paths:
        return ("linux.maskedPaths/readonlyPaths need a mount namespace "
                "(linux.namespaces has none)")
    if c.readonly:
        return "root.readonly needs a mount namespace (linux.namespaces has none)"
    if c.devices:
        return "linux.devices need a mount namespace (linux.namespaces has none)"
    if c.rootfs_propagation:
        return "linux.rootfsPropagation needs a mount namespace (linux.namespaces has none)"
    return None


def _check_sysctl(c: Config) -> str | None:
    for key in c.sysctl:
        if key.startswith("net."):
            if c.namespace("network") is None:
                return f"sysctl {key} needs a network namespace"
        elif key.startswith(("kernel.msg", "kernel.sem", "kernel.shm")) or key.startswith("fs.mqueue."):
            if c.namespace("ipc") is None:
                return f"sysctl {key} needs an ipc namespace"
        elif key in ("kernel.hostname", "kernel.domainname"):
            return f"sysctl {key}: use the hostname/domainname fields instead"
        else:
            return f"sysctl {key} is not namespaced and cannot be set for a container"
    return None


def _check_hooks(c: Config) -> str | None:
    for kind, hooks in c.hooks.items():
        if kind not in HOOK_KINDS:
            return f"hooks: unknown hook kind {kind!r}"
        for h in hooks:
            if not isinstance(h.path, str) or not os.path.isabs(h.path):
                return f"hooks.{kind}: path {h.path!r} must be absolute"
    return None


def _check_propagation(c: Config) -> str | None:
    if c.rootfs_propagation not in PROPAGATIONS:
        return f"linux.rootfsPropagation {c.rootfs_propagation!r} is not valid"
    return None


def _check_resources(c: Config) -> str | None:
    from . import cgroups
    try:
        cgroups.validate_resources(c.resources)
    except cgroups.CgroupError as e:
        return str(e)
    return None


def _check_seccomp(c: Config) -> str | None:
    if not c.seccomp:
        return None
    from . import seccomp
    try:
        seccomp.validate(c.seccomp)
    except seccomp.SeccompError as e:
        return str(e)
    return None


CHECKS = (_check_version, _check_root, _check_process, _check_capabilities, _check_rlimits,
          _check_namespaces, _check_user_mappings, _check_mounts, _check_devices, _check_paths,
          _check_hostname, _check_mount_namespace, _check_sysctl, _check_hooks, _check_propagation, _check_resources,
          _check_seccomp)


def validate(c: Config) -> None:
    """Run every check; raise ConfigError with the first problem found."""
    for check in CHECKS:
        problem = check(c)
        if problem:
            raise ConfigError(problem)


def validate_id(container_id: str) -> None:
    if not container_id or container_id in (".", "..") or not set(container_id) <= _ID_CHARS:
        raise ConfigError(f"invalid container id {container_id!r}: use letters, digits, _ + - .")


# --------------------------------------------------------------- default spec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def default_spec() -> dict:
    """The spec ``dockyard-runc spec`` writes: runc's default shape."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": list(caps), "effective": list(caps),
                             "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "dockyard",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                  "cgroup")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
                            "/sys/devices/virtual/powercap"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def _merge(base: dict, over: dict) -> dict:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            import copy
            base[k] = copy.deepcopy(v)
    return base


def make_spec(rootfs: str, args: list[str], **overrides) -> dict:
    """A runnable spec for ``rootfs``: the default spec without a terminal, a
    writable root, and ``overrides`` merged in (nested dicts merge, other
    values replace), e.g. ``make_spec(r, ["sh"], process={"cwd": "/tmp"})``."""
    spec = default_spec()
    spec["root"] = {"path": os.path.abspath(rootfs), "readonly": False}
    spec["process"]["args"] = list(args)
    spec["process"]["terminal"] = False
    return _merge(spec, overrides)


def write_bundle(bundle: str, spec: dict) -> str:
    """Write ``spec`` as ``<bundle>/config.json`` (atomically); return the bundle path."""
    os.makedirs(bundle, exist_ok=True)
    path = os.path.join(bundle, "config.json")
    tmp = path + ".tmp"
    import json
    with open(tmp, "w") as f:
        json.dump(spec, f, indent=2)
    os.replace(tmp, path)
    return bundle
