"""Seccomp filters loaded into real forked processes.

Each test forks; the child installs the filter, tries syscalls and reports
the outcome through a pipe, then leaves with os._exit (a filtered Python must
not run its normal shutdown). The parent judges.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from dockyard.oci.seccomp_default import default_profile
from dockyard.runtime import seccomp
from dockyard.runtime.seccomp import SeccompError

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
X86 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"] if os.uname().machine == "x86_64" else []

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"x86_64": {"clone": 56, "clone3": 435, "settimeofday": 164},
      "aarch64": {"clone": 220, "clone3": 435, "settimeofday": 170}}.get(os.uname().machine, {})


def errno_of(fn) -> int:
    """0 if fn() succeeded, else the errno it failed with."""
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno


def c_errno(rc: int) -> int:
    return ctypes.get_errno() if rc == -1 else 0


def in_child(profile, probe, compiled=True):
    """Fork; the child loads ``profile`` then runs ``probe()`` and sends back
    its JSON result. Returns (result or None, wait status)."""
    filt = seccomp.compile(profile) if compiled else None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if filt is not None:
                filt.load()
            else:
                seccomp.load_filter(profile)
            out = json.dumps(probe()).encode()
        except BaseException as e:  # report everything, never return into pytest
            out = json.dumps({"exception": repr(e)}).encode()
        try:
            os.write(w, out)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    return (json.loads(data) if data else None), status


def test_errno_rule_denies_mkdir_only(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": X86,
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    target = tmp_path / "d"

    def probe():
        return {"mkdir": errno_of(lambda: os.mkdir(target)),
                "write": errno_of(lambda: (tmp_path / "f").write_text("x")),
                "listdir": errno_of(lambda: os.listdir(tmp_path))}

    res, status = in_child(profile, probe)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert res == {"mkdir": errno.EPERM, "write": 0, "listdir": 0}
    assert not target.exists()
    assert (tmp_path / "f").read_text() == "x"


def test_load_filter_one_call(tmp_path):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}]}
    res, _ = in_child(profile, lambda: errno_of(lambda: os.mkdir(tmp_path / "d")), compiled=False)
    assert res == errno.EROFS


def test_argument_rules_socket_family():
    # deny socket(AF_INET, ...) only: AF_UNIX keeps working
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": X86, "syscalls": [
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"}]}]}

    def probe():
        return {"inet": errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
                "unix": errno_of(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()),
                "inet6": errno_of(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close())}

    res, _ = in_child(profile, probe)
    assert res["inet"] == errno.EACCES
    assert res["unix"] == 0
    assert res["inet6"] in (0, errno.EAFNOSUPPORT)


def test_argument_rules_or_on_same_index_and_on_different_indexes():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        # two conditions on arg 0: either one denies (OR)
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": socket.AF_INET6, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": socket.AF_PACKET, "op": "SCMP_CMP_EQ"}]},
        # conditions on arg 0 and arg 1: both must hold (AND)
        {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTSUP,
         "args": [{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
                  {"index": 1, "value": 0xF, "valueTwo": socket.SOCK_DGRAM, "op": "SCMP_CMP_MASKED_EQ"}]},
    ]}

    def probe():
        return {
            "inet6": errno_of(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()),
            "packet": errno_of(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()),
            "tcp": errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
            "udp": errno_of(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC).close()),
        }

    res, _ = in_child(profile, probe)
    assert res == {"inet6": errno.EPERM, "packet": errno.EPERM, "tcp": 0, "udp": errno.ENOTSUP}


def test_personality_argument_rule():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]}]}

    def probe():
        rc = libc.personality(ctypes.c_ulong(0xFFFFFFFF))
        e1 = c_errno(rc)
        rc2 = libc.personality(ctypes.c_ulong(0))
        return [e1, rc2]

    res, _ = in_child(profile, probe)
    assert res[0] == errno.EPERM
    assert res[1] >= 0


@pytest.mark.parametrize("op, value, denied, allowed", [
    ("SCMP_CMP_NE", 5, 6, 5),
    ("SCMP_CMP_LT", 5, 4, 5),
    ("SCMP_CMP_LE", 5, 5, 6),
    ("SCMP_CMP_GE", 5, 5, 4),
    ("SCMP_CMP_GT", 5, 6, 5),
])
def test_comparison_operators(op, value, denied, allowed):
    # getpriority(which, who): filter on arg1 with an invalid "which" so
    # the allowed call fails with EINVAL and the denied one with EPERM
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": value, "op": op}]}]}

    def probe():
        out = []
        for who in (denied, allowed):
            ctypes.set_errno(0)
            rc = libc.getpriority(ctypes.c_int(99), ctypes.c_uint(who))
            out.append(ctypes.get_errno() if rc == -1 else 0)
        return out

    res, _ = in_child(profile, probe)
    assert res == [errno.EPERM, errno.EINVAL]


def test_default_errno_with_allowlist(tmp_path):
    allow = ["write", "exit", "exit_group", "getpid", "brk", "mmap", "munmap", "mremap", "mprotect",
             "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "futex", "madvise"]
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES, "architectures": X86,
               "syscalls": [{"names": allow, "action": "SCMP_ACT_ALLOW"}]}

    def probe():
        return {"getpid": os.getpid() > 0,
                "openat": errno_of(lambda: os.close(os.open("/", os.O_RDONLY))),
                "getcwd": errno_of(os.getcwd),
                "mkdir": errno_of(lambda: os.mkdir(tmp_path / "x"))}

    res, status = in_child(profile, probe)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert res == {"getpid": True, "openat": errno.EACCES, "getcwd": errno.EACCES, "mkdir": errno.EACCES}


def test_kill_process_action():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    res, status = in_child(profile, lambda: os.mkdir("/nonexistent-dir/x"))
    assert res is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_trap_and_kill_actions():
    for action in ("SCMP_ACT_TRAP", "SCMP_ACT_KILL"):
        profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getcwd"], "action": action}]}
        res, status = in_child(profile, os.getcwd)
        assert res is None, action
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, action


def test_log_trace_and_flags():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
               "syscalls": [
                   {"names": ["getcwd"], "action": "SCMP_ACT_LOG"},
                   # without a tracer attached the kernel fails a traced call with ENOSYS
                   {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE"},
               ]}
    res, _ = in_child(profile, lambda: [errno_of(os.getcwd), errno_of(lambda: os.mkdir("/nonexistent-dir/x"))])
    assert res == [0, errno.ENOSYS]


def test_unknown_syscall_names_are_skipped():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall_here", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    filt = seccomp.compile(profile)
    assert filt.skipped == ["no_such_syscall_here"]


def test_rule_with_default_action_is_dropped():
    # libseccomp refuses such a rule; runc ignores it, and so do we
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}
    seccomp.compile(profile)


def test_docker_default_profile_then_exec_busybox():
    profile = default_profile(DOCKER_CAPS)
    seccomp.validate(profile)
    assert NR, "test knows syscall numbers for x86_64 and aarch64 only"

    def probe():
        res = {}
        res["unshare"] = c_errno(libc.unshare(ctypes.c_int(0x00020000)))  # CLONE_NEWNS
        res["mount"] = c_errno(libc.mount(b"none", b"/mnt", b"tmpfs", ctypes.c_ulong(0), None))
        res["umount"] = c_errno(libc.umount2(b"/proc", 0))
        # clone with a namespace flag is refused; a plain fork works
        rc = libc.syscall(ctypes.c_long(NR["clone"]), ctypes.c_long(0x10000000 | signal.SIGCHLD),
                          ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
        if rc == 0:
            os._exit(99)  # the filter let us through: a child we must not keep
        res["clone_newuser"] = c_errno(rc)
        rc = libc.syscall(ctypes.c_long(NR["clone3"]), ctypes.c_long(0), ctypes.c_long(0))
        res["clone3"] = c_errno(rc)
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        res["fork"] = os.waitpid(pid, 0)[1] >> 8
        res["personality_query"] = libc.personality(ctypes.c_ulong(0xFFFFFFFF)) >= 0
        # settimeofday(NULL, NULL) is a no-op for the kernel, refused by the filter
        res["settimeofday"] = c_errno(libc.syscall(ctypes.c_long(NR["settimeofday"]), ctypes.c_long(0),
                                                   ctypes.c_long(0)))
        res["reboot"] = c_errno(libc.reboot(ctypes.c_int(0)))  # would need CAP_SYS_BOOT + seccomp allow
        return res

    res, status = in_child(profile, probe)
    assert res == {"unshare": errno.EPERM, "mount": errno.EPERM, "umount": errno.EPERM,
                   "clone_newuser": errno.EPERM, "clone3": errno.ENOSYS, "fork": 7,
                   "personality_query": True, "settimeofday": errno.EPERM, "reboot": errno.EPERM}

    # the real thing: a filtered process execs a static busybox, which runs
    filt = seccomp.compile(profile)
    pid = os.fork()
    if pid == 0:
        try:
            filt.load()
            os.execv("/bin/busybox", ["true"])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    # and busybox's own unshare applet is refused
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            filt.load()
            os.execv("/bin/busybox", ["unshare", "-m", "/bin/busybox", "true"])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) not in (0, 127)


def test_docker_default_profile_follows_capabilities():
    base = default_profile(DOCKER_CAPS)
    allowed = set(base["syscalls"][0]["names"])
    assert {"mount", "unshare", "reboot", "init_module", "settimeofday", "bpf", "keyctl"}.isdisjoint(allowed)
    assert {"read", "execve", "chroot", "ptrace", "arch_prctl" if os.uname().machine == "x86_64" else "read"} <= allowed
    admin = default_profile(DOCKER_CAPS + ["SYS_ADMIN", "CAP_SYS_TIME"])
    allowed = set(admin["syscalls"][0]["names"])
    assert {"mount", "unshare", "setns", "clone", "clone3", "settimeofday", "clock_settime"} <= allowed
    # with CAP_SYS_ADMIN, clone is not restricted and clone3 is not ENOSYS
    assert not any(s["names"] == ["clone3"] for s in admin["syscalls"])
    assert any(s["names"] == ["clone3"] and s["errnoRet"] == errno.ENOSYS for s in base["syscalls"])
    no_chroot = default_profile([c for c in DOCKER_CAPS if c != "CAP_SYS_CHROOT"])
    assert "chroot" not in no_chroot["syscalls"][0]["names"]
    assert base["defaultAction"] == "SCMP_ACT_ERRNO" and base["defaultErrnoRet"] == errno.EPERM
    s390 = default_profile([], machine="s390x")
    assert [s["args"][0]["index"] for s in s390["syscalls"] if s["names"] == ["clone"]] == [1]
    assert "ptrace" not in default_profile([], kernel_release="4.4.0")["syscalls"][0]["names"]


@pytest.mark.parametrize("profile, words", [
    ("nope", "must be an object"),
    ({}, "defaultAction is required"),
    ({"defaultAction": "SCMP_ACT_EXPLODE"}, "unknown action 'SCMP_ACT_EXPLODE'"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "seccomp agent"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}, "unknown architecture"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}, "unsupported seccomp flag"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}, r"syscalls\[0\].names"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"]}]}, r"syscalls\[0\].action is required"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]},
     "seccomp agent"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                                                       "errnoRet": -3}]}, "errnoRet"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     r"args\[0\].index"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     r"args\[0\].op"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                                                       "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
     "unsigned 64-bit"),
])
def test_validate_rejects_malformed(profile, words):
    with pytest.raises(SeccompError, match=words):
        seccomp.validate(profile)
    with pytest.raises(SeccompError):
        seccomp.compile(profile)


def test_imports_stay_light():
    code = ("import sys; import dockyard.runtime.seccomp, dockyard.runtime.cgroups; "
            "print('pyseccomp' in sys.modules, 'ctypes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.split() == ["False", "False"]


def test_prepare_then_load_without_libseccomp(tmp_path):
    """After pivot_root libseccomp is unreachable: a prepared profile must load
    without importing pyseccomp in the child."""
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDQUOT}]}
    seccomp.prepare(dict(profile))  # an equal profile, not the same object

    def probe():
        sys.modules["pyseccomp"] = None  # any import of it now fails
        try:
            seccomp.load_filter(profile)
        finally:
            del sys.modules["pyseccomp"]
        return errno_of(lambda: os.mkdir(tmp_path / "d"))

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            out = json.dumps(probe()).encode()
        except BaseException as e:
            out = json.dumps(repr(e)).encode()
        os.write(w, out)
        os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    assert json.loads(data) == errno.EDQUOT


def test_features_lists_vocabulary():
    f = seccomp.features()
    assert f["enabled"] is True
    assert "SCMP_ACT_ERRNO" in f["actions"] and "SCMP_ACT_NOTIFY" not in f["actions"]
    assert "SCMP_CMP_MASKED_EQ" in f["operators"]
    assert "SCMP_ARCH_X86_64" in f["archs"]


def test_docker_format_profile_conversion():
    from dockyard.oci.seccomp_default import ProfileError, oci_from_docker

    docker_fmt = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["SYS_ADMIN"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        ],
    }
    plain = oci_from_docker(docker_fmt, ["CAP_CHOWN"], machine="x86_64", kernel_release="6.1.0-13-amd64")
    assert plain["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert [c["names"] for c in plain["syscalls"]] == [["read", "write"], ["clone3"], ["arch_prctl"], ["ptrace"]]
    seccomp.validate(plain)
    admin = oci_from_docker(docker_fmt, ["SYS_ADMIN"], machine="aarch64", kernel_release="4.4.0")
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [c["names"] for c in admin["syscalls"]] == [["read", "write"], ["mount"]]
    with pytest.raises(ProfileError, match="both"):
        oci_from_docker({**docker_fmt, "architectures": ["SCMP_ARCH_X86_64"]}, [])
    # the default profile expressed through our tables converts to something loadable
    seccomp.compile(default_profile(DOCKER_CAPS))


def test_prepare_with_cache_dir(tmp_path):
    """A second runtime process finds the compiled program on disk and loads it
    without importing pyseccomp at all."""
    cache = tmp_path / "cache"
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EMLINK}]}
    first = seccomp.prepare(profile, cache_dir=str(cache))
    files = list(cache.iterdir())
    assert len(files) == 1 and (files[0].stat().st_mode & 0o777) == 0o600
    code = (
        "import json, os, sys\n"
        "from dockyard.runtime import seccomp\n"
        "p = json.loads(sys.argv[1])\n"
        "f = seccomp.prepare(p, cache_dir=sys.argv[2])\n"
        "assert 'pyseccomp' not in sys.modules, 'compiled again'\n"
        "f.load()\n"
        "try:\n"
        "    os.mkdir(sys.argv[3]); print('made')\n"
        "except OSError as e:\n"
        "    print(e.errno)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(profile), str(cache), str(tmp_path / "d")],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(errno.EMLINK)]
    # a corrupt entry is ignored and rewritten
    files[0].write_text("{not json")
    seccomp._prepared.clear()
    again = seccomp.prepare(profile, cache_dir=str(cache))
    assert again.bpf == first.bpf
    assert json.loads(files[0].read_text())["syscall_nr"] == first.syscall_nr
