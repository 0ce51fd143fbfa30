"""The `dockyard` command: dispatches to the piece that owns a subcommand.

Imports are lazy so that `dockyard version` or `dockyard runtime state` pay
only for what they use.
"""

from __future__ import annotations

import sys

# Subcommands served by a piece other than the Docker-style client.
_PIECES = {
    "runtime": ("dockyard.runtime.cli", "main"),
    "daemon": ("dockyard.daemon.main", "main"),
    "registry": ("dockyard.registry.cli", "main"),
    "supervisor": ("dockyard.supervisor.server", "main"),
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _PIECES:
        module_name, func = _PIECES[args[0]]
        import importlib

        module = importlib.import_module(module_name)
        return int(getattr(module, func)(args[1:]) or 0)
    from dockyard.cli import docker

    code = int(docker.main(args) or 0)
    if argv is None:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """The client's process ends here: flush what it printed, then exit without the
    interpreter's teardown (module and thread cleanup: ~10 ms, nothing of ours needs it)."""
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)


if __name__ == "__main__":
    raise SystemExit(main())
