"""`dockyard ui`: the web dashboard, a client of the Engine API.

    dockyard ui [--addr 127.0.0.1:9797] [-H unix:///run/dockyard.sock]
                [--tls-cert FILE --tls-key FILE] [--htpasswd FILE] [--assets DIR]

It prints the address to open, with the login token for this run. Bound to a
non-loopback address it refuses to start without TLS.
"""

from __future__ import annotations

import argparse
import sys


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep:
        host, port = addr, "9797"
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad port in --addr {addr!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard ui", description="Serve the web dashboard.")
    p.add_argument("--addr", default="127.0.0.1:9797", help="HOST:PORT to listen on (default 127.0.0.1:9797)")
    p.add_argument("-H", "--host", dest="engine", default=None,
                   help="the engine's address (default $DOCKER_HOST or unix:///run/dockyard.sock)")
    p.add_argument("--tls-cert", help="certificate (PEM); required when not bound to loopback")
    p.add_argument("--tls-key", help="private key (PEM) of --tls-cert")
    p.add_argument("--htpasswd", help="also accept logins of the users in this htpasswd file (bcrypt)")
    p.add_argument("--token", help="the login token (default: a new random one, printed)")
    p.add_argument("--assets", help="the installed browser libraries (node_modules with @xterm/xterm and uplot)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from dockyard.ui import security
    from dockyard.ui.app import default_assets, missing_assets

    try:
        host, port = parse_addr(args.addr)
    except ValueError as e:
        print(f"dockyard ui: {e}", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("dockyard ui: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    tls = bool(args.tls_cert)
    if not tls and not security.is_loopback(host):
        print(f"dockyard ui: refusing to serve {host} without TLS: give --tls-cert and --tls-key "
              "(or bind to 127.0.0.1)", file=sys.stderr)
        return 2
    assets = Path(args.assets) if args.assets else default_assets()
    missing = missing_assets(assets)
    if missing:
        print(f"dockyard ui: the browser libraries are not installed in {assets} (missing "
              f"{', '.join(missing)}); run scripts/install-deps, or npm install in "
              f"{Path(__file__).parent / 'vendor'}, or give --assets", file=sys.stderr)
        return 1
    ssl_ctx = None
    if tls:
        import ssl

        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            print(f"dockyard ui: cannot load the TLS certificate: {e}", file=sys.stderr)
            return 2
    if args.htpasswd:
        try:
            open(args.htpasswd).close()
        except OSError as e:
            print(f"dockyard ui: cannot read --htpasswd: {e}", file=sys.stderr)
            return 2
    token = args.token or security.new_token()
    auth = security.Authenticator(token, args.htpasswd)

    import asyncio

    from aiohttp import web

    from dockyard.ui.app import make_app
    from dockyard.ui.engine import Engine, engine_host

    try:
        engine = Engine(engine_host(args.engine))
    except ValueError as e:
        print(f"dockyard ui: {e}", file=sys.stderr)
        return 2

    async def serve() -> None:
        app = make_app(engine, auth, assets=assets, tls=tls)
        runner = web.AppRunner(app, handle_signals=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, reuse_address=True)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1] if port == 0 else port
        scheme = "https" if tls else "http"
        shown = f"[{host}]" if ":" in host else host
        print(f"dockyard ui listening on {scheme}://{shown}:{bound}/ (engine {engine.host})", flush=True)
        print(f"open {scheme}://{shown}:{bound}/login?token={token}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except OSError as e:
        print(f"dockyard ui: cannot listen on {args.addr}: {e}", file=sys.stderr)
        return 1
    return 0
