"""`dockyard-runc`: runc's command line, for our daemon, dockerd and containerd.

The parser is small and hand-written on purpose: argparse alone costs
milliseconds at every invocation, and runc's callers rely on urfave/cli's
conventions (`--flag value`, `--flag=value`, `-flag`, global flags before the
subcommand, flags of a subcommand before its positional arguments). Every
flag containerd's go-runc passes is accepted; the ones that make no sense
here (`--criu`, `--no-new-keyring`, `--rootless`) are accepted and ignored.

Errors go to stderr and, with ``--log``, to the log file in the format
dockerd/containerd read back (``--log-format json``:
``{"level":"error","msg":...,"time":...}``). Exit status 1, as runc.
"""

from __future__ import annotations

import sys

VERSION = "0.1.0"
SPEC_VERSION = "1.2.0"

STR, BOOL, INT, LIST = "str", "bool", "int", "list"

GLOBAL_FLAGS = {
    "root": STR, "log": STR, "log-format": STR, "debug": BOOL, "systemd-cgroup": BOOL,
    "criu": STR, "rootless": STR, "help": BOOL, "h": "help", "version": BOOL, "v": "version",
}
_CREATE = {"bundle": STR, "b": "bundle", "console-socket": STR, "pid-file": STR,
           "no-pivot": BOOL, "no-new-keyring": BOOL, "preserve-fds": INT, "pidfd-socket": STR}
COMMANDS: dict[str, dict] = {
    "create": _CREATE,
    "run": {**_CREATE, "detach": BOOL, "d": "detach", "keep": BOOL, "no-subreaper": BOOL},
    "start": {},
    "state": {},
    "kill": {"all": BOOL, "a": "all"},
    "delete": {"force": BOOL, "f": "force"},
    "list": {"format": STR, "f": "format", "quiet": BOOL, "q": "quiet"},
    "ps": {"format": STR, "f": "format"},
    "exec": {"console-socket": STR, "pidfd-socket": STR, "cwd": STR, "env": LIST, "e": "env",
             "tty": BOOL, "t": "tty", "user": STR, "u": "user", "additional-gids": LIST,
             "g": "additional-gids", "process": STR, "p": "process", "process-label": STR,
             "apparmor": STR, "no-new-privs": BOOL, "cap": LIST, "c": "cap",
             "preserve-fds": INT, "cgroup": LIST, "ignore-paused": BOOL, "detach": BOOL,
             "d": "detach", "pid-file": STR},
    "pause": {},
    "resume": {},
    "spec": {"bundle": STR, "b": "bundle", "rootless": BOOL},
    "features": {},
    "update": {"resources": STR, "r": "resources", "memory": STR, "memory-swap": STR,
               "memory-reservation": STR, "cpu-shares": INT, "cpu-quota": INT,
               "cpu-period": INT, "cpuset-cpus": STR, "cpuset-mems": STR, "pids-limit": INT,
               "blkio-weight": INT, "kernel-memory": STR, "kernel-memory-tcp": STR,
               "cpu-rt-period": INT, "cpu-rt-runtime": INT, "l3-cache-schema": STR,
               "mem-bw-schema": STR},
    "events": {"stats": BOOL, "interval": STR},
    "checkpoint": None, "restore": None,
}
# positional arguments after the id belong to the program, not to us
_TRAILING_ARGS = {"exec", "ps"}


class UsageError(Exception):
    pass


def _canon(table: dict, name: str) -> tuple[str, str]:
    kind = table.get(name)
    if kind is None:
        raise UsageError(f"flag provided but not defined: -{name}")
    if kind not in (STR, BOOL, INT, LIST):       # an alias
        return kind, table[kind]
    return name, kind


def parse_flags(argv: list[str], table: dict, stop_at_positional: bool):
    """(flags, positionals) in urfave/cli's style."""
    flags: dict = {}
    pos: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            pos.extend(argv[i + 1:])
            break
        if a.startswith("-") and len(a) > 1 and not (pos and stop_at_positional):
            name, eq, value = a.lstrip("-").partition("=")
            name, kind = _canon(table, name)
            if kind == BOOL:
                flags[name] = value.lower() not in ("false", "0") if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: -{name}")
                    value = argv[i]
                if kind == INT:
                    try:
                        value = int(value)
                    except ValueError:
                        raise UsageError(f"invalid value {value!r} for flag -{name}") from None
                if kind == LIST:
                    flags.setdefault(name, []).append(value)
                else:
                    flags[name] = value
        else:
            pos.append(a)
        i += 1
    return flags, pos


USAGE = """usage: dockyard-runc [global options] command [command options] [arguments...]

dockyard-runc is an OCI runtime with runc's command line.

commands:
  create    create a container (its init waits for `start`)
  start     run the user's program of a created container
  run       create and start a container, then wait for it
  state     print the state of a container (OCI state JSON)
  kill      send a signal to the container's init (or --all processes)
  delete    delete a container (--force kills a running one)
  list      list containers (--format table|json, -q)
  ps        list a container's processes (--format table|json)
  exec      run a process in a container
  pause     freeze every process of a container
  resume    thaw a paused container
  update    change a container's resources (--resources FILE|-)
  spec      write a default config.json
  features  print what this runtime supports (JSON)

global options:
  --root DIR          state directory (default /run/dockyard-runc)
  --log FILE          also write errors and debug messages to FILE
  --log-format FMT    text or json
  --debug             log debug messages
  --version, -v       print the version
"""


class Globals:
    def __init__(self, flags: dict) -> None:
        self.root = flags.get("root") or None
        self.log = flags.get("log")
        self.log_format = flags.get("log-format") or "text"
        self.debug = bool(flags.get("debug"))
        self.systemd_cgroup = bool(flags.get("systemd-cgroup"))

    def write_log(self, level: str, msg: str) -> None:
        if not self.log:
            return
        from . import fastjson as json
        from .state import now_rfc3339
        if self.log_format == "json":
            line = json.dumps({"level": level, "msg": msg, "time": now_rfc3339()})
        else:
            line = f'time="{now_rfc3339()}" level={level} msg={json.dumps(msg)}'
        try:
            with open(self.log, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status.

    Without ``argv`` this is the process's entry point (the `dockyard-runc`
    console script, ``python -m dockyard.runtime.cli``): then the process
    ends here, after flushing stdout/stderr, without the interpreter's
    teardown (see :func:`run_and_exit`).
    """
    if argv is None:
        run_and_exit()
    return _main(list(argv))


def _main(argv: list[str]) -> int:
    try:
        gflags, rest = parse_flags(argv, GLOBAL_FLAGS, stop_at_positional=True)
    except UsageError as e:
        print(f"dockyard-runc: {e}\n\n{USAGE}", file=sys.stderr, end="")
        return 1
    g = Globals(gflags)
    if gflags.get("version"):
        print(f"dockyard-runc version {VERSION}\nspec: {SPEC_VERSION}")
        return 0
    if gflags.get("help") or not rest:
        print(USAGE, end="", file=sys.stdout if gflags.get("help") else sys.stderr)
        return 0 if gflags.get("help") else 1
    cmd, cargs = rest[0], rest[1:]
    if cmd not in COMMANDS:
        print(f"dockyard-runc: no such command {cmd!r}\n\n{USAGE}", file=sys.stderr, end="")
        return 1
    if cmd in ("create", "run"):
        from . import cgwarm
        cgwarm.start()
    try:
        if g.systemd_cgroup:
            raise UsageError("systemd cgroup driver is not supported by dockyard-runc")
        table = COMMANDS[cmd]
        if table is None:
            raise UsageError(f"{cmd} is not supported by dockyard-runc")
        if cargs and cargs[0] in ("-h", "--help"):
            print(USAGE, end="")
            return 0
        flags, pos = parse_flags(cargs, table, stop_at_positional=cmd in _TRAILING_ARGS)
        if g.debug:
            g.write_log("debug", f"{cmd} {cargs}")
        from . import commands
        return int(getattr(commands, "cmd_" + cmd)(g, flags, pos) or 0)
    except UsageError as e:
        return _fail(g, str(e))
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - every error becomes a message and exit 1
        from dockyard.errors import DockyardError
        if isinstance(e, (DockyardError, OSError)) or type(e).__name__.endswith("Error"):
            return _fail(g, _message(e))
        raise


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e) or type(e).__name__


def _fail(g: Globals, msg: str) -> int:
    g.write_log("error", msg)
    print(f"dockyard-runc: {msg}", file=sys.stderr)
    return 1


def run_and_exit() -> None:
    """Run :func:`main` and end the process at once (no interpreter teardown).

    The cyclic garbage collector is off for the process's short life: its
    passes during the imports cost time, and in the forked stages they would
    write to (and so copy) pages shared with the parent."""
    import gc
    from dockyard.procexit import run_and_exit as end
    gc.disable()
    end(lambda: _main(sys.argv[1:]))


if __name__ == "__main__":
    main()
