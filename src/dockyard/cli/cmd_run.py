"""create, run, start, attach, exec: the commands that create processes and attach to them.

`run` follows the Docker CLI's sequence: create (on "No such image": pull, then
create again) -> hijacked attach -> wait?condition=next-exit|removed -> start ->
resize (tty) -> copy streams -> the exit code from the wait.
"""

from __future__ import annotations

import os
import sys

from dockyard import errors
from dockyard.cli.docker import CommandError
from dockyard.cli.parser import PROG, CommandParser, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def require(p: CommandParser, args: list[str], lo: int, hi: int | None = None) -> None:
    """Docker's argument-count errors: exact counts say "Run", the others "See"."""
    n = len(args)
    if n >= lo and (hi is None or n <= hi):
        return
    s = "s" if lo != 1 else ""
    if hi == lo:
        what, word = f"requires {lo} argument{s}", "Run"
    elif hi is None:
        what, word = f"requires at least {lo} argument{s}", "See"
    elif lo == 0:
        what, word = f"accepts at most {hi} argument{'s' if hi != 1 else ''}", "See"
    else:
        what, word = f"requires at least {lo} and at most {hi} arguments", "See"
    raise UsageError(f"{PROG}: '{PROG} {p.command}' {what}\n\n{p.usage_line}\n\n"
                     f"{word} '{PROG} {p.command} --help' for more information", 1)


def _unreachable(e: Exception) -> bool:
    from dockyard.client import DaemonUnreachable

    return isinstance(e, DaemonUnreachable)


def exit_status(message: str) -> int:
    """Docker's run/start exit codes from the daemon's message: 127, 126 or 125."""
    if ("executable file not found" in message or "no such file or directory" in message
            or "system cannot find the file specified" in message):
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def _normalize_ref(ref: str) -> tuple[str, str]:
    """busybox -> (docker.io/library/busybox, latest), as fromImage/tag."""
    name, tag = ref, ""
    if "@" in ref:
        name, tag = ref.split("@", 1)
    else:
        slash, colon = ref.rfind("/"), ref.rfind(":")
        if colon > slash:
            name, tag = ref[:colon], ref[colon + 1:]
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    return name, tag or "latest"


def familiar_tagged(ref: str) -> str:
    if "@" in ref:
        return ref
    slash, colon = ref.rfind("/"), ref.rfind(":")
    return ref if colon > slash else ref + ":latest"


def pull(g, image: str, quiet: bool = False, platform: str | None = None) -> None:
    """Pull through the distribution command's helper when present, else /images/create."""
    out = sys.stderr
    try:
        from dockyard.cli.cmd_distribution import pull_image  # type: ignore
    except ImportError:
        pull_image = None
    if pull_image is not None:
        pull_image(g.client(), image, out, platform=platform, quiet=quiet)
        return
    name, tag = _normalize_ref(image)
    params = {"fromImage": name, "tag": tag}
    for m in g.client().stream_json("POST", "/images/create", params,
                                    headers={"X-Registry-Auth": "e30="}):
        if not quiet and m.get("status") and not m.get("id"):
            out.write(m["status"] + "\n")
    out.flush()


def create_flags_parser(command: str, run: bool) -> CommandParser:
    from dockyard.cli.runopts import add_container_flags

    desc = "Create and run a new container from an image" if run else \
        "Create a new container"
    p = CommandParser(command, "[OPTIONS] IMAGE [COMMAND] [ARG...]", desc, nargs=(0, None))
    p.conflict_handler = p._optionals.conflict_handler = "resolve"  # -h is --hostname
    add_container_flags(p)
    if run:
        p.add_flag("-d", "--detach", help="Run container in background and print container ID")
        p.add_argument("--detach-keys", help="Override the key sequence for detaching a "
                       "container")
        p.add_argument("--sig-proxy", action="store_true", default=True,
                       help="Proxy received signals to the process (default true)")
    return p


def _create(g, p: CommandParser, o: Any, image: str, cmd: list[str], command: str,
            run: bool) -> str:
    from dockyard.cli.runopts import FlagError, OptionError, build_create
    from dockyard.cli.streams import terminal_size

    def later(msg: str) -> CommandError:
        return CommandError(f"{PROG}: {msg}\n\nRun '{PROG} {command} --help' for more "
                            "information", 125)

    console = terminal_size(1) if o.tty else (0, 0)
    try:
        body = build_create(p, o, image, cmd, console)
    except FlagError as e:
        p._fail(str(e), 125)
    except OptionError as e:
        raise later(str(e)) from None
    if o.pull not in ("missing", "always", "never"):
        raise later(f'invalid pull option: \'{o.pull}\': must be one of "always", "missing" '
                    'or "never"')
    c = g.client()

    def fail(e: errors.DockyardError) -> CommandError:
        if run:
            return CommandError(f"{PROG}: Error response from daemon: {e}\n\n"
                                f"Run '{PROG} {command} --help' for more information",
                                exit_status(str(e)))
        return CommandError(f"Error response from daemon: {e}", 1)

    try:
        if o.pull == "always":
            pull(g, image, o.quiet, o.platform)
        try:
            resp = c.create_container(body, name=o.name, platform=o.platform)
        except errors.NotFound as e:
            if "No such image" not in str(e) or o.pull == "never":
                raise
            sys.stderr.write(f"Unable to find image '{familiar_tagged(image)}' locally\n")
            sys.stderr.flush()
            pull(g, image, o.quiet, o.platform)
            resp = c.create_container(body, name=o.name, platform=o.platform)
    except errors.DockyardError as e:
        from dockyard.client import DaemonUnreachable

        if isinstance(e, DaemonUnreachable):
            raise
        raise fail(e) from None
    for w in resp.get("Warnings") or []:
        sys.stderr.write(f"WARNING: {w}\n")
    cid = resp["Id"]
    if o.cidfile:
        try:
            with open(o.cidfile, "x") as f:
                f.write(cid)
        except OSError as e:
            raise CommandError(f"failed to create the container ID file: {e}", 125)
    return cid


def cmd_create(g, argv: list[str], command: str = "create") -> int:
    from dockyard.cli.runopts import split_interspersed

    p = create_flags_parser(command, run=False)
    flags, pos = split_interspersed(p, argv)
    o = p.parse(flags)
    pos = o.args + pos
    require(p, pos, 1)
    cid = _create(g, p, o, pos[0], pos[1:], command, run=False)
    print(cid)
    return 0


def cmd_container_create(g, argv: list[str]) -> int:
    return cmd_create(g, argv, "container create")


def cmd_run(g, argv: list[str], command: str = "run") -> int:
    from dockyard.cli.runopts import split_interspersed
    from dockyard.cli.streams import parse_detach_keys

    p = create_flags_parser(command, run=True)
    flags, pos = split_interspersed(p, argv)
    o = p.parse(flags)
    pos = o.args + pos
    require(p, pos, 1)
    if o.detach and o.attach:
        raise CommandError("conflicting options: cannot specify both --attach and --detach", 1)
    if o.tty and o.interactive and not o.detach and not os.isatty(0):
        raise CommandError("the input device is not a TTY", 1)
    try:
        keys = parse_detach_keys(o.detach_keys)
    except ValueError as e:
        raise CommandError(f"{PROG}: {e}", 125) from None
    cid = _create(g, p, o, pos[0], pos[1:], command, run=True)
    c = g.client()

    def start_failed(e: errors.DockyardError) -> CommandError:
        return CommandError(f"{PROG}: Error response from daemon: {e}\n\n"
                            f"Run '{PROG} {command} --help' for more information",
                            exit_status(str(e)))

    if o.detach:
        try:
            c.start(cid)
        except errors.DockyardError as e:
            raise start_failed(e) from None
        print(cid)
        return 0
    attach = [s.lower() for s in o.attach]
    a_in = ("stdin" in attach) if attach else o.interactive
    a_out = ("stdout" in attach) if attach else True
    a_err = ("stderr" in attach) if attach else True
    return attach_and_start(c, cid, tty=o.tty, stdin=a_in, stdout=a_out, stderr=a_err,
                            keys=keys, detach_keys=o.detach_keys,
                            condition="removed" if o.rm else "next-exit",
                            sig_proxy=o.sig_proxy, on_start_error=start_failed)


def cmd_container_run(g, argv: list[str]) -> int:
    return cmd_run(g, argv, "container run")


def attach_and_start(c, cid: str, *, tty: bool, stdin: bool, stdout: bool, stderr: bool,
                     keys: bytes, detach_keys: str | None, condition: str, sig_proxy: bool,
                     on_start_error) -> int:
    """Attach (hijack), wait, start, resize, copy: the attached half of run and start -a."""
    from dockyard.cli.streams import RawTerminal, ResizeOnWinch, SignalProxy, pump
    from dockyard.client.containers import wait_result

    h = None
    if stdin or stdout or stderr:
        h = c.attach_socket(cid, stdin=stdin, stdout=stdout, stderr=stderr,
                            detach_keys=detach_keys)
    try:
        waiter = c.wait_response(cid, condition)
        try:
            c.start(cid)
        except errors.DockyardError as e:
            from dockyard.client import DaemonUnreachable

            if isinstance(e, DaemonUnreachable):
                raise
            if condition == "removed":
                # like docker: the daemon removes an auto-remove container whose start
                # failed; wait for that (bounded) so nothing is left when we return
                import threading

                t = threading.Thread(target=_quiet_wait, args=(waiter,), daemon=True)
                t.start()
                t.join(15)
            raise on_start_error(e) from None
        with RawTerminal(0, enabled=tty and stdin), \
                ResizeOnWinch(lambda hh, ww: c.clone().resize(cid, hh, ww), enabled=tty), \
                SignalProxy(lambda s: c.clone().kill(cid, str(s)), enabled=sig_proxy and not tty):
            result = pump(h, tty, stdin, keys) if h is not None else "eof"
        if result == "detached":
            return 0
        return wait_result(waiter)
    finally:
        if h is not None:
            h.close()


def _quiet_wait(waiter) -> None:
    from dockyard.client.containers import wait_result

    try:
        wait_result(waiter)
    except Exception:  # noqa: BLE001 - only waiting
        pass


def cmd_start(g, argv: list[str], command: str = "start") -> int:
    from dockyard.cli.streams import parse_detach_keys

    p = CommandParser(command, "[OPTIONS] CONTAINER [CONTAINER...]",
                      "Start one or more stopped containers", nargs=(0, None))
    p.add_flag("-a", "--attach", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_flag("-i", "--interactive", help="Attach container's STDIN")
    o = p.parse(argv)
    require(p, o.args, 1)
    c = g.client()
    if o.attach or o.interactive:
        if len(o.args) > 1:
            raise CommandError("you cannot start and attach multiple containers at once", 1)
        info = c.inspect_container(o.args[0])
        cfg = info.get("Config") or {}
        tty = bool(cfg.get("Tty"))
        stdin = o.interactive and bool(cfg.get("OpenStdin"))
        if tty and stdin and not os.isatty(0):
            raise CommandError("the input device is not a TTY", 1)
        try:
            keys = parse_detach_keys(o.detach_keys)
        except ValueError as e:
            raise CommandError(str(e), 1) from None

        def failed(e):
            return CommandError(f"Error response from daemon: {e}", 1)

        return attach_and_start(c, info["Id"], tty=tty, stdin=stdin, stdout=True, stderr=True,
                                keys=keys, detach_keys=o.detach_keys, condition="next-exit",
                                sig_proxy=not tty, on_start_error=failed)
    failed_names = []
    for name in o.args:
        try:
            c.start(name)
            print(name)
        except errors.DockyardError as e:
            from dockyard.client import DaemonUnreachable

            if isinstance(e, DaemonUnreachable):
                raise
            sys.stdout.flush()
            sys.stderr.write(f"Error response from daemon: {e}\n")
            failed_names.append(name)
    if failed_names:
        sys.stderr.write(f"Error: failed to start containers: {', '.join(failed_names)}\n")
        return 1
    return 0


def cmd_container_start(g, argv: list[str]) -> int:
    return cmd_start(g, argv, "container start")


def cmd_attach(g, argv: list[str], command: str = "attach") -> int:
    from dockyard.cli.streams import RawTerminal, ResizeOnWinch, SignalProxy, \
        parse_detach_keys, pump
    from dockyard.client.containers import wait_result

    p = CommandParser(command, "[OPTIONS] CONTAINER",
                      "Attach local standard input, output, and error streams to a running "
                      "container", nargs=(0, None))
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_flag("--no-stdin", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", action="store_true", default=True,
                   help="Proxy all received signals to the process (default true)")
    o = p.parse(argv)
    require(p, o.args, 1, 1)
    c = g.client()
    name = o.args[0]
    info = c.inspect_container(name)
    state = info.get("State") or {}
    if not state.get("Running"):
        raise CommandError("You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise CommandError("You cannot attach to a paused container, unpause it first", 1)
    if state.get("Restarting"):
        raise CommandError("You cannot attach to a restarting container, wait until it is "
                           "running", 1)
    cfg = info.get("Config") or {}
    tty = bool(cfg.get("Tty"))
    stdin = bool(cfg.get("OpenStdin")) and not o.no_stdin
    if tty and stdin and not os.isatty(0):
        raise CommandError("the input device is not a TTY", 1)
    try:
        keys = parse_detach_keys(o.detach_keys)
    except ValueError as e:
        raise CommandError(str(e), 1) from None
    cid = info["Id"]
    waiter = c.wait_response(cid)
    h = c.attach_socket(cid, stdin=stdin, stdout=True, stderr=True, detach_keys=o.detach_keys)
    try:
        with RawTerminal(0, enabled=tty and stdin), \
                ResizeOnWinch(lambda hh, ww: c.clone().resize(cid, hh, ww), enabled=tty,
                              nudge=True), \
                SignalProxy(lambda s: c.clone().kill(cid, str(s)),
                            enabled=o.sig_proxy and not tty):
            result = pump(h, tty, stdin, keys)
    finally:
        h.close()
    if result == "detached":
        return 0
    return wait_result(waiter)


def cmd_container_attach(g, argv: list[str]) -> int:
    return cmd_attach(g, argv, "container attach")


def cmd_exec(g, argv: list[str], command: str = "exec") -> int:
    from dockyard.cli.runopts import expand_env, read_kv_file, split_interspersed
    from dockyard.cli.streams import RawTerminal, ResizeOnWinch, parse_detach_keys, pump

    p = CommandParser(command, "[OPTIONS] CONTAINER COMMAND [ARG...]",
                      "Execute a command in a running container", nargs=(0, None))
    p.add_flag("-d", "--detach", help="Detached mode: run command in the background")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("-e", "--env", action="append", default=[],
                   help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[],
                   help="Read in a file of environment variables")
    p.add_flag("-i", "--interactive", help="Keep STDIN open even if not attached")
    p.add_flag("--privileged", help="Give extended privileges to the command")
    p.add_flag("-t", "--tty", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", help="Username or UID (format: \"<name|uid>[:<group|gid>]\")")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    flags, pos = split_interspersed(p, argv)
    o = p.parse(flags)
    pos = o.args + pos
    require(p, pos, 2)
    name, cmd = pos[0], pos[1:]
    env: list[str] = []
    for f in o.env_file:
        try:
            env += read_kv_file(f, "env")
        except (OSError, ValueError) as e:
            msg = f"open {f}: {(e.strerror or str(e)).lower()}" if isinstance(e, OSError) \
                else str(e)
            p._fail(f'invalid argument "{f}" for "--env-file" flag: {msg}', 125)
    env += expand_env(o.env)
    try:
        keys = parse_detach_keys(o.detach_keys)
    except ValueError as e:
        raise CommandError(str(e), 1) from None
    if o.tty and o.interactive and not o.detach and not os.isatty(0):
        raise CommandError("the input device is not a TTY", 1)
    c = g.client()
    c.inspect_container(name)
    stdin = o.interactive and not o.detach
    body = {"User": o.user or "", "Privileged": bool(o.privileged), "Tty": bool(o.tty),
            "AttachStdin": stdin, "AttachStdout": not o.detach, "AttachStderr": not o.detach,
            "Detach": bool(o.detach), "DetachKeys": o.detach_keys or "", "Env": env or None,
            "WorkingDir": o.workdir or "", "Cmd": cmd}
    if o.tty:
        from dockyard.cli.streams import terminal_size

        size = terminal_size(1)
        if size != (0, 0):
            body["ConsoleSize"] = list(size)  # the pty starts at our size, as docker 28
    eid = c.exec_create(name, body)
    if o.detach:
        c.exec_start_detached(eid, bool(o.tty))
        return 0
    try:
        h = c.exec_start_socket(eid, bool(o.tty))
    except errors.DockyardError as e:
        if _unreachable(e):
            raise
        # dockerd reports a failed exec start in the stream and exits 126/127; say the same
        code = exit_status(str(e))
        raise CommandError(f"Error response from daemon: {e}", 1 if code == 125 else code)
    try:
        with RawTerminal(0, enabled=o.tty and stdin), \
                ResizeOnWinch(lambda hh, ww: c.clone().exec_resize(eid, hh, ww),
                              enabled=bool(o.tty)):
            result = pump(h, bool(o.tty), stdin, keys)
    finally:
        h.close()
    if result == "detached":
        return 0
    code = c.exec_inspect(eid).get("ExitCode")
    return int(code or 0)


def cmd_container_exec(g, argv: list[str]) -> int:
    return cmd_exec(g, argv, "container exec")
