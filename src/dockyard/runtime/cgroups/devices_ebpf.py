"""Device access control on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices.allow/deny files. Instead the kernel runs an eBPF
program attached to the cgroup each time a process in it opens or mknods a
device node; the program sees (type, access, major, minor) and returns 1 to
allow or 0 to refuse. We translate the OCI rule list into such a program,
instruction by instruction (a few dozen at most, so no compiler or libbpf is
needed), load it with bpf(BPF_PROG_LOAD) and attach it with
bpf(BPF_PROG_ATTACH) through ctypes.

Rule semantics (the same as the v1 controller and runc): rules apply in
order, so the *last* matching rule decides; a wildcard rule (type "a", any
major/minor) resets everything before it and sets the default. An allow rule
matches a request whose access bits are all within the rule's; a deny rule
matches a request that asks for any of its bits. Without a wildcard the
default is to allow, as a fresh v1 cgroup does.

Updating (``docker update``) attaches the new program before detaching the
old ones, so there is no instant in which the container runs unrestricted or
fully denied.
"""

from __future__ import annotations

import ctypes
import os
import struct

from ._common import CgroupError, is_allow_all

# struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
_DEV_BLOCK, _DEV_CHAR = 1, 2
_ACC = {"m": 1, "r": 2, "w": 4}

_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_PROG_DETACH = 9
_BPF_PROG_GET_FD_BY_ID = 13
_BPF_PROG_QUERY = 16
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2

_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280,
                "i686": 357, "loongarch64": 280}

# instruction encodings (include/uapi/linux/bpf.h, bpf_common.h)
_LDX_MEM_W = 0x61     # dst = *(u32 *)(src + off)
_ALU64_MOV_X = 0xBF   # dst = src
_ALU64_MOV_K = 0xB7   # dst = imm
_ALU32_AND_K = 0x54   # dst &= imm
_ALU32_RSH_K = 0x74   # dst >>= imm
_JMP_JNE_K = 0x55     # if dst != imm: pc += off
_JMP_JEQ_K = 0x15     # if dst == imm: pc += off
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _is_wildcard(rule: dict) -> bool:
    return rule.get("type") in (None, "a") and rule.get("major") in (None, -1) and rule.get("minor") in (None, -1)


def effective_rules(rules: list[dict]) -> tuple[bool, list[dict]]:
    """(default_allow, the rules after the last wildcard)."""
    default_allow = True
    kept: list[dict] = []
    for r in rules:
        if _is_wildcard(r):
            default_allow = bool(r.get("allow"))
            kept = []
        else:
            kept.append(r)
    return default_allow, kept


def build_program(rules: list[dict]) -> bytes:
    """The eBPF instructions for an OCI device rule list."""
    default_allow, kept = effective_rules(rules)
    prog = [
        _insn(_LDX_MEM_W, dst=2, src=1, off=0),   # r2 = access_type
        _insn(_ALU32_AND_K, dst=2, imm=0xFFFF),   # r2 = type
        _insn(_LDX_MEM_W, dst=3, src=1, off=0),   # r3 = access_type
        _insn(_ALU32_RSH_K, dst=3, imm=16),       # r3 = access
        _insn(_LDX_MEM_W, dst=4, src=1, off=4),   # r4 = major
        _insn(_LDX_MEM_W, dst=5, src=1, off=8),   # r5 = minor
    ]
    # last matching rule wins: test them from the last to the first
    for r in reversed(kept):
        block: list[tuple] = []   # (code, dst, src, imm, jumps_to_next_block)
        t = r.get("type")
        if t in ("c", "b"):
            block.append((_JMP_JNE_K, 2, 0, _DEV_CHAR if t == "c" else _DEV_BLOCK, True))
        maj, mnr = r.get("major"), r.get("minor")
        if maj not in (None, -1):
            block.append((_JMP_JNE_K, 4, 0, maj, True))
        if mnr not in (None, -1):
            block.append((_JMP_JNE_K, 5, 0, mnr, True))
        acc = 0
        for ch in r.get("access") or "rwm":
            acc |= _ACC[ch]
        if acc != 7:
            block.append((_ALU64_MOV_X, 1, 3, 0, False))               # r1 = access
            if r.get("allow"):
                block.append((_ALU32_AND_K, 1, 0, ~acc & 0xFFFF, False))  # bits outside the rule?
                block.append((_JMP_JNE_K, 1, 0, 0, True))
            else:
                block.append((_ALU32_AND_K, 1, 0, acc, False))            # any of the rule's bits?
                block.append((_JMP_JEQ_K, 1, 0, 0, True))
        block.append((_ALU64_MOV_K, 0, 0, 1 if r.get("allow") else 0, False))
        block.append((_EXIT, 0, 0, 0, False))
        n = len(block)
        for i, (code, dst, src, imm, jumps) in enumerate(block):
            prog.append(_insn(code, dst=dst, src=src, off=(n - i - 1) if jumps else 0, imm=imm))
    prog.append(_insn(_ALU64_MOV_K, dst=0, imm=1 if default_allow else 0))
    prog.append(_insn(_EXIT))
    return b"".join(prog)


# ----------------------------------------------------------------------------- bpf(2)


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    nr = _BPF_SYSCALL.get(os.uname().machine)
    if nr is None:
        raise CgroupError(f"device rules on cgroup v2: unknown bpf syscall number for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    rc = libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), attr, ctypes.c_long(len(attr)))
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc


def _load(insns: bytes) -> int:
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQIIQ", attr, 0, _BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                     ctypes.addressof(code), ctypes.addressof(license_), 1, len(log), ctypes.addressof(log))
    attr[48:56] = b"dockyard"  # prog_name, shows in bpftool
    try:
        return _bpf(_BPF_PROG_LOAD, attr)
    except OSError as e:
        verifier = log.value.decode(errors="replace").strip()
        raise CgroupError(f"device rules on cgroup v2: the kernel refused the eBPF device program: {e.strerror}"
                          + (f" ({verifier.splitlines()[-1]})" if verifier else "")) from None


def _attached(cgroup_fd: int) -> list[int]:
    ids = (ctypes.c_uint32 * 64)()
    attr = ctypes.create_string_buffer(64)
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, _BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    _bpf(_BPF_PROG_QUERY, attr)
    cnt = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:cnt])


def _prog_fd(prog_id: int) -> int:
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(_BPF_PROG_GET_FD_BY_ID, attr)


def _attach(cgroup_fd: int, prog_fd: int, cmd: int = _BPF_PROG_ATTACH) -> None:
    attr = ctypes.create_string_buffer(32)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, _BPF_CGROUP_DEVICE,
                     _BPF_F_ALLOW_MULTI if cmd == _BPF_PROG_ATTACH else 0)
    _bpf(cmd, attr)


def apply(directory: str, rules: list[dict]) -> None:
    """Make ``rules`` the device policy of the cgroup at ``directory``."""
    if is_allow_all(rules):
        # nothing to enforce: drop what an earlier apply attached (best effort,
        # so hosts without cgroup BPF still run unrestricted containers)
        try:
            _detach_all(directory)
        except (OSError, CgroupError):
            pass
        return
    prog_fd = _load(build_program(rules))
    try:
        cg_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        os.close(prog_fd)
        raise CgroupError(f"device rules: cannot open cgroup {directory}: {e.strerror}") from None
    try:
        try:
            old = _attached(cg_fd)
        except OSError:
            old = []
        try:
            _attach(cg_fd, prog_fd)
        except OSError as e:
            raise CgroupError(f"device rules on cgroup v2: cannot attach the eBPF device program to "
                              f"{directory}: {e.strerror}") from None
        for prog_id in old:
            try:
                fd = _prog_fd(prog_id)
            except OSError:
                continue
            try:
                _attach(cg_fd, fd, _BPF_PROG_DETACH)
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        os.close(cg_fd)
        os.close(prog_fd)  # the attachment keeps the program alive with the cgroup


def _detach_all(directory: str) -> None:
    cg_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for prog_id in _attached(cg_fd):
            fd = _prog_fd(prog_id)
            try:
                _attach(cg_fd, fd, _BPF_PROG_DETACH)
            finally:
                os.close(fd)
    finally:
        os.close(cg_fd)


def attached_count(directory: str) -> int:
    """How many device programs are attached (for tests and diagnostics)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return len(_attached(fd))
    finally:
        os.close(fd)
