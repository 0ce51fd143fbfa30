"""Registry settings: a JSON config file, overridden by command-line flags.

    {
      "addr": "127.0.0.1:5000",
      "root": "/var/lib/dockyard-registry",
      "read_only": false,
      "delete": true,
      "tls": {"cert": "server.crt", "key": "server.key"},
      "auth": {
        "type": "none" | "basic" | "token",
        "htpasswd": "users.htpasswd",
        "anonymous_read": false,
        "realm": "https://host/token",      # default: this server's /token
        "service": "dockyard-registry",
        "issuer": "dockyard-token-issuer",
        "key": "token-key.pem",              # default: generated under root/auth
        "ttl": 300,
        "access": {"alice": ["pull", "push"], "bob": ["pull"]}
      }
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class RegistryConfig:
    addr: str = "127.0.0.1:5000"
    root: str = "/var/lib/dockyard-registry"
    read_only: bool = False
    delete: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    auth: str = "none"
    htpasswd: str | None = None
    anonymous_read: bool = False
    token_realm: str | None = None
    token_service: str = "dockyard-registry"
    token_issuer: str = "dockyard-token-issuer"
    token_key: str | None = None
    token_ttl: int = 300
    access: dict | None = field(default=None, hash=False)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.addr.rpartition(":")
        if not host:
            host = "0.0.0.0"
        return host.strip("[]"), int(port)

    def validate(self) -> list[str]:
        problems = []
        try:
            _, port = self.host_port
            if not 0 <= port < 65536:
                problems.append(f"bad port in --addr {self.addr}")
        except ValueError:
            problems.append(f"--addr must be HOST:PORT, not {self.addr!r}")
        if self.auth not in ("none", "basic", "token"):
            problems.append(f"--auth must be none, basic or token, not {self.auth!r}")
        if self.auth == "basic" and not self.htpasswd:
            problems.append("--auth basic needs --htpasswd")
        if self.auth == "token" and not self.htpasswd and not self.anonymous_read:
            problems.append("--auth token needs --htpasswd (or --anonymous-read)")
        if self.htpasswd and not Path(self.htpasswd).is_file():
            problems.append(f"htpasswd file {self.htpasswd} does not exist")
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("--tls-cert and --tls-key go together")
        for p in (self.tls_cert, self.tls_key):
            if p and not Path(p).is_file():
                problems.append(f"{p} does not exist")
        if self.access is not None and not isinstance(self.access, dict):
            problems.append("access must be an object mapping accounts to actions")
        if self.token_ttl <= 0:
            problems.append("token ttl must be positive")
        return problems


def load_file(path: str) -> dict:
    """The config file, flattened to RegistryConfig field names."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the config must be a JSON object")
    out: dict = {}
    for key in ("addr", "root", "read_only", "delete"):
        if key in raw:
            out[key] = raw[key]
    tls = raw.get("tls") or {}
    if "cert" in tls:
        out["tls_cert"] = tls["cert"]
    if "key" in tls:
        out["tls_key"] = tls["key"]
    auth = raw.get("auth") or {}
    mapping = {"type": "auth", "htpasswd": "htpasswd", "anonymous_read": "anonymous_read",
               "realm": "token_realm", "service": "token_service", "issuer": "token_issuer",
               "key": "token_key", "ttl": "token_ttl", "access": "access"}
    for k, v in auth.items():
        if k not in mapping:
            raise ValueError(f"{path}: unknown auth setting {k!r}")
        out[mapping[k]] = v
    if "access" in raw:
        out["access"] = raw["access"]
    # Relative paths in the file are relative to the file.
    base = Path(path).resolve().parent
    for k in ("root", "tls_cert", "tls_key", "htpasswd", "token_key"):
        if isinstance(out.get(k), str) and not Path(out[k]).is_absolute():
            out[k] = str(base / out[k])
    return out


def build(file: str | None, overrides: dict) -> RegistryConfig:
    values = load_file(file) if file else {}
    names = {f.name for f in fields(RegistryConfig)}
    for k, v in overrides.items():
        if k in names and v is not None:
            values[k] = v
    return replace(RegistryConfig(), **values)
