"""Registry credentials in the Docker CLI's ``config.json``, so ours and the real
``docker`` CLI share logins.

    ~/.docker/config.json  (or $DOCKER_CONFIG/config.json)
    {"auths": {"127.0.0.1:5000": {"auth": "<base64 user:password>"}},
     "credsStore": "pass",                       # default helper, optional
     "credHelpers": {"registry.example": "ecr"}}  # per registry, optional

A helper named ``X`` is the program ``docker-credential-X``, spoken to on
stdin/stdout: ``get`` (server URL in, ``{"ServerURL","Username","Secret"}``
out), ``store`` (that JSON in) and ``erase`` (server URL in). An identity
token is stored as user ``<token>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from dockyard import boundedjson

HUB_SERVER = "https://index.docker.io/v1/"
TOKEN_USER = "<token>"


class CredentialsError(Exception):
    pass


class AuthConfig:
    # a plain class: dataclasses costs `dockyard build` ~10 ms of imports (inspect)
    __slots__ = ("username", "password", "serveraddress", "identitytoken")

    def __init__(self, username: str = "", password: str = "", serveraddress: str = "",
                 identitytoken: str = "") -> None:
        self.username, self.password = username, password
        self.serveraddress, self.identitytoken = serveraddress, identitytoken

    def _fields(self) -> tuple:
        return (self.username, self.password, self.serveraddress, self.identitytoken)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()   # type: ignore[attr-defined]

    __hash__ = None   # type: ignore[assignment]  (mutable, as the dataclass was)

    def __repr__(self) -> str:
        return ("AuthConfig(username={!r}, password={!r}, serveraddress={!r}, "
                "identitytoken={!r})".format(*self._fields()))

    def to_json(self) -> dict:
        d = {"username": self.username, "password": self.password,
             "serveraddress": self.serveraddress}
        if self.identitytoken:
            d["identitytoken"] = self.identitytoken
        return d

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identitytoken)


def config_dir(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    d = env.get("DOCKER_CONFIG")
    if d:
        return Path(d)
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".docker"


def config_path(env: dict | None = None) -> Path:
    return config_dir(env) / "config.json"


def server_key(server: str | None) -> str:
    """How config.json names a registry: Docker Hub is ``https://index.docker.io/v1/``,
    others their ``host[:port]`` (a scheme or path the user typed is dropped)."""
    s = (server or "").strip()
    if not s or s in ("docker.io", "index.docker.io", "registry-1.docker.io") or \
            "index.docker.io" in s or s.rstrip("/").endswith("://docker.io"):
        return HUB_SERVER
    if "://" in s:
        s = s.split("://", 1)[1]
    return s.split("/", 1)[0]


def registry_host(server: str | None) -> str:
    """The domain an image reference uses for this server (``docker.io`` for the Hub)."""
    k = server_key(server)
    return "docker.io" if k == HUB_SERVER else k


def load(path: Path | None = None) -> dict:
    path = path or config_path()
    try:
        data = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise CredentialsError(f"loading config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"loading config file {path}: not a JSON object")
    return data


def save(data: dict, path: Path | None = None) -> None:
    path = path or config_path()
    import tempfile
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _helper_for(data: dict, key: str) -> str | None:
    helpers = data.get("credHelpers") or {}
    if isinstance(helpers, dict) and helpers.get(key):
        return helpers[key]
    store = data.get("credsStore")
    return store or None


def _run_helper(name: str, action: str, payload: str) -> str:
    import subprocess
    prog = f"docker-credential-{name}"
    try:
        p = subprocess.run([prog, action], input=payload.encode(), capture_output=True, timeout=60)
    except FileNotFoundError:
        raise CredentialsError(f'error getting credentials - err: exec: "{prog}": executable file '
                               "not found in $PATH, out: ``") from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"{prog} {action}: timed out") from None
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0:
        raise CredentialsError(out or p.stderr.decode(errors="replace").strip()
                               or f"{prog} {action} failed")
    return out


def _not_found(message: str) -> bool:
    return "credentials not found" in message.lower()


def get(server: str | None, path: Path | None = None) -> AuthConfig:
    """Credentials for ``server`` (an empty AuthConfig when none are stored)."""
    key = server_key(server)
    data = load(path)
    helper = _helper_for(data, key)
    if helper:
        try:
            out = _run_helper(helper, "get", key)
        except CredentialsError as e:
            if _not_found(str(e)):
                return AuthConfig(serveraddress=key)
            raise
        try:
            d = json.loads(out)
        except ValueError:
            raise CredentialsError(f"docker-credential-{helper}: bad answer {out!r}") from None
        user, secret = d.get("Username", ""), d.get("Secret", "")
        if user == TOKEN_USER:
            return AuthConfig(serveraddress=key, identitytoken=secret)
        return AuthConfig(user, secret, key)
    entry = (data.get("auths") or {}).get(key)
    if entry is None and key != HUB_SERVER:
        # entries written with a scheme (http://host:port) still count
        for k, v in (data.get("auths") or {}).items():
            if server_key(k) == key:
                entry = v
                break
    if not isinstance(entry, dict):
        return AuthConfig(serveraddress=key)
    user, password = entry.get("username", ""), entry.get("password", "")
    if entry.get("auth"):
        try:
            raw = base64.b64decode(entry["auth"]).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"invalid auth configuration for {key}") from None
        user, sep, password = raw.partition(":")
        if not sep:
            raise CredentialsError("invalid auth configuration file")
    return AuthConfig(user, password, key, entry.get("identitytoken", ""))


def store(server: str | None, username: str, password: str, path: Path | None = None) -> None:
    key = server_key(server)
    data = load(path)
    helper = _helper_for(data, key)
    auths = data.setdefault("auths", {})
    if helper:
        _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username,
                                                 "Secret": password}))
        auths[key] = {}
    else:
        raw = base64.b64encode(f"{username}:{password}".encode()).decode()
        auths[key] = {"auth": raw}
    save(data, path)


def erase(server: str | None, path: Path | None = None) -> bool:
    """Forget ``server``'s credentials; False if there were none."""
    key = server_key(server)
    data = load(path)
    helper = _helper_for(data, key)
    auths = data.get("auths") or {}
    found = key in auths
    if helper:
        try:
            _run_helper(helper, "erase", key)
            found = True
        except CredentialsError as e:
            if not _not_found(str(e)):
                raise
    if key in auths:
        del auths[key]
        save(data, path)
    return found


def encode_header(auth: AuthConfig | dict | None) -> str:
    """``X-Registry-Auth``: base64url of the JSON auth config (``e30=`` when empty)."""
    if auth is None:
        return "e30="
    d = auth.to_json() if isinstance(auth, AuthConfig) else dict(auth)
    if isinstance(auth, AuthConfig) and auth.empty:
        return "e30="
    return base64.urlsafe_b64encode(json.dumps(d).encode()).decode()


def _json_header(value: str | None) -> dict | None:
    """A header holding base64 JSON (base64url or standard, padding optional): the
    object, or None when absent, undecodable or not an object."""
    if not value:
        return None
    v = value.strip()
    raw = None
    for dec in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            raw = dec(v + "=" * (-len(v) % 4))
            break
        except (binascii.Error, ValueError):
            continue
    if raw is None:
        return None
    try:
        d = boundedjson.loads(raw or b"{}")   # a client's header: nested 20k deep is refused
    except ValueError:
        return None
    return d if isinstance(d, dict) else None


def decode_header(value: str | None) -> AuthConfig:
    """Parse ``X-Registry-Auth`` (base64url or standard, padding optional)."""
    d = _json_header(value)
    if d is None:
        return AuthConfig()
    return AuthConfig(str(d.get("username") or ""), str(d.get("password") or ""),
                      str(d.get("serveraddress") or ""), str(d.get("identitytoken") or ""))


def as_credentials(auth: AuthConfig | None) -> tuple[str, str] | None:
    """What the registry client takes: (user, password), or None for anonymous."""
    if auth is None or auth.empty:
        return None
    if auth.identitytoken and not auth.password:
        from dockyard.distribution.client import IdentityToken

        return IdentityToken((auth.username or TOKEN_USER, auth.identitytoken))
    return (auth.username, auth.password)


def decode_config_header(value: str | None) -> dict[str, AuthConfig]:
    """Parse ``X-Registry-Config`` (what ``docker build`` and docker-py send: base64url
    JSON of registry -> auth config, as in config.json); keys are normalized with
    :func:`server_key`. Undecodable headers and entries are ignored, as dockerd does."""
    d = _json_header(value)
    out: dict[str, AuthConfig] = {}
    if d is None:
        return out
    for key, e in d.items():
        if not isinstance(e, dict):
            continue
        user, password = str(e.get("username") or ""), str(e.get("password") or "")
        if e.get("auth") and not user:
            try:
                user, _, password = base64.b64decode(str(e["auth"])).decode().partition(":")
            except (binascii.Error, ValueError):
                continue
        out[server_key(str(key))] = AuthConfig(user, password,
                                               str(e.get("serveraddress") or key),
                                               str(e.get("identitytoken") or ""))
    return out


def for_registry(configs: dict[str, AuthConfig], domain: str) -> tuple[str, str] | None:
    """The credentials of ``configs`` (from :func:`decode_config_header`) for an image
    reference's domain, as the registry client takes them."""
    return as_credentials(configs.get(server_key(domain)))


def encode_config_header(path: Path | None = None) -> str:
    """``X-Registry-Config`` as the docker CLI sends it with a build: every stored login
    (helpers asked too), base64url JSON of registry -> auth config; an unreadable
    config or helper leaves that registry out."""
    try:
        data = load(path)
    except CredentialsError:
        return base64.urlsafe_b64encode(b"{}").decode()
    keys = set((data.get("auths") or {}).keys()) | set((data.get("credHelpers") or {}).keys())
    out = {}
    for k in sorted(keys):
        try:
            a = get(k, path)
        except CredentialsError:
            continue
        if not a.empty:
            out[server_key(k)] = a.to_json()
    return base64.urlsafe_b64encode(json.dumps(out).encode()).decode()
