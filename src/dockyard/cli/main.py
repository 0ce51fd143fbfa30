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
    "supervisor": ("dockyard.supervisor.holder", "cli_main"),
    "ui": ("dockyard.ui.cli", "main"),
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _PIECES:
        module_name, func = _PIECES[args[0]]
        import importlib

        module = importlib.import_module(module_name)
        return int(getattr(module, func)(args[1:]) or 0)
    from dockyard.cli import docker

    if argv is None:   # the process's entry point: it ends here (dockyard/procexit.py)
        from dockyard.procexit import run_and_exit

        run_and_exit(lambda: docker.main(args))
    return int(docker.main(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
