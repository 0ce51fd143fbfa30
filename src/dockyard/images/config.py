"""Image configs: Docker's container config shape, times, and Dockerfile ``changes``.

``apply_changes(config, ["CMD [\"sh\"]", "ENV A=1"])`` applies the Dockerfile
instructions that ``docker import -c`` and ``docker commit -c`` accept (CMD,
ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL) to a
container config dict, parsing JSON and shell forms as Docker does.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
from datetime import datetime, timezone

from dockyard.errors import InvalidParameter

VALID_CHANGE_COMMANDS = ("cmd", "entrypoint", "env", "expose", "label", "onbuild", "user",
                         "volume", "workdir", "stopsignal")


def empty_container_config() -> dict:
    """Docker's zero ``container.Config`` as it appears in image configs."""
    return {
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
        "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
        "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
    }


_KEY_ORDER = ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
              "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck",
              "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint", "NetworkDisabled",
              "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell"]


_OMITEMPTY = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress",
              "StopSignal", "StopTimeout", "Shell")


def docker_config_view(cfg: dict | None) -> dict | None:
    """A config as Docker's API prints it: every non-omitempty field present (zero
    values filled in), empty omitempty fields dropped, fields in Go struct order."""
    if cfg is None:
        return None
    out = {**empty_container_config(), **cfg}
    for k in _OMITEMPTY:
        if k in out and out[k] in (None, "", False, {}, [], 0):
            del out[k]
    return ordered_config(out)


def ordered_config(cfg: dict) -> dict:
    out = {k: cfg[k] for k in _KEY_ORDER if k in cfg}
    out.update({k: v for k, v in cfg.items() if k not in out})
    return out


def rfc3339(ts: float | None = None) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed."""
    if ts is None:
        ns = time.time_ns()
    else:
        ns = int(ts * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    f = f"{frac:09d}".rstrip("0")
    return f"{base}.{f}Z" if f else f"{base}Z"


_TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def parse_time(s: str | None) -> float:
    """Parse an RFC 3339 time (nanoseconds allowed); 0 for empty or invalid."""
    if not s:
        return 0.0
    m = _TS_RE.match(s.strip())
    if not m:
        return 0.0
    base, frac, tz = m.groups()
    tz = "+00:00" if tz == "Z" else tz
    try:
        dt = datetime.fromisoformat(base + tz)
    except ValueError:
        return 0.0
    return dt.timestamp() + (float("0" + frac) if frac else 0.0)


def normalize_time(s: str | None) -> str:
    """A config time as Docker prints it (RFC3339Nano, UTC kept as Z)."""
    if not s:
        return "0001-01-01T00:00:00Z"
    m = _TS_RE.match(s.strip())
    if not m:
        return s
    base, frac, tz = m.groups()
    frac = (frac or "").rstrip("0")
    if frac == ".":
        frac = ""
    return f"{base}{frac}{tz}"


# -- Dockerfile word processing ---------------------------------------------------------

def _expand(word: str, env: dict[str, str]) -> str:
    """Shell-like unquoting and $VAR / ${VAR} / ${VAR:-x} / ${VAR:+x} expansion."""
    out = []
    i = 0
    n = len(word)
    quote = None
    while i < n:
        c = word[i]
        if quote == "'":
            if c == "'":
                quote = None
            else:
                out.append(c)
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            if quote == '"' and word[i + 1] not in '"\\$':
                out.append(c)
            out.append(word[i + 1])
            i += 2
            continue
        if c in "'\"" and quote is None:
            quote = c
            i += 1
            continue
        if c == '"' and quote == '"':
            quote = None
            i += 1
            continue
        if c == "$" and i + 1 < n:
            if word[i + 1] == "{":
                j = word.find("}", i + 2)
                if j == -1:
                    raise InvalidParameter(f"missing '}}' in {word!r}")
                expr = word[i + 2:j]
                m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$", expr, re.S)
                if not m:
                    raise InvalidParameter(f"bad substitution in {word!r}")
                name, op, alt = m.groups()
                val = env.get(name, "")
                if op == "-":
                    val = val if val else _expand(alt, env)
                elif op == "+":
                    val = _expand(alt, env) if val else ""
                out.append(val)
                i = j + 1
                continue
            m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", word[i + 1:])
            if m:
                out.append(env.get(m.group(0), ""))
                i += 1 + len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _split_words(s: str) -> list[str]:
    """Split on unquoted whitespace, keeping quotes (Docker's parseWords)."""
    words, cur, quote, i = [], [], None, 0
    while i < len(s):
        c = s[i]
        if quote is None and c.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
            i += 1
            continue
        if c == "\\" and quote != "'" and i + 1 < len(s):
            cur.append(c + s[i + 1])
            i += 2
            continue
        if quote is None and c in "'\"":
            quote = c
        elif quote == c:
            quote = None
        cur.append(c)
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def _env_map(cfg: dict) -> dict[str, str]:
    out = {}
    for e in cfg.get("Env") or []:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def _name_values(cmd: str, rest: str, env: dict[str, str]) -> list[tuple[str, str]]:
    words = _split_words(rest)
    if not words:
        raise InvalidParameter(f"{cmd} requires at least one argument")
    if "=" not in words[0]:
        # legacy form: NAME value with spaces
        parts = rest.strip().split(None, 1)
        if len(parts) < 2:
            raise InvalidParameter(f"{cmd} must have two arguments")
        return [(parts[0], _expand(parts[1], env))]
    out = []
    for w in words:
        if "=" not in w:
            raise InvalidParameter(
                f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        k, _, v = w.partition("=")
        k = _expand(k, env)
        if not k:
            raise InvalidParameter(f"{cmd} names can not be blank")
        out.append((k, _expand(v, env)))
    return out


def _json_or_shell(rest: str) -> tuple[list[str], bool]:
    s = rest.strip()
    if s.startswith("["):
        try:
            v = json.loads(s)
            if isinstance(v, list) and all(isinstance(x, str) for x in v):
                return v, True
        except ValueError:
            pass
    return ["/bin/sh", "-c", s], False


def _ports(words: list[str]) -> list[str]:
    out = []
    for w in words:
        spec, _, proto = w.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidParameter(f"invalid proto: {proto}")
        if ":" in spec:
            spec = spec.rsplit(":", 1)[1]
        lo, _, hi = spec.partition("-")
        try:
            a = int(lo)
            b = int(hi) if hi else a
        except ValueError:
            raise InvalidParameter(f"invalid containerPort: {spec}") from None
        if not (0 < a <= 65535 and 0 < b <= 65535 and a <= b):
            raise InvalidParameter(f"invalid containerPort: {spec}")
        out.extend(f"{p}/{proto}" for p in range(a, b + 1))
    return out


def apply_changes(cfg: dict | None, changes: list[str] | tuple[str, ...]) -> dict:
    """Return a new container config with the Dockerfile ``changes`` applied."""
    cfg = json.loads(json.dumps(cfg)) if cfg else empty_container_config()
    cmd_set = False
    lines: list[str] = []
    for change in changes or ():
        # a change may hold several lines; continuation backslashes join them
        text = re.sub(r"\\\r?\n", "", change)
        lines.extend(line for line in text.splitlines() if line.strip()
                     and not line.lstrip().startswith("#"))
    for line in lines:
        parts = line.strip().split(None, 1)
        instr = parts[0].lower()
        rest = parts[1] if len(parts) > 1 else ""
        if instr not in VALID_CHANGE_COMMANDS:
            raise InvalidParameter(f"{instr} is not a valid change command")
        env = _env_map(cfg)
        if instr == "cmd":
            cfg["Cmd"], _ = _json_or_shell(rest)
            cmd_set = True
        elif instr == "entrypoint":
            ep, is_json = _json_or_shell(rest)
            if not is_json and not rest.strip():
                ep = None
            cfg["Entrypoint"] = ep
            if not cmd_set:
                cfg["Cmd"] = None
        elif instr == "env":
            envlist = list(cfg.get("Env") or [])
            for k, v in _name_values("ENV", rest, env):
                if any(e.partition("=")[0] == k for e in envlist):
                    envlist = [f"{k}={v}" if e.partition("=")[0] == k else e for e in envlist]
                else:
                    envlist.append(f"{k}={v}")
                env[k] = v
            cfg["Env"] = envlist
        elif instr == "label":
            labels = dict(cfg.get("Labels") or {})
            for k, v in _name_values("LABEL", rest, env):
                labels[k] = v
            cfg["Labels"] = labels
        elif instr == "expose":
            words = [_expand(w, env) for w in _split_words(rest)]
            if not words:
                raise InvalidParameter("EXPOSE requires at least one argument")
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in _ports(words):
                ports[p] = {}
            cfg["ExposedPorts"] = ports
        elif instr == "volume":
            s = rest.strip()
            vols = None
            if s.startswith("["):
                try:
                    v = json.loads(s)
                    if isinstance(v, list) and all(isinstance(x, str) for x in v):
                        vols = v
                except ValueError:
                    pass
            if vols is None:
                vols = [_expand(w, env) for w in _split_words(s)]
            if not vols:
                raise InvalidParameter("VOLUME requires at least one argument")
            volumes = dict(cfg.get("Volumes") or {})
            for v in vols:
                if not v.strip():
                    raise InvalidParameter("VOLUME specified can not be an empty string")
                volumes[v.strip()] = {}
            cfg["Volumes"] = volumes
        elif instr == "user":
            if not rest.strip():
                raise InvalidParameter("USER requires exactly one argument")
            cfg["User"] = _expand(rest.strip(), env)
        elif instr == "workdir":
            if not rest.strip():
                raise InvalidParameter("WORKDIR requires exactly one argument")
            wd = _expand(rest.strip(), env)
            if not wd.startswith("/"):
                wd = posixpath.join(cfg.get("WorkingDir") or "/", wd)
            cfg["WorkingDir"] = posixpath.normpath(wd) if wd != "/" else "/"
        elif instr == "stopsignal":
            if not rest.strip():
                raise InvalidParameter("STOPSIGNAL requires exactly one argument")
            cfg["StopSignal"] = _expand(rest.strip(), env)
        elif instr == "onbuild":
            trig = rest.strip().split(None, 1)
            if not trig:
                raise InvalidParameter("ONBUILD requires at least one argument")
            t = trig[0].upper()
            if t in ("ONBUILD",):
                raise InvalidParameter("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
            if t in ("MAINTAINER", "FROM"):
                raise InvalidParameter(f"{t} isn't allowed as an ONBUILD trigger")
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [
                t + (" " + trig[1] if len(trig) > 1 else "")]
    return ordered_config(cfg)


def docker_version() -> str:
    return os.environ.get("DOCKYARD_DOCKER_VERSION", "20.10.24")
