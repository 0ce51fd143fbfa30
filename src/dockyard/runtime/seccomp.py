"""Seccomp filters from OCI ``linux.seccomp``, built with libseccomp.

Three steps, because they belong to different moments of container start:

* :func:`validate` is pure and cheap: the runtime calls it while checking
  config.json, before anything exists, so a bad profile leaves nothing behind.
* :func:`compile` turns the profile into a classic-BPF program with libseccomp
  (through the ``pyseccomp`` ctypes binding, imported only here, since a
  container without seccomp should not pay for loading libseccomp). Do this
  in the runtime *before* forking into the container's namespaces and before
  pivot_root: afterwards libseccomp.so may no longer be reachable, and the
  work should not sit on the path between ``start`` and the user's exec.
* :meth:`CompiledFilter.load` installs the program in the calling process with
  the seccomp(2) syscall through plain ctypes: that is all the forked child
  does, as late as possible, right before exec.

:func:`prepare` compiles and remembers the program, so that a later
:func:`load_filter` of the same profile (in the forked child, after
pivot_root) only loads it; :func:`load_filter` alone compiles then loads.

Loading needs either no_new_privs or CAP_SYS_ADMIN: a runtime that does not
set no_new_privs must load the filter before it drops capabilities (runc
orders it the same way). We never set no_new_privs ourselves (libseccomp's
own loader would), because that is the config's decision
(``process.noNewPrivileges``).

Semantics follow runc: unknown syscall names are skipped (profiles list
syscalls of every architecture), rules whose action equals the default action
are dropped (libseccomp refuses them), several conditions on one argument
index become separate rules (OR) while conditions on different indexes form
one rule (AND), and ERRNO/TRACE without ``errnoRet`` return EPERM.
"""

from __future__ import annotations

import errno as _errno
from dockyard.runtime import fastos as os

from dockyard.errors import DockyardError


class SeccompError(DockyardError):
    """The seccomp profile is malformed or cannot be loaded (user-facing message)."""


# OCI action name -> (kind); actual values are built in _action()
ACTIONS = {
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
}

# seccomp(2) return values (include/uapi/linux/seccomp.h)
_RET_KILL_PROCESS = 0x80000000
_RET_KILL_THREAD = 0x00000000
_RET_TRAP = 0x00030000
_RET_ERRNO = 0x00050000
_RET_TRACE = 0x7FF00000
_RET_LOG = 0x7FFC0000
_RET_ALLOW = 0x7FFF0000

OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

# audit architecture tokens, as libseccomp defines them (AUDIT_ARCH_*)
_LE, _64 = 0x40000000, 0x80000000
ARCHES = {
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _64,
    "SCMP_ARCH_MIPS64N32": 8 | _64 | 0x20000000,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _64 | _LE | 0x20000000,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _64,
    "SCMP_ARCH_PPC64LE": 21 | _64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _64,
    "SCMP_ARCH_RISCV64": 243 | _64 | _LE,
    "SCMP_ARCH_LOONGARCH64": 258 | _64 | _LE,
}

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

_NOTIFY_MSG = ("SCMP_ACT_NOTIFY needs a seccomp agent (linux.seccomp.listenerPath), "
               "which dockyard-runc does not support")


# ----------------------------------------------------------------------------- validation


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate(linux_seccomp: dict | None) -> None:
    """Check a profile's structure and vocabulary without touching libseccomp.

    Raises SeccompError listing every problem found, each with its location
    (``syscalls[3].args[0].op``) so the user can find it in config.json.
    """
    if linux_seccomp is None:
        return
    if not isinstance(linux_seccomp, dict):
        raise SeccompError("linux.seccomp must be an object")
    p: list[str] = []
    s = linux_seccomp
    da = s.get("defaultAction")
    if da is None:
        p.append("defaultAction is required")
    else:
        _check_action(p, "defaultAction", da)
    _check_errno(p, "defaultErrnoRet", s.get("defaultErrnoRet"))
    archs = s.get("architectures")
    if archs is not None:
        if not isinstance(archs, list):
            p.append("architectures must be a list")
        else:
            for a in archs:
                if a not in ARCHES:
                    p.append(f"unknown architecture {a!r} (expected one of {', '.join(sorted(ARCHES))})")
    flags = s.get("flags")
    if flags is not None:
        if not isinstance(flags, list):
            p.append("flags must be a list")
        else:
            for f in flags:
                if f not in FLAGS:
                    p.append(f"unsupported seccomp flag {f!r} (supported: {', '.join(FLAGS)})")
    if s.get("listenerPath"):
        p.append(_NOTIFY_MSG)
    calls = s.get("syscalls")
    if calls is not None:
        if not isinstance(calls, list):
            p.append("syscalls must be a list")
            calls = []
        for i, c in enumerate(calls):
            w = f"syscalls[{i}]"
            if not isinstance(c, dict):
                p.append(f"{w} must be an object")
                continue
            names = c.get("names")
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                p.append(f"{w}.names must be a non-empty list of syscall names")
            if "action" not in c:
                p.append(f"{w}.action is required")
            else:
                _check_action(p, f"{w}.action", c["action"])
            _check_errno(p, f"{w}.errnoRet", c.get("errnoRet"))
            args = c.get("args")
            if args is None:
                continue
            if not isinstance(args, list):
                p.append(f"{w}.args must be a list")
                continue
            if len(args) > 6:
                p.append(f"{w}.args has {len(args)} conditions; a syscall has at most 6 arguments")
            for j, a in enumerate(args):
                aw = f"{w}.args[{j}]"
                if not isinstance(a, dict):
                    p.append(f"{aw} must be an object")
                    continue
                idx = a.get("index")
                if not _is_int(idx) or not 0 <= idx <= 5:
                    p.append(f"{aw}.index must be 0..5, not {idx!r}")
                for k in ("value", "valueTwo"):
                    v = a.get(k, 0)
                    if v is None:
                        continue
                    if not _is_int(v) or not 0 <= v < 2**64:
                        p.append(f"{aw}.{k} must be an unsigned 64-bit integer, not {v!r}")
                if a.get("op") not in OPS:
                    p.append(f"{aw}.op {a.get('op')!r} is not one of {', '.join(OPS)}")
    if p:
        raise SeccompError("invalid linux.seccomp: " + "; ".join(p))


def _check_action(p: list[str], where: str, action) -> None:
    if action == "SCMP_ACT_NOTIFY":
        p.append(f"{where}: {_NOTIFY_MSG}")
    elif action not in ACTIONS:
        p.append(f"{where}: unknown action {action!r}")


def _check_errno(p: list[str], where: str, value) -> None:
    if value is None:
        return
    if not _is_int(value) or not 0 <= value <= 4095:
        p.append(f"{where} must be an errno number (0..4095), not {value!r}")


# ----------------------------------------------------------------------------- compile


def _action(name: str, errno_ret: int | None) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return _RET_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return _RET_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return _RET_TRAP
    if name == "SCMP_ACT_ERRNO":
        return _RET_ERRNO | ((_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return _RET_TRACE | ((_errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_LOG":
        return _RET_LOG
    if name == "SCMP_ACT_ALLOW":
        return _RET_ALLOW
    if name == "SCMP_ACT_NOTIFY":
        raise SeccompError(_NOTIFY_MSG)
    raise SeccompError(f"unknown seccomp action {name!r}")


class CompiledFilter:
    """A ready-to-install BPF program plus the seccomp(2) flags to load it with.

    Holds only bytes and ints, so it survives fork and needs nothing but libc
    to load.
    """

    __slots__ = ("bpf", "flags", "syscall_nr", "skipped")

    def __init__(self, bpf: bytes, flags: int, syscall_nr: int, skipped: list[str]):
        self.bpf = bpf
        self.flags = flags
        self.syscall_nr = syscall_nr  # number of seccomp(2) on this machine
        self.skipped = skipped        # syscall names unknown here, left out as runc does

    def load(self) -> None:
        """Install the filter in the calling thread (and, with TSYNC, all threads)."""
        import ctypes

        class SockFprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        n = len(self.bpf) // 8
        buf = ctypes.create_string_buffer(self.bpf, len(self.bpf))
        prog = SockFprog(n, ctypes.addressof(buf))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        flags = self.flags
        while True:
            rc = libc.syscall(ctypes.c_long(self.syscall_nr), ctypes.c_long(1),  # SECCOMP_SET_MODE_FILTER
                              ctypes.c_long(flags), ctypes.byref(prog))
            if rc == 0:
                return
            err = ctypes.get_errno()
            if rc > 0 or (err == _errno.EINVAL and flags & FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]):
                # TSYNC is best effort: a thread that cannot be synchronised
                # (rc = its tid) or a kernel without TSYNC falls back to this thread
                flags &= ~FLAGS["SECCOMP_FILTER_FLAG_TSYNC"]
                continue
            if err == _errno.EACCES:
                raise SeccompError("cannot load the seccomp filter: the process needs no_new_privs "
                                   "(process.noNewPrivileges) or CAP_SYS_ADMIN at this point")
            if err == _errno.EINVAL and flags:
                raise SeccompError(f"cannot load the seccomp filter: this kernel rejects the flags "
                                   f"{[k for k, v in FLAGS.items() if v & flags]}")
            raise SeccompError(f"cannot load the seccomp filter: {os.strerror(err)}")


def compile(linux_seccomp: dict) -> CompiledFilter:  # noqa: A001 - the verb is the clearest name
    """Build the BPF program for a profile with libseccomp."""
    validate(linux_seccomp)
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError) as e:
        raise SeccompError(
            f"seccomp profiles need libseccomp and the pyseccomp package ({e}); inside the container's root "
            "neither is reachable, so the runtime must call seccomp.prepare() before pivot_root") from None
    s = linux_seccomp
    default_errno = s.get("defaultErrnoRet")
    default = _action(s["defaultAction"], default_errno)
    try:
        filt = sc.SyscallFilter(default)
    except OSError as e:
        raise SeccompError(f"libseccomp refused the default action {s['defaultAction']}: {e.strerror}") from None
    # libseccomp would set no_new_privs in its own loader; we export instead,
    # but keep the attribute honest in case someone calls filt.load()
    filt.set_attr(sc.Attr.CTL_NNP, 0)
    for a in s.get("architectures") or []:
        try:
            filt.add_arch(ARCHES[a])
        except OSError as e:
            if e.errno != _errno.EEXIST:
                raise SeccompError(f"libseccomp cannot add architecture {a}: {e.strerror}") from None
    skipped: list[str] = []
    resolved: dict[str, int] = {}
    for i, call in enumerate(s.get("syscalls") or []):
        action = _action(call["action"], call.get("errnoRet"))
        if action == default:
            continue
        conds = call.get("args") or []
        counts: dict[int, int] = {}
        for a in conds:
            counts[a["index"]] = counts.get(a["index"], 0) + 1
        sc_args = [sc.Arg(a["index"], OPS[a["op"]], a.get("value") or 0, a.get("valueTwo") or 0) for a in conds]
        if any(n > 1 for n in counts.values()):
            groups = [[x] for x in sc_args]   # same index twice can only be OR-ed
        else:
            groups = [sc_args]
        for name in call["names"]:
            nr = resolved.get(name)
            if nr is None:
                nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
                resolved[name] = nr
            if nr == -1:  # __NR_SCMP_ERROR: not a syscall libseccomp knows
                skipped.append(name)
                continue
            for g in groups:
                try:
                    filt.add_rule(action, nr, *g)
                except OSError as e:
                    raise SeccompError(f"syscalls[{i}]: libseccomp refused the rule for {name}: {e.strerror}") \
                        from None
    flags = 0
    for f in s.get("flags") or []:
        flags |= FLAGS[f]
    bpf = _export(filt)
    nr = sc.resolve_syscall(sc.Arch.NATIVE, "seccomp")
    return CompiledFilter(bpf, flags, nr, skipped)


def _export(filt) -> bytes:
    fd = os.memfd_create("dockyard-seccomp", os.MFD_CLOEXEC)
    try:
        class _F:
            def fileno(self):
                return fd
        try:
            filt.export_bpf(_F())
        except OSError as e:
            raise SeccompError(f"libseccomp could not generate the filter: {e.strerror}") from None
        size = os.lseek(fd, 0, os.SEEK_END)
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not data or len(data) % 8:
        raise SeccompError("libseccomp produced an empty or malformed filter")
    if len(data) // 8 > 4096:
        raise SeccompError(f"the seccomp filter has {len(data) // 8} instructions; the kernel allows 4096")
    return data


_prepared: dict[str, CompiledFilter] = {}


def _key(linux_seccomp: dict) -> str:
    import json
    return json.dumps(linux_seccomp, sort_keys=True, separators=(",", ":"))


def prepare(linux_seccomp: dict, cache_dir: str | None = None) -> CompiledFilter:
    """Compile now and remember the result for a later :func:`load_filter` of
    the same profile.

    Call it before pivot_root (ideally before forking the container's init,
    whose memory then already holds the program): once the container's root
    is in place, neither pyseccomp nor libseccomp.so can be found any more,
    and load_filter would fail.

    ``cache_dir`` (a root-only directory such as the runtime's state root)
    keeps compiled programs across runs: libseccomp needs ~30 ms for Docker's
    profile, and almost every container uses that same profile. Entries are
    keyed by the profile, the machine and the exact libseccomp file, so an
    upgrade of libseccomp recompiles. The directory must not be writable by
    anyone but root: whoever can write it chooses the filter.
    """
    import ctypes  # noqa: F401  (CompiledFilter.load needs it after pivot_root, out of reach then)
    key = _key(linux_seccomp)
    filt = _prepared.get(key)
    if filt is not None:
        return filt
    path = _cache_path(cache_dir, key) if cache_dir else None
    if path:
        filt = _cache_read(path)
    if filt is None:
        filt = compile(linux_seccomp)
        if path:
            _cache_write(path, filt)
    _prepared[key] = filt
    return filt


_LIB_CANDIDATES = ("/usr/lib/{triplet}/libseccomp.so.2", "/lib/{triplet}/libseccomp.so.2",
                   "/usr/lib64/libseccomp.so.2", "/lib64/libseccomp.so.2", "/usr/lib/libseccomp.so.2",
                   "/usr/local/lib/libseccomp.so.2")


def _libseccomp_identity() -> str | None:
    """Which libseccomp would compile (path, inode, size, mtime), found with a few
    stat calls instead of ctypes.util.find_library, which runs ldconfig."""
    machine = os.uname().machine
    triplet = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "armv7l": "arm-linux-gnueabihf",
               "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu",
               "riscv64": "riscv64-linux-gnu"}.get(machine, machine + "-linux-gnu")
    for cand in _LIB_CANDIDATES:
        cand = cand.format(triplet=triplet)
        try:
            st = os.stat(cand)        # the file the symlinks lead to
        except OSError:
            continue
        # identified by inode rather than by its real path: os.path.realpath
        # would load os on the command path
        return f"{cand}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return None


def _cache_path(cache_dir: str, key: str) -> str | None:
    try:
        from _sha256 import sha256   # the builtin module: `hashlib` loads OpenSSL (~5 ms)
    except ImportError:
        from hashlib import sha256
    ident = _libseccomp_identity()
    if ident is None:
        return None
    h = sha256(f"dockyard-seccomp-v1\0{os.uname().machine}\0{ident}\0{key}".encode()).hexdigest()
    return os.path.join(cache_dir, f"seccomp-{h}.json")


def _cache_read(path: str) -> CompiledFilter | None:
    import base64
    import json
    try:
        with open(path, "rb") as f:
            d = json.loads(f.read())
        bpf = base64.b64decode(d["bpf"])
        if not bpf or len(bpf) % 8:
            return None
        return CompiledFilter(bpf, int(d["flags"]), int(d["syscall_nr"]), list(d["skipped"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cache_write(path: str, filt: CompiledFilter) -> None:
    import base64
    import json
    d = os.path.dirname(path)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps({"bpf": base64.b64encode(filt.bpf).decode(), "flags": filt.flags,
                                     "syscall_nr": filt.syscall_nr, "skipped": filt.skipped}).encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache is an optimisation; failing to write one is not an error


def load_filter(linux_seccomp: dict) -> None:
    """Install a profile in the calling process: the program :func:`prepare`
    built for it if any, else compile it now (which needs libseccomp to be
    reachable, i.e. before pivot_root)."""
    filt = _prepared.get(_key(linux_seccomp)) if _prepared else None
    if filt is None:
        filt = compile(linux_seccomp)
    filt.load()


def features() -> dict:
    """The ``linux.seccomp`` part of ``dockyard-runc features`` (the shape runc
    prints): what profiles this runtime accepts."""
    try:
        import pyseccomp  # noqa: F401
        enabled = True
    except (ImportError, RuntimeError):
        enabled = False
    return {
        "enabled": enabled,
        "actions": sorted(ACTIONS - {"SCMP_ACT_NOTIFY"}),
        "operators": sorted(OPS),
        "archs": sorted(ARCHES),
        "knownFlags": sorted(FLAGS),
        "supportedFlags": sorted(FLAGS),
    }
