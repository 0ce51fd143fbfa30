"""``dockyard registry``: serve, gc, htpasswd."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

SUBCOMMANDS = ("serve", "gc", "htpasswd")


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard registry serve",
                                description="Serve an OCI distribution registry.")
    p.add_argument("--config", help="JSON config file (flags override it)")
    p.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000; port 0 picks one)")
    p.add_argument("--root", help="storage directory")
    p.add_argument("--htpasswd", help="htpasswd file (bcrypt)")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--read-only", action="store_true", default=None, help="refuse every write")
    p.add_argument("--no-delete", dest="delete", action="store_false", default=None,
                   help="refuse DELETE of blobs and manifests")
    p.add_argument("--auth", choices=["none", "basic", "token"])
    p.add_argument("--anonymous-read", action="store_true", default=None,
                   help="let clients without credentials pull")
    p.add_argument("--token-realm", help="token endpoint URL to send clients to "
                   "(default: this server's /token)")
    p.add_argument("--token-service", help="service name in tokens (default dockyard-registry)")
    p.add_argument("--token-issuer", help="issuer in tokens (default dockyard-token-issuer)")
    p.add_argument("--token-key", help="PEM private key (EC P-256 or RSA) signing tokens "
                   "(default: generated on first start under ROOT/auth)")
    p.add_argument("--token-ttl", type=int, help="token lifetime in seconds (default 300)")
    p.add_argument("--access", help='JSON file: {"alice": ["pull","push"], "bob": ["pull"]} '
                   'or per-repository patterns {"alice": {"alice/*": ["pull","push"]}}')
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return p


def serve(args: list[str]) -> int:
    from dockyard.registry import config as cfg

    ns = _serve_parser().parse_args(args)
    overrides = {k: v for k, v in vars(ns).items() if k not in ("config", "access", "access_log")}
    overrides["tls_cert"], overrides["tls_key"] = ns.tls_cert, ns.tls_key
    if ns.access:
        try:
            with open(ns.access) as f:
                overrides["access"] = json.load(f)
        except (OSError, ValueError) as e:
            print(f"dockyard registry: --access: {e}", file=sys.stderr)
            return 2
    overrides["auth"] = ns.auth
    if ns.auth is None and ns.htpasswd and not (ns.config):
        overrides["auth"] = "basic"  # --htpasswd alone means basic auth
    try:
        config = cfg.build(ns.config, overrides)
    except (OSError, ValueError) as e:
        print(f"dockyard registry: {e}", file=sys.stderr)
        return 2
    from dockyard.registry.server import run

    return run(config, access_log=ns.access_log)


def gc(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dockyard registry gc",
                                description="Delete blobs no manifest references.")
    p.add_argument("--root", required=True)
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted")
    p.add_argument("--grace", type=float, default=None,
                   help="keep unreferenced blobs younger than this many seconds (default 3600)")
    p.add_argument("--delete-untagged", action="store_true",
                   help="also delete manifests no tag reaches (referrers of kept ones stay)")
    p.add_argument("--upload-max-age", type=float, default=None,
                   help="delete upload sessions idle longer than this (default 7 days)")
    ns = p.parse_args(args)
    from pathlib import Path

    from dockyard.registry import gc as gcmod
    from dockyard.registry.storage import Storage

    if not Path(ns.root).is_dir():
        print(f"dockyard registry gc: {ns.root} is not a directory", file=sys.stderr)
        return 2
    result = gcmod.collect(Storage(ns.root),
                           grace=gcmod.DEFAULT_GRACE if ns.grace is None else ns.grace,
                           dry_run=ns.dry_run, delete_untagged=ns.delete_untagged,
                           upload_max_age=(gcmod.DEFAULT_UPLOAD_MAX_AGE if ns.upload_max_age is None
                                           else ns.upload_max_age),
                           log=print)
    del result
    return 0


def htpasswd(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dockyard registry htpasswd",
                                description="Print an htpasswd line (bcrypt) for USER.")
    p.add_argument("user")
    p.add_argument("--password", help="the password (default: read from stdin or prompt)")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("-C", "--cost", type=int, default=10, help="bcrypt cost (default 10)")
    ns = p.parse_args(args)
    from dockyard.registry.auth import htpasswd_line

    password = ns.password
    if password is None:
        if ns.password_stdin or not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"password for {ns.user}: ")
    try:
        print(htpasswd_line(ns.user, password, ns.cost))
    except ValueError as e:
        print(f"dockyard registry htpasswd: {e}", file=sys.stderr)
        return 2
    return 0


def main(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        print("usage: dockyard registry [serve] [flags] | gc --root DIR [--dry-run] [--delete-untagged] | htpasswd USER\n"
              "  run `dockyard registry serve --help` for the server's flags")
        return 0
    if args and args[0] in SUBCOMMANDS:
        cmd, rest = args[0], args[1:]
    else:
        cmd, rest = "serve", args
    return {"serve": serve, "gc": gc, "htpasswd": htpasswd}[cmd](rest)
