"""Linux capabilities: names, numbers, and applying the five OCI sets.

The order in :func:`apply` follows runc's, because each step needs a
privilege the next one may take away:

1. drop from the bounding set (needs CAP_SETPCAP, so while still root);
2. keep capabilities across the uid change (PR_SET_KEEPCAPS), switch user;
3. capset effective/permitted/inheritable;
4. raise ambient capabilities (each must already be permitted and inheritable).
"""

from __future__ import annotations

CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")


_last_cap: list[int] = []


def last_cap() -> int:
    """Highest capability the running kernel knows (read once per process)."""
    if not _last_cap:
        from . import fastos as os
        try:
            fd = os.open("/proc/sys/kernel/cap_last_cap", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _last_cap.append(int(os.read(fd, 64)))
            finally:
                os.close(fd)
        except OSError:
            return max(CAPABILITIES.values())
    return _last_cap[0]


def normalize(name: str) -> str:
    n = name.strip().upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def unknown(names: list[str]) -> list[str]:
    return [n for n in names if normalize(n) not in CAPABILITIES]


def mask(names: list[str] | tuple[str, ...] | None) -> int:
    """Bit mask of the named capabilities that this kernel supports."""
    top = last_cap()
    m = 0
    for n in names or ():
        num = CAPABILITIES[normalize(n)]
        if num <= top:
            m |= 1 << num
    return m


def drop_bounding(keep: int) -> None:
    from . import syscalls
    for num in range(last_cap() + 1):
        if not keep & (1 << num):
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, num)


def set_sets(effective: int, permitted: int, inheritable: int, ambient: int) -> None:
    from . import syscalls
    syscalls.capset(effective, permitted, inheritable)
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for num in range(last_cap() + 1):
        if ambient & (1 << num):
            try:
                syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, num)
            except OSError as e:
                # The kernel raises an ambient capability only if it is both permitted and
                # inheritable; runc's own default spec asks for ambient ones without
                # inheritable, and runc skips what the kernel refuses. So do we.
                if e.errno not in (1, 22):   # EPERM, EINVAL
                    raise


def apply(capabilities: dict | None, switch_user) -> None:
    """Apply OCI ``process.capabilities`` around ``switch_user()`` (runc's order).

    A missing ``capabilities`` object means no capabilities at all, as in runc.
    """
    from . import syscalls
    c = capabilities or {}
    # What we do not hold ourselves (a runtime started inside a container or
    # with a reduced bounding set) cannot be granted: ask only for the rest,
    # as if the kernel did not know those capabilities.
    _eff, held, _inh = syscalls.capget()
    masks = {s: mask(c.get(s)) & held for s in SETS}
    drop_bounding(masks["bounding"])
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    switch_user()
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
    set_sets(masks["effective"], masks["permitted"], masks["inheritable"], masks["ambient"])
