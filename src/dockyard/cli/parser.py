"""Docker-style argument parsing for `dockyard <command>` (argparse underneath).

Errors read like the Docker CLI's: ``unknown flag: --x`` (exit 125) and
``'dockyard tag' requires 2 arguments`` (exit 1), each followed by the usage
line and a pointer to ``--help``.
"""

from __future__ import annotations

import sys


def _load_argparse():
    """argparse, without the gettext module it imports only to translate its own messages:
    a catalog for them never exists here, and our error() matches their English text.
    Saves compiling gettext's regexes at every start."""
    mods = sys.modules
    if "argparse" in mods or "gettext" in mods:
        import argparse
        return argparse
    stub = type(sys)("gettext")
    stub.gettext = lambda message: message
    stub.ngettext = lambda singular, plural, n: singular if n == 1 else plural
    mods["gettext"] = stub
    try:
        import argparse
    finally:
        if mods.get("gettext") is stub:
            del mods["gettext"]
    return argparse


argparse = _load_argparse()

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn, Sequence

PROG = "dockyard"


class UsageError(Exception):
    def __init__(self, message: str, status: int = 125):
        super().__init__(message)
        self.status = status


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter with a fixed width: argparse asks for one on every
    add_argument (importing shutil for the terminal size), but we render help
    ourselves (help_text), so the width is never used."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         78 if width is None else width)


class CommandParser(argparse.ArgumentParser):
    def __init__(self, command: str, usage: str, description: str = "",
                 nargs: tuple[int, int | None] = (0, 0), nargs_text: str | None = None):
        super().__init__(prog=f"{PROG} {command}", add_help=False, allow_abbrev=False,
                         usage=argparse.SUPPRESS, description=description,
                         formatter_class=_Formatter)
        self.command = command
        self.usage_line = f"Usage:  {PROG} {command} {usage}".rstrip()
        self.nargs = nargs
        self.nargs_text = nargs_text
        self.add_argument("-h", "--help", action="store_true", help="Print usage")
        self.add_argument("args", nargs="*", help=argparse.SUPPRESS)

    def _fail(self, message: str, status: int) -> NoReturn:
        raise UsageError(f"{message}\n\n{self.usage_line}\n\n"
                         f"Run '{PROG} {self.command} --help' for more information", status)

    def error(self, message: str) -> NoReturn:  # argparse's hook
        if "expected one argument" in message:
            flag = message.split(":")[0].replace("argument ", "").split("/")[-1]
            self._fail(f"flag needs an argument: {flag}", 125)
        self._fail(message, 125)

    def help_text(self) -> str:
        lines = [self.usage_line, ""]
        if self.description:
            lines += [self.description, ""]
        opts = []
        for a in self._actions:
            if a.help == argparse.SUPPRESS or not a.option_strings:
                continue
            short = [o for o in a.option_strings if not o.startswith("--")]
            long = [o for o in a.option_strings if o.startswith("--")]
            metavar = ""
            if a.nargs != 0:
                metavar = " " + (a.metavar or a.dest.split("_")[-1])
            left = (short[0] + ", " if short else "    ") + (long[0] if long else "") + metavar
            opts.append((left, a.help or ""))
        if opts:
            width = max(len(l) for l, _ in opts) + 3
            lines.append("Options:")
            lines += [f"  {l.ljust(width)}{h}" for l, h in opts]
        return "\n".join(lines) + "\n"

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        argv = list(argv)
        # a lone "-" is an argument (stdin), not an option
        for a in argv:
            if a.startswith("-") and a != "-" and a != "--":
                name = a.split("=", 1)[0]
                if name.startswith("--"):
                    if not any(name in act.option_strings for act in self._actions):
                        self._fail(f"unknown flag: {name}", 125)
                else:
                    for ch in name[1:]:
                        opt = "-" + ch
                        act = next((x for x in self._actions if opt in x.option_strings), None)
                        if act is None:
                            self._fail(f"unknown shorthand flag: '{ch}' in {a}", 125)
                        if act.nargs != 0:
                            break
        # boolean flags written --flag=false / -H=false, as Go's pflag allows
        overrides: dict[str, bool] = {}
        plain: list[str] = []
        for a in argv:
            name, eq, val = a.partition("=")
            act = next((x for x in self._actions if name in x.option_strings), None)
            if eq and a.startswith("-") and act is not None and act.nargs == 0:
                overrides[act.dest] = parse_bool_flag_value(val)
                continue
            plain.append(a)
        ns, rest = self.parse_known_intermixed_args(plain)
        for dest, val in overrides.items():
            setattr(ns, dest, val)
        if rest:
            self._fail(f"unknown flag: {rest[0]}", 125)
        if ns.help:
            sys.stdout.write(self.help_text())
            raise SystemExit(0)
        lo, hi = self.nargs
        n = len(ns.args)
        if n < lo or (hi is not None and n > hi):
            if self.nargs_text:
                what = self.nargs_text
            elif lo == hi:
                what = f"requires {lo} argument{'s' if lo != 1 else ''}"
            elif hi is None:
                what = f"requires at least {lo} argument{'s' if lo != 1 else ''}"
            elif lo == 0:
                what = f"accepts at most {hi} argument{'s' if hi != 1 else ''}"
            else:
                what = f"requires at least {lo} and at most {hi} arguments"
            raise UsageError(f"{PROG}: '{PROG} {self.command}' {what}\n\n{self.usage_line}\n\n"
                             f"Run '{PROG} {self.command} --help' for more information", 1)
        return ns

    def add_flag(self, *names: str, help: str = "", **kw: Any) -> None:
        self.add_argument(*names, action="store_true", help=help, **kw)


def parse_bool_flag_value(v: str) -> bool:
    return v.lower() in ("1", "true", "t", "yes")
