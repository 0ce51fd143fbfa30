"""Listening sockets for the API: unix sockets (mode 0660, group docker) and TCP (+TLS)."""

from __future__ import annotations

import grp
import os
import socket
import ssl
import stat
from dataclasses import dataclass
from urllib.parse import urlsplit

from dockyard.daemon.config import ConfigError, DaemonConfig


@dataclass
class Listener:
    address: str            # as given: unix:///path or tcp://host:port
    sock: socket.socket
    ssl_context: ssl.SSLContext | None = None
    path: str | None = None  # unix socket path, removed at shutdown
    inode: int | None = None  # ... only if it is still the socket we created


def _unix_listener(address: str, group: str) -> Listener:
    path = address[len("unix://"):]
    if not path.startswith("/"):
        raise ConfigError(f"invalid unix socket address {address!r}: the path must be absolute")
    if len(path.encode()) > 107:
        raise ConfigError(f"unix socket path too long ({len(path)} bytes): {path}")
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale socket of a daemon that died
        else:
            raise ConfigError(f"another daemon is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # never world-accessible, even for an instant
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    gid = -1
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    if gid != -1:
        os.chown(path, 0 if os.geteuid() == 0 else -1, gid)
    os.chmod(path, 0o660)
    sock.listen(128)
    sock.setblocking(False)
    return Listener(address=address, sock=sock, path=path, inode=os.stat(path).st_ino)


def server_ssl_context(cfg: DaemonConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tlscert, cfg.tlskey)
        if cfg.tlsverify:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cfg.tlscacert)
        elif cfg.tlscacert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cfg.tlscacert)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"could not load TLS certificates: {e}") from None
    return ctx


def _tcp_listener(address: str, ctx: ssl.SSLContext | None) -> Listener:
    u = urlsplit(address)
    host = u.hostname or "0.0.0.0"
    port = u.port if u.port is not None else (2376 if ctx else 2375)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(sockaddr)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {address}: {e.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return Listener(address=address, sock=sock, ssl_context=ctx)


def open_listeners(cfg: DaemonConfig) -> list[Listener]:
    out: list[Listener] = []
    ctx = server_ssl_context(cfg) if cfg.use_tls else None
    try:
        for host in cfg.effective_hosts:
            if host.startswith("unix://"):
                out.append(_unix_listener(host, cfg.group))
            else:
                out.append(_tcp_listener(host, ctx))
    except BaseException:
        close_listeners(out)
        raise
    return out


def close_listeners(listeners: list[Listener]) -> None:
    for lst in listeners:
        try:
            lst.sock.close()
        except OSError:
            pass
        if lst.path:
            try:
                if lst.inode is None or os.lstat(lst.path).st_ino == lst.inode:
                    os.unlink(lst.path)
            except FileNotFoundError:
                pass
