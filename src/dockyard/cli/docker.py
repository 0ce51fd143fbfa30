"""Docker-compatible client commands (`dockyard ps`, `dockyard run`, ...)."""

from __future__ import annotations

import sys

USAGE = """Usage:  dockyard [OPTIONS] COMMAND

A container engine that speaks Docker's API

Pieces:
  daemon      Run the Dockyard daemon (Docker Engine API server)
  runtime     The OCI runtime (runc-compatible), also installed as dockyard-runc
  registry    Run the OCI distribution registry
"""


def main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if args[0] in ("-v", "--version"):
        from dockyard import __version__

        print(f"Dockyard version {__version__}")
        return 0
    sys.stderr.write(f"dockyard: '{args[0]}' is not a dockyard command.\nSee 'dockyard --help'\n")
    return 1
