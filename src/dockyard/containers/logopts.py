"""The json-file (and local) log driver's options, as dockerd 20.10 reads them.

At create (``check``): the driver and option names, ``mode`` and ``max-buffer-size``
(dockerd's words, 400). At start (``settings``): the values (sizes, counts, ``compress``)
and the attrs every entry carries: container labels listed in ``labels`` or matching
``labels-regex``, environment variables listed in ``env`` or matching ``env-regex``, and
``tag`` (dockerd's template over its logger.Info; json-file adds it only when given).
A bad value fails the start as dockerd's does ("failed to initialize logging driver: ...").
"""

from __future__ import annotations

import re
import socket
import time

from dockyard import errors
from dockyard.supervisor import jsonlog

# the drivers dockerd registers; those we have: json-file, local (kept as json-file:
# `docker logs` reads both), none (nothing kept)
DRIVERS_OURS = ("json-file", "local", "none")
DRIVERS_DOCKER = ("syslog", "journald", "gelf", "fluentd", "awslogs", "splunk",
                  "gcplogs", "logentries", "etwlogs")
_JSON_FILE_OPTS = ("max-size", "max-file", "compress", "labels", "labels-regex", "env",
                   "env-regex", "tag")
_LOCAL_OPTS = ("max-size", "max-file", "compress")
_MODE_OPTS = ("mode", "max-buffer-size")   # dockerd's, for every driver


def check(host: dict) -> None:
    """LogConfig as dockerd fills it (json-file when unset), checked at create."""
    lc = dict(host.get("LogConfig") or {})
    lc["Type"] = lc.get("Type") or "json-file"
    lc["Config"] = lc.get("Config") or {}
    kind, cfg = lc["Type"], lc["Config"]
    if kind in DRIVERS_DOCKER:
        raise errors.InvalidParameter(
            f"failed to create logger: the {kind} log driver is not supported by Dockyard "
            f"(json-file, local and none are)")
    if kind not in DRIVERS_OURS:   # dockerd's words (a 404 the CLI shows)
        raise errors.InvalidParameter(
            f'error looking up logging plugin {kind}: plugin "{kind}" not found')
    mode = cfg.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise errors.InvalidParameter(f"logger: logging mode not supported: {mode}")
    if "max-buffer-size" in cfg and mode != "non-blocking":
        raise errors.InvalidParameter(
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'")
    if mode == "non-blocking":
        raise errors.InvalidParameter(
            "logger: mode=non-blocking is not supported by Dockyard: its logging is always "
            "blocking (no output is dropped); leave mode unset or use mode=blocking")
    for opt in cfg:
        if opt in _MODE_OPTS:
            continue
        if kind == "none":
            raise errors.InvalidParameter(f"unknown log opt '{opt}' for none log driver")
        if kind == "json-file" and opt not in _JSON_FILE_OPTS:
            raise errors.InvalidParameter(f"unknown log opt '{opt}' for json-file log driver")
        if kind == "local" and opt not in _LOCAL_OPTS:
            raise errors.InvalidParameter(f"unknown log opt '{opt}' for log driver local")
    host["LogConfig"] = lc


def _failed(msg: str) -> errors.DockyardError:
    return errors.SystemError_(f"failed to initialize logging driver: {msg}")


def _parse_bool(name: str, v: str) -> bool:
    """Go's strconv.ParseBool."""
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise _failed(f'strconv.ParseBool: parsing "{v}": invalid syntax')


def settings(c: dict) -> dict:
    """The supervisor's log settings for a start: max_size, max_file, compress, attrs.
    Raises dockerd's start errors for values it refuses."""
    lc = c["HostConfig"].get("LogConfig") or {}
    cfg = lc.get("Config") or {}
    try:
        max_size = jsonlog.parse_size(cfg.get("max-size", "10m"))
    except ValueError as e:
        m = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?", cfg["max-size"], re.I)
        if m and int(float(m.group(1)) * 1024 ** " kmgtp".index(m.group(2).lower() or " ")) == 0:
            raise _failed("max-size must be a positive number") from None   # 0, 0k, 0.5
        raise _failed(str(e)) from None
    max_file = 3
    if "max-file" in cfg:
        v = cfg["max-file"]
        if not re.fullmatch(r"[+-]?\d+", v):
            raise _failed(f'strconv.Atoi: parsing "{v}": invalid syntax')
        max_file = int(v)
        if max_file < 1:
            raise _failed("max-file cannot be less than 1")
    compress = _parse_bool("compress", cfg["compress"]) if "compress" in cfg else False
    if compress and max_file < 2:
        raise _failed("compress cannot be true when max-file is less than 2 or max-size "
                      "is not set")
    attrs = extra_attributes(c, cfg)
    if cfg.get("tag"):
        attrs["tag"] = _tag(c, cfg)
    return {"log_max_size": max_size, "log_max_file": max_file, "log_compress": compress,
            "log_attrs": attrs}


def _compile(pattern: str):
    try:
        return re.compile(pattern)
    except re.error as e:
        raise _failed(f"error parsing regexp: {e}: `{pattern}`") from None


def extra_attributes(c: dict, cfg: dict) -> dict:
    """dockerd's logger.Info.ExtraAttributes: labels by name then by regexp, then the
    environment by name then by regexp (a later one wins a key)."""
    labels = c["Config"].get("Labels") or {}
    env: dict[str, str] = {}
    for kv in c["Config"].get("Env") or []:
        if "=" in kv:
            k, v = kv.split("=", 1)
            env[k] = v
    extra: dict[str, str] = {}
    for names, regex, source in ((cfg.get("labels"), cfg.get("labels-regex"), labels),
                                 (cfg.get("env"), cfg.get("env-regex"), env)):
        if names:
            for k in names.split(","):
                if k in source:
                    extra[k] = source[k]
        if regex:
            rx = _compile(regex)
            for k, v in source.items():
                if rx.search(k):
                    extra[k] = v
    return extra


def _go_time(rfc3339: str) -> str:
    """A time as Go's time.Time String() prints it (UTC)."""
    ns = jsonlog.parse_rfc3339nano(rfc3339)
    secs, frac = divmod(ns, 1_000_000_000)
    s = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
    if frac:
        s += f".{frac:09d}".rstrip("0")
    return s + " +0000 UTC"


def _tag(c: dict, cfg: dict) -> str:
    from dockyard.cli.format import Context, Template, TemplateError

    image_id = c.get("Image") or ""

    class Info(Context):
        """dockerd's logger.Info: its fields and methods, as a tag template sees them."""
        FIELDS = ("Config", "ContainerID", "ContainerName", "ContainerEntrypoint",
                  "ContainerArgs", "ContainerImageID", "ContainerImageName",
                  "ContainerCreated", "ContainerEnv", "ContainerLabels", "LogPath",
                  "DaemonName")
        Config = cfg
        ContainerID = FullID = c["Id"]
        ContainerName = c.get("Name") or ""
        ContainerEntrypoint = c.get("Path") or ""
        ContainerArgs = list(c.get("Args") or [])
        ContainerImageID = image_id
        ContainerImageName = ImageName = c["Config"].get("Image") or ""
        ContainerCreated = property(lambda self: _go_time(c["Created"]))
        ContainerEnv = list(c["Config"].get("Env") or [])
        ContainerLabels = dict(c["Config"].get("Labels") or {})
        LogPath = c.get("LogPath") or ""
        DaemonName = "docker"   # what dockerd passes: templates written for it still work
        ID = c["Id"][:12]
        Name = (c.get("Name") or "").lstrip("/")
        ImageID = image_id[:12]   # dockerd 20.10 cuts the "sha256:..." string itself
        ImageFullID = image_id.split(":", 1)[-1]
        Command = " ".join([c.get("Path") or ""] + list(c.get("Args") or []))
        Hostname = property(lambda self: socket.gethostname())

    Info.__name__ = "logger.Info"
    try:
        return Template(cfg["tag"]).execute(Info())
    except TemplateError as e:
        msg = str(e)
        for prefix in ("template parsing error: template: :1: ", "template: :1: "):
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
        msg = msg.replace('executing "":', 'executing "log-tag":', 1)
        raise _failed(f"template: log-tag:1: {msg}") from None

