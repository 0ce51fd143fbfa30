"""Docker's default seccomp policy, produced as an OCI ``linux.seccomp`` object.

The policy is an allowlist: every syscall not named here fails with EPERM
(``SCMP_ACT_ERRNO`` with errno 1). Docker's reasoning, which we follow so that
images behave the same under Dockyard:

* Ordinary process, file, memory, signal, socket and timer calls are always
  allowed; what remains outside is what can reach the host kernel's global
  state: loading modules, rebooting, setting the clock, mounting, new
  namespaces, kernel keyrings, BPF, perf, swap, accounting, and obsolete or
  rarely audited interfaces.
* Calls that the kernel itself guards with a capability are allowed exactly
  when the container is granted that capability (``--cap-add SYS_TIME``
  enables ``settimeofday``), so seccomp never contradicts the capability set.
* Without CAP_SYS_ADMIN, ``clone`` is allowed only without namespace flags,
  and ``clone3`` (whose flags live in memory, out of seccomp's reach) fails
  with ENOSYS so that libc falls back to ``clone``.
* ``personality`` is limited to the values that programs use in practice
  (Linux, UNAME26, 32-bit Linux and querying), and ``socket`` to address
  families that are commonly compiled in and reviewed.

The tables below are Dockyard's own structure, written from an understanding
of moby's profile (profiles/seccomp/default.json); :func:`default_profile`
assembles them for a capability set and this machine's architecture.
"""

from __future__ import annotations

import errno
import os

# --------------------------------------------------------------------------- always allowed

_FILES = """
    access faccessat faccessat2 open openat openat2 creat close close_range read readv pread64 preadv
    preadv2 write writev pwrite64 pwritev pwritev2 lseek _llseek dup dup2 dup3 fcntl fcntl64 flock
    fsync fdatasync sync syncfs sync_file_range fallocate fadvise64 fadvise64_64 readahead
    truncate truncate64 ftruncate ftruncate64 copy_file_range sendfile sendfile64 splice tee vmsplice
    stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat statx statfs statfs64 fstatfs fstatfs64
    getdents getdents64 getcwd chdir fchdir mkdir mkdirat mknod mknodat rmdir link linkat symlink symlinkat
    unlink unlinkat rename renameat renameat2 readlink readlinkat umask
    chmod fchmod fchmodat fchmodat2 chown chown32 fchown fchown32 fchownat lchown lchown32
    utime utimes utimensat utimensat_time64 futimesat name_to_handle_at
    getxattr getxattrat lgetxattr fgetxattr setxattr setxattrat lsetxattr fsetxattr listxattr
    listxattrat llistxattr flistxattr removexattr removexattrat lremovexattr fremovexattr
    ioctl pipe pipe2 memfd_create memfd_secret statmount listmount
    inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
"""

_MEMORY = """
    brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 mlockall munlock munlockall
    remap_file_pages membarrier pkey_alloc pkey_free pkey_mprotect map_shadow_stack mseal cachestat
"""

_PROCESSES = """
    fork vfork execve execveat exit exit_group wait4 waitid waitpid kill tkill tgkill
    pidfd_open pidfd_send_signal process_mrelease
    getpid getppid gettid getpgid getpgrp setpgid getsid setsid
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid getresuid32
    getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid setreuid32
    setregid setregid32 setresuid setresuid32 setresgid setresgid32 setfsuid setfsuid32 setfsgid
    setfsgid32 setgroups setgroups32 capget capset prctl seccomp
    getrlimit setrlimit ugetrlimit prlimit64 getrusage getpriority setpriority ioprio_get ioprio_set
    sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr sched_getparam
    sched_setparam sched_getscheduler sched_setscheduler sched_get_priority_max sched_get_priority_min
    sched_rr_get_interval sched_rr_get_interval_time64 getcpu
    set_tid_address set_robust_list get_robust_list set_thread_area get_thread_area rseq restart_syscall
    futex futex_time64 futex_wait futex_wake futex_waitv futex_requeue
    landlock_create_ruleset landlock_add_rule landlock_restrict_self uname sysinfo uretprobe
    riscv_hwprobe
"""

_SIGNALS_TIME_EVENTS = """
    rt_sigaction rt_sigprocmask rt_sigpending rt_sigsuspend rt_sigreturn rt_sigqueueinfo
    rt_tgsigqueueinfo rt_sigtimedwait rt_sigtimedwait_time64 sigaltstack sigprocmask sigreturn
    signalfd signalfd4 pause alarm
    time times gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
    clock_nanosleep clock_nanosleep_time64 nanosleep adjtimex clock_adjtime clock_adjtime64
    getitimer setitimer timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
    timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
    timerfd_settime64 eventfd eventfd2
    poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2
    getrandom
"""

_SOCKETS_IPC = """
    socketpair socketcall bind connect listen accept accept4 shutdown getsockname getpeername
    getsockopt setsockopt send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64
    ipc msgget msgctl msgsnd msgrcv semget semctl semop semtimedop semtimedop_time64
    shmget shmctl shmat shmdt mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive
    mq_timedreceive_time64 mq_notify mq_getsetattr
"""

ALWAYS_ALLOWED: tuple[str, ...] = tuple(
    sorted(set((_FILES + _MEMORY + _PROCESSES + _SIGNALS_TIME_EVENTS + _SOCKETS_IPC).split())))

# reading or writing another process's memory: allowed by default since
# kernel 4.8, where seccomp checks can no longer be bypassed through ptrace
PTRACE_FAMILY = ("ptrace", "process_vm_readv", "process_vm_writev")
PTRACE_MIN_KERNEL = (4, 8)

# --------------------------------------------------------------------------- per architecture
# keys are Go's GOARCH names, which is how Docker describes architectures

ARCH_ONLY: dict[str, tuple[str, ...]] = {
    "amd64": ("arch_prctl", "modify_ldt"),
    "x32": ("arch_prctl", "modify_ldt"),
    "386": ("modify_ldt",),
    "arm": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"),
    "arm64": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
              "set_tls"),
    "ppc64le": ("sync_file_range2", "swapcontext"),
    "s390": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "s390x": ("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"),
    "riscv64": ("riscv_flush_icache",),
}

# the seccomp architectures a filter covers on each machine: the native one
# plus the compat ABIs a binary could switch to
SCMP_ARCHES: dict[str, tuple[str, ...]] = {
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "arm": ("SCMP_ARCH_ARM",),
    "386": ("SCMP_ARCH_X86",),
    "mips64": ("SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "mips64le": ("SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
    "loong64": ("SCMP_ARCH_LOONGARCH64",),
}

_MACHINE_TO_GOARCH = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "386",
    "i386": "386", "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
    "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64",
}

# --------------------------------------------------------------------------- granted by capabilities
# a call listed under a capability is allowed when the container has it

BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": (
        # mounting and the new mount API
        "mount", "umount", "umount2", "mount_setattr", "move_mount", "open_tree",
        "fsopen", "fsconfig", "fsmount", "fspick", "quotactl", "quotactl_fd",
        # namespaces, including clone/clone3 with any flags
        "unshare", "setns", "clone", "clone3",
        # host-wide names and kernel facilities
        "sethostname", "setdomainname", "syslog", "bpf", "perf_event_open", "fanotify_init",
        "lookup_dcookie", "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules",
    ),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
                       "process_madvise"),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind"),
    "CAP_SYSLOG": ("syslog",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
}

# --------------------------------------------------------------------------- argument rules

# clone flags that create namespaces; without CAP_SYS_ADMIN none may be set
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                   | CLONE_NEWPID | CLONE_NEWNET)

# personality(2) values that are allowed
PERSONALITIES = {
    "PER_LINUX": 0x0000,
    "UNAME26": 0x0008,
    "PER_LINUX32": 0x20000,
    "PER_LINUX32|UNAME26": 0x20008,
    "query (0xffffffff)": 0xFFFF_FFFF,
}

# socket(2) address families: every family below 12 (unspec, unix, inet,
# ax25, ipx, appletalk, netrom, bridge, atmpvc, x25, inet6, rose) and these.
# Left out: DECnet 12, Econet 19, ATM SVC 20, IrDA 23, WANPIPE 25, ISDN 34,
# CAIF 37, AF_ALG 38, vsock 40 and anything newer than MCTP.
SOCKET_FAMILIES_BELOW = 12
SOCKET_FAMILIES_EXTRA = {
    "AF_NETBEUI": 13, "AF_SECURITY": 14, "AF_KEY": 15, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_ASH": 18,
    "AF_RDS": 21, "AF_SNA": 22, "AF_PPPOX": 24, "AF_LLC": 26, "AF_IB": 27, "AF_MPLS": 28, "AF_CAN": 29,
    "AF_TIPC": 30, "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33, "AF_PHONET": 35,
    "AF_IEEE802154": 36, "AF_NFC": 39, "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44,
    "AF_MCTP": 45,
}


def _norm_cap(c: str) -> str:
    c = c.strip().upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def _goarch(machine: str | None = None) -> str:
    machine = machine or os.uname().machine
    return _MACHINE_TO_GOARCH.get(machine, machine)


def _kernel_version(release: str | None = None) -> tuple[int, int]:
    release = release or os.uname().release
    parts = []
    for piece in release.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
        parts.append(int(digits))
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]


def _arg(index: int, value: int, op: str, value_two: int = 0) -> dict:
    d = {"index": index, "value": value, "op": op}
    if value_two:
        d["valueTwo"] = value_two
    return d


def default_profile(capabilities: list[str], *, machine: str | None = None,
                    kernel_release: str | None = None) -> dict:
    """Docker's default seccomp profile for a container with ``capabilities``
    (names with or without the ``CAP_`` prefix) on this machine, as OCI
    ``linux.seccomp``."""
    caps = {_norm_cap(c) for c in capabilities or []}
    arch = _goarch(machine)
    allowed: list[str] = list(ALWAYS_ALLOWED)
    if _kernel_version(kernel_release) >= PTRACE_MIN_KERNEL:
        allowed += PTRACE_FAMILY
    allowed += ARCH_ONLY.get(arch, ())
    for cap, names in BY_CAPABILITY.items():
        if cap in caps:
            allowed += names
    seen: set[str] = set()
    names = [n for n in allowed if not (n in seen or seen.add(n))]

    syscalls: list[dict] = [{"names": names, "action": "SCMP_ACT_ALLOW"}]

    for value in PERSONALITIES.values():
        syscalls.append({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                         "args": [_arg(0, value, "SCMP_CMP_EQ")]})

    syscalls.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                     "args": [_arg(0, SOCKET_FAMILIES_BELOW, "SCMP_CMP_LT")]})
    for fam in sorted(SOCKET_FAMILIES_EXTRA.values()):
        syscalls.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                         "args": [_arg(0, fam, "SCMP_CMP_EQ")]})

    if "CAP_SYS_ADMIN" not in caps:
        # s390 passes clone's flags as the second argument
        flags_index = 1 if arch in ("s390", "s390x") else 0
        syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                         "args": [_arg(flags_index, NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0)]})
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})

    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": list(SCMP_ARCHES.get(arch, ())),
        "syscalls": syscalls,
    }


# --------------------------------------------------------------------------- Docker-format profiles

_GOARCH_TO_SCMP = {
    "amd64": "SCMP_ARCH_X86_64", "386": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
    "mips64": "SCMP_ARCH_MIPS64", "mips64le": "SCMP_ARCH_MIPSEL64", "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390x": "SCMP_ARCH_S390X", "riscv64": "SCMP_ARCH_RISCV64", "loong64": "SCMP_ARCH_LOONGARCH64",
}


class ProfileError(ValueError):
    """A Docker-format seccomp profile (``--security-opt seccomp=FILE``) is malformed."""


def _parse_kernel(v: str) -> tuple[int, int]:
    try:
        major, _, minor = str(v).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        raise ProfileError(f"minKernel {v!r} is not a kernel version like '4.8'") from None


def oci_from_docker(profile: dict, capabilities: list[str], *, machine: str | None = None,
                    kernel_release: str | None = None) -> dict:
    """Turn a profile in Docker's file format into OCI ``linux.seccomp`` for
    one container.

    Docker's format describes all architectures and capability sets at once:
    ``archMap`` lists compat ABIs per native architecture, and each syscall
    group may carry ``includes``/``excludes`` conditions on the container's
    capabilities, the machine's architecture and the kernel version. The OCI
    form is what remains for this container on this machine. (This is how
    ``docker run --security-opt seccomp=profile.json`` is applied.)
    """
    if not isinstance(profile, dict):
        raise ProfileError("a seccomp profile must be a JSON object")
    caps = {_norm_cap(c) for c in capabilities or []}
    arch = _goarch(machine)
    kernel = _kernel_version(kernel_release)
    if profile.get("architectures") and profile.get("archMap"):
        raise ProfileError("a seccomp profile cannot have both 'architectures' and 'archMap'")
    out: dict = {"defaultAction": profile.get("defaultAction")}
    if not out["defaultAction"]:
        raise ProfileError("the seccomp profile has no defaultAction")
    for key in ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata"):
        if profile.get(key) is not None:
            out[key] = profile[key]
    arches: list[str] = list(profile.get("architectures") or [])
    native = _GOARCH_TO_SCMP.get(arch)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches.append(entry["architecture"])
            arches.extend(entry.get("subArchitectures") or [])
    out["architectures"] = arches
    syscalls = []
    for i, call in enumerate(profile.get("syscalls") or []):
        if not isinstance(call, dict):
            raise ProfileError(f"syscalls[{i}] must be an object")
        if call.get("name") and call.get("names"):
            raise ProfileError(f"syscalls[{i}] has both 'name' and 'names'")
        inc, exc = call.get("includes") or {}, call.get("excludes") or {}
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("caps") and not all(_norm_cap(c) in caps for c in inc["caps"]):
            continue
        if inc.get("minKernel") and kernel < _parse_kernel(inc["minKernel"]):
            continue
        if exc.get("arches") and arch in exc["arches"]:
            continue
        if exc.get("caps") and any(_norm_cap(c) in caps for c in exc["caps"]):
            continue
        if exc.get("minKernel") and kernel >= _parse_kernel(exc["minKernel"]):
            continue
        names = call.get("names") or ([call["name"]] if call.get("name") else [])
        entry = {"names": list(names), "action": call.get("action")}
        for key in ("errnoRet", "args"):
            if call.get(key) is not None:
                entry[key] = call[key]
        syscalls.append(entry)
    out["syscalls"] = syscalls
    return out
