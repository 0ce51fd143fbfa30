"""`dockyard daemon`: parse flags and the config file, then run the daemon."""

from __future__ import annotations

import argparse
import logging
import sys

from dockyard.daemon.config import (DEFAULT_CONFIG_FILE, DEFAULT_DATA_ROOT, DEFAULT_HOST,
                                    DEFAULT_PIDFILE, ConfigError, load_file, merge)

S = argparse.SUPPRESS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dockyard daemon",
        description="The Dockyard daemon: serves the Docker Engine API. SIGTERM or "
                    "`dockyard daemon stop` stops it (containers keep running under the "
                    "supervisor); `dockyard daemon stop --all` stops the containers, the "
                    "daemon and the supervisor.",
        argument_default=S)
    p.add_argument("-H", "--host", dest="hosts", action="append", metavar="ADDR",
                   help=f"address to listen on, repeatable (default {DEFAULT_HOST}); "
                        "tcp://HOST:PORT needs TLS or --insecure-tcp")
    p.add_argument("--data-root", dest="data_root", metavar="DIR",
                   help=f"root of the daemon's state (default {DEFAULT_DATA_ROOT})")
    p.add_argument("-p", "--pidfile", dest="pidfile", metavar="FILE",
                   help=f"pid file (default {DEFAULT_PIDFILE}, or <data-root>/dockyard.pid "
                        "when --data-root is not the default)")
    p.add_argument("-l", "--log-level", dest="log_level",
                   choices=["debug", "info", "warn", "error", "fatal"],
                   help="logging level (default info)")
    p.add_argument("-D", "--debug", dest="debug", action="store_true", help="debug logging")
    p.add_argument("--config-file", dest="config_file", metavar="FILE",
                   help=f"daemon configuration file, JSON (default {DEFAULT_CONFIG_FILE}, "
                        "read if present)")
    p.add_argument("-G", "--group", dest="group", metavar="GROUP",
                   help="group owning the unix sockets (default docker, if it exists)")
    p.add_argument("--tls", dest="tls", action="store_true",
                   help="serve TCP with TLS (implied by --tlsverify)")
    p.add_argument("--tlsverify", dest="tlsverify", action="store_true",
                   help="serve TCP with TLS and require client certificates signed by --tlscacert")
    p.add_argument("--tlscacert", dest="tlscacert", metavar="FILE",
                   help="CA that client certificates must be signed by")
    p.add_argument("--tlscert", dest="tlscert", metavar="FILE", help="server certificate")
    p.add_argument("--tlskey", dest="tlskey", metavar="FILE", help="server private key")
    p.add_argument("--insecure-tcp", dest="insecure_tcp", action="store_true",
                   help="DANGEROUS: allow tcp:// listeners without TLS (root for anyone "
                        "who can connect)")
    p.add_argument("--insecure-registry", dest="insecure_registries", action="append",
                   metavar="REGISTRY", help="registry (host[:port] or CIDR) to reach over plain "
                   "HTTP or unverified TLS; loopback registries always are")
    p.add_argument("--add-runtime", dest="add_runtime", action="append", metavar="NAME=PATH",
                   help="register an OCI runtime (runc command line) under NAME")
    p.add_argument("--default-runtime", dest="default_runtime", metavar="NAME",
                   help='runtime for containers that name none (default "dockyard")')
    p.add_argument("--cgroup-parent", dest="cgroup_parent", metavar="PATH",
                   help='parent cgroup of containers (default "/dockyard")')
    p.add_argument("-b", "--bridge", dest="bridge", metavar="NAME",
                   help='bridge device of the default network ("none" disables networking)')
    p.add_argument("--network-prefix", dest="network_prefix", metavar="NAME",
                   help="prefix of our iptables chains (default DOCKYARD)")
    p.add_argument("--default-address-pool", dest="default_address_pool", metavar="CIDR",
                   help="subnet of the default bridge network (default 172.30.0.0/16)")
    p.add_argument("--ipv6", dest="ipv6", action="store_true", default=None,
                   help="IPv6 on the default bridge network (with --fixed-cidr-v6)")
    p.add_argument("--fixed-cidr-v6", dest="fixed_cidr_v6", metavar="CIDR",
                   help="IPv6 subnet of the default bridge network")
    p.add_argument("--warm-pool", dest="warm_pool", type=int, metavar="N",
                   help="containers made ahead of time for repeated identical `run --rm` "
                        "(at most N kinds at once, each kept 60 s; 0 disables; default 2)")
    return p


_LEVEL_WORDS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "fatal"}


class _LogfmtLevel(logging.Filter):
    """dockerd's (logrus') level words: level=info, level=warning, level=fatal."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.level_word = _LEVEL_WORDS.get(record.levelno, record.levelname.lower())
        return True


def configure_logging(level: str) -> None:
    """``--log-level`` as dockerd's: debug, info, warn, error or fatal; lines in its format
    (``time="..." level=info msg="..."``)."""
    lvl = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL}[level]
    logging.basicConfig(
        level=lvl, stream=sys.stderr,
        format='time="%(asctime)s.%(msecs)03dZ" level=%(level_word)s msg="%(message)s"',
        datefmt="%Y-%m-%dT%H:%M:%S")
    for h in logging.getLogger().handlers:
        h.addFilter(_LogfmtLevel())
    logging.Formatter.converter = __import__("time").gmtime
    if lvl > logging.DEBUG:
        logging.getLogger("aiohttp").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "stop":   # `dockyard daemon stop [--all]` (daemon/stop.py)
        from dockyard.daemon import stop

        return stop.main(argv[1:])
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config_file", None)
    explicit = config_file is not None
    path = config_file or DEFAULT_CONFIG_FILE
    try:
        file_data = {}
        if explicit or __import__("os").path.exists(path):
            file_data = load_file(path)
        cfg = merge(args, file_data, path)
    except ConfigError as e:
        sys.stderr.write(f"dockyard daemon: {e}\n")
        return 1
    configure_logging(cfg.log_level)
    from dockyard.daemon.app import Daemon

    try:
        Daemon(cfg).run()
    except ConfigError as e:
        logging.getLogger("dockyard.daemon").error("%s", e)
        sys.stderr.write(f"dockyard daemon: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
