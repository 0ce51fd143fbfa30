"""One function per `dockyard-runc` subcommand: flags in, exit status out.

Each takes (globals, flags, positionals) from ``cli`` and calls the
lifecycle code in ``container`` / ``execproc``; this module only handles
arguments, output formats and pid files.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os

from . import fastjson as json
import _signal
import sys

from .cli import UsageError


def _runtime(g):
    from .container import Runtime
    return Runtime(g.root)


def _one_id(pos: list[str], cmd: str) -> str:
    if len(pos) != 1:
        raise UsageError(f'"{cmd}" requires exactly 1 argument (the container id)')
    return pos[0]


def _write_pid_file(path: str | None, pid: int) -> None:
    if path:
        from .container import _write_atomic
        _write_atomic(path, str(pid))


def _create_opts(flags: dict):
    from .container import CreateOptions
    return CreateOptions(bundle=flags.get("bundle") or ".", pid_file=flags.get("pid-file"),
                         console_socket=flags.get("console-socket"),
                         no_pivot=bool(flags.get("no-pivot")),
                         no_new_keyring=bool(flags.get("no-new-keyring")),
                         preserve_fds=int(flags.get("preserve-fds") or 0)
                         + int(os.environ.get("LISTEN_FDS", "0") or 0))


def cmd_create(g, flags, pos) -> int:
    cid = _one_id(pos, "create")
    rt = _runtime(g)
    st = rt.create(cid, _create_opts(flags))
    _write_pid_file(flags.get("pid-file"), st["pid"])
    return 0


def cmd_run(g, flags, pos) -> int:
    cid = _one_id(pos, "run")
    rt = _runtime(g)
    opts = _create_opts(flags)
    detach = bool(flags.get("detach"))
    ours = None
    from .spec import read_bundle
    opts.raw_config = read_bundle(os.path.abspath(opts.bundle))   # read once: create reuses it
    if not opts.console_socket and (opts.raw_config.get("process") or {}).get("terminal"):
        if detach:
            raise UsageError("cannot allocate tty if dockyard-runc will detach without "
                             "setting console socket")
        import _socket as socket
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        opts.console_fd = theirs.detach()
    attached = None
    if not detach:
        # signals are caught (and later forwarded) from before the container
        # exists, as runc does: it may start as soon as create is done with it
        from .foreground import Attached
        # not SIGPIPE yet: during create it would be our own (a hook that
        # closed its stdin), not one for the container
        attached = Attached().arm(later=(_signal.SIGPIPE,))
        opts.start_at_once = True
    try:
        st = rt.create(cid, opts)
    except BaseException:
        if attached is not None:
            attached.disarm()
        raise
    try:
        # (with start_at_once the program may be running already: whatever
        # fails from here on takes the container down with it)
        master = None
        if ours is not None:
            from .sync import recv_fd
            os.close(opts.console_fd)
            master, _name = recv_fd(ours)
            ours.close()
        _write_pid_file(flags.get("pid-file"), st["pid"])
        if attached is not None:
            attached.pid, attached.master = st["pid"], master
            attached.catch(_signal.SIGPIPE)
        rt.start(cid, st)
    except BaseException:
        if attached is not None:
            attached.disarm()
        rt.forget_reader(cid)
        rt.delete(cid, force=True)
        raise
    if attached is None:
        return 0
    try:
        code = attached.wait()
    finally:
        if not flags.get("keep"):
            rt.delete(cid, force=True, state=st)
    return code


def cmd_start(g, flags, pos) -> int:
    _runtime(g).start(_one_id(pos, "start"))
    return 0


def cmd_state(g, flags, pos) -> int:
    st = _runtime(g).state(_one_id(pos, "state"))
    print(json.dumps(st, indent=2))
    return 0


def parse_signal(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        return int(t)
    if not t.startswith("SIG"):
        t = "SIG" + t
    num = getattr(_signal, t, None)
    if not isinstance(num, int) or t.startswith("SIG_"):
        raise UsageError(f"unknown signal {text!r}")
    return num


def cmd_kill(g, flags, pos) -> int:
    if len(pos) not in (1, 2):
        raise UsageError('"kill" requires a container id and an optional signal')
    sig = parse_signal(pos[1]) if len(pos) == 2 else _signal.SIGTERM
    _runtime(g).kill(pos[0], sig, all_procs=bool(flags.get("all")))
    return 0


def cmd_delete(g, flags, pos) -> int:
    if not pos:
        raise UsageError('"delete" requires at least 1 argument (the container id)')
    rt = _runtime(g)
    for cid in pos:
        rt.delete(cid, force=bool(flags.get("force")))
    return 0


def cmd_list(g, flags, pos) -> int:
    items = _runtime(g).list()
    if flags.get("quiet"):
        for s in items:
            print(s["id"])
        return 0
    fmt = flags.get("format") or "table"
    if fmt == "json":
        print(json.dumps(items))
        return 0
    if fmt != "table":
        raise UsageError(f"invalid format option {fmt!r}")
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"])
             for s in items]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_ps(g, flags, pos) -> int:
    if not pos:
        raise UsageError('"ps" requires a container id')
    cid, ps_args = pos[0], pos[1:]
    pids = _runtime(g).pids(cid)
    fmt = flags.get("format") or "table"
    if fmt == "json":
        print(json.dumps(pids))
        return 0
    if fmt != "table":
        raise UsageError(f"invalid format option {fmt!r}")
    import subprocess
    out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    if not out:
        return 0
    header = out[0].split()
    if "PID" not in header:
        raise UsageError("ps output has no PID column")
    col = header.index("PID")
    print(out[0])
    wanted = set(pids)
    for line in out[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            print(line)
    return 0


def cmd_exec(g, flags, pos) -> int:
    if not pos:
        raise UsageError('"exec" requires a container id')
    from . import state as statemod
    from .execproc import ExecOptions, run_exec
    rt = _runtime(g)
    cid = pos[0]
    st = rt.store.load(cid)
    status = statemod.status(rt.store, st)
    if status == "paused" and not flags.get("ignore-paused"):
        raise UsageError("cannot exec in a paused container (use --ignore-paused to override)")
    if status not in ("created", "running", "paused"):
        raise UsageError(f"cannot exec in a {status} container")
    try:
        gids = [int(x) for x in flags.get("additional-gids") or []]
    except ValueError:
        raise UsageError("--additional-gids needs numbers") from None
    o = ExecOptions(process_file=flags.get("process"), args=pos[1:], cwd=flags.get("cwd"),
                    env=flags.get("env") or [], tty=bool(flags.get("tty")),
                    user=flags.get("user"), additional_gids=gids, caps=flags.get("cap") or [],
                    no_new_privs=bool(flags.get("no-new-privs")),
                    detach=bool(flags.get("detach")), pid_file=flags.get("pid-file"),
                    console_socket=flags.get("console-socket"),
                    preserve_fds=int(flags.get("preserve-fds") or 0))
    terminal = o.tty
    if o.process_file:
        from .execproc import build_process
        terminal = bool(build_process({}, o).get("terminal"))
    console_fd, ours = None, None
    if terminal:
        if o.console_socket:
            from .container import _connect_console
            console_fd = _connect_console(o.console_socket)
        elif o.detach:
            raise UsageError("cannot allocate tty if dockyard-runc will detach without "
                             "setting console socket")
        else:
            import _socket as socket
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            console_fd = theirs.detach()
    from .foreground import Attached
    attached = None if o.detach else Attached().arm()
    pid = run_exec(st, o, rt.manager(st), console_fd)
    if console_fd is not None:
        os.close(console_fd)
    master = None
    if ours is not None:
        from .sync import recv_fd
        master, _n = recv_fd(ours)
        ours.close()
    _write_pid_file(o.pid_file, pid)
    if attached is None:
        return 0
    attached.pid, attached.master = pid, master
    return attached.wait()


def cmd_pause(g, flags, pos) -> int:
    _runtime(g).pause(_one_id(pos, "pause"))
    return 0


def cmd_resume(g, flags, pos) -> int:
    _runtime(g).resume(_one_id(pos, "resume"))
    return 0


def cmd_spec(g, flags, pos) -> int:
    from .spec import default_spec
    bundle = flags.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise UsageError("File config.json exists. Remove it first.")
    import json as stdjson
    with open(path, "w") as f:
        stdjson.dump(default_spec(), f, indent="\t")
        f.write("\n")
    return 0


def _mem(v: str | None) -> int | None:
    if v is None or v == "":
        return None
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    s = v.strip().lower().rstrip("b")
    if s == "-1":
        return -1
    if s and s[-1] in units:
        return int(float(s[:-1]) * units[s[-1]])
    return int(s)


def cmd_update(g, flags, pos) -> int:
    cid = _one_id(pos, "update")
    rt = _runtime(g)
    st = rt.store.load(cid)
    res: dict = {}
    if flags.get("resources"):
        src = flags["resources"]
        text = sys.stdin.read() if src == "-" else open(src).read()
        try:
            res = json.loads(text)
        except ValueError as e:
            raise UsageError(f"--resources: invalid JSON: {e}") from None
    mem = res.setdefault("memory", {})
    for flag, key in (("memory", "limit"), ("memory-swap", "swap"),
                      ("memory-reservation", "reservation")):
        if flags.get(flag) is not None:
            mem[key] = _mem(flags[flag])
    cpu = res.setdefault("cpu", {})
    for flag, key in (("cpu-shares", "shares"), ("cpu-quota", "quota"),
                      ("cpu-period", "period"), ("cpuset-cpus", "cpus"),
                      ("cpuset-mems", "mems")):
        if flags.get(flag) is not None:
            cpu[key] = flags[flag]
    if flags.get("pids-limit") is not None:
        res["pids"] = {"limit": flags["pids-limit"]}
    if flags.get("blkio-weight") is not None:
        res["blockIO"] = {"weight": flags["blkio-weight"]}
    # Device rules are the container's, set at create: runc ignores them on
    # update, and containerd sends a deny-all list with every CRI
    # UpdateContainerResources (applying it would leave no /dev/null).
    res.pop("devices", None)
    res = {k: v for k, v in res.items() if v}
    from . import cgroups
    cgroups.validate_resources(res)
    rt.manager(st).apply(res)
    return 0


def cmd_events(g, flags, pos) -> int:
    cid = _one_id(pos, "events")
    rt = _runtime(g)
    st = rt.store.load(cid)
    mgr = rt.manager(st)
    print(json.dumps({"type": "stats", "id": cid, "data": mgr.stats() if mgr else {}}))
    return 0


def cmd_features(g, flags, pos) -> int:
    from . import caps, rootfs
    from .spec import HOOK_KINDS, OCI_VERSION
    try:
        from . import cgroups
        info = cgroups.host_info()
    except Exception:  # noqa: BLE001
        info = {}
    from . import seccomp as seccomp_mod
    seccomp = seccomp_mod.features()
    out = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted([*rootfs.MOUNT_FLAGS, *rootfs.PROPAGATION_FLAGS, "bind",
                                "rbind"]),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": sorted(caps.CAPABILITIES, key=caps.CAPABILITIES.get),
            "cgroup": {"v1": info.get("driver") in ("v1", "hybrid"),
                       "v2": info.get("driver") in ("v2", "hybrid"),
                       "systemd": False, "systemdUser": False},
            "seccomp": seccomp,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.dockyard.runtime.version": "0.1.0"},
    }
    print(json.dumps(out, indent=2))
    return 0
