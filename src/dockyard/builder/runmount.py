"""``RUN --mount=...`` values (BuildKit's Dockerfile frontend syntax), parsed sans-IO.

``type=cache`` (``id``, ``target``, ``sharing=shared|private|locked``, ``uid``, ``gid``,
``mode``, ``ro``, ``from`` and ``source``: a stage's or an image's directory the cache
starts as), ``type=bind`` (``source``, ``target``, ``from``, ``rw``; read-only by
default), ``type=tmpfs`` (``target``, ``size``). ``secret`` and ``ssh`` need a BuildKit
session, which the classic API has not: refused with that reason.
"""

from __future__ import annotations

import csv
import posixpath
import re
from dataclasses import dataclass

from dockyard.builder.dockerfile import ParseError


@dataclass(frozen=True)
class MountSpec:
    type: str                      # "cache" | "bind" | "tmpfs"
    target: str                    # absolute, in the container
    source: str = ""               # bind: in the context or the from image; cache: in from
    from_: str = ""                # bind, cache: a stage name/index or an image reference
    readonly: bool = False
    id: str = ""                   # cache: defaults to the target
    sharing: str = "shared"
    uid: int = 0
    gid: int = 0
    mode: int = 0o755
    size: int = 0                  # tmpfs bytes (0: the kernel's default)
    # filled in by the planner
    from_stage: int | None = None
    from_image: str | None = None


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}


def _size(v: str, line: int) -> int:
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)", v.strip())
    if not m or m.group(2).lower() not in _UNITS:
        raise ParseError(line, f"invalid size for --mount: {v}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _bool(v: str | None, line: int, key: str) -> bool:
    if v is None or v.lower() in ("true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise ParseError(line, f"invalid value for --mount {key}: {v}")


def parse(value: str | None, line: int, workdir: str = "/") -> MountSpec:
    if not value:
        raise ParseError(line, "--mount needs a value (type=cache|bind|tmpfs,target=...)")
    try:
        fields = next(csv.reader([value]))
    except (csv.Error, StopIteration):
        raise ParseError(line, f"invalid --mount value: {value}") from None
    kv: dict[str, str | None] = {}
    for f in fields:
        k, sep, v = f.partition("=")
        k = k.strip().lower()
        if k in kv:
            raise ParseError(line, f"--mount {k} given twice")
        kv[k] = v if sep else None
    typ = (kv.pop("type", None) or "bind").lower()
    if typ in ("secret", "ssh"):
        raise ParseError(line, f"RUN --mount=type={typ} is not supported: secrets and SSH "
                               "agents come through a BuildKit session, which the classic "
                               "build API does not have")
    if typ not in ("cache", "bind", "tmpfs"):
        raise ParseError(line, f"unsupported mount type {typ!r}")
    target = None
    for k in ("target", "dst", "destination"):
        if k in kv:
            target = kv.pop(k)
    if not target:
        raise ParseError(line, f"--mount type={typ}: a target is needed")
    target = posixpath.normpath(posixpath.join(workdir or "/", target))
    if target == "/" or ":" in target or "," in target:
        raise ParseError(line, f"invalid --mount target: {target}")
    out: dict = {"type": typ, "target": target, "readonly": typ == "bind"}
    for k, v in kv.items():
        if k in ("source", "src") and typ in ("bind", "cache"):
            out["source"] = v or ""
        elif k == "from" and typ in ("bind", "cache"):
            out["from_"] = v or ""
        elif k in ("ro", "readonly"):
            out["readonly"] = _bool(v, line, k)
        elif k in ("rw", "readwrite"):
            out["readonly"] = not _bool(v, line, k)
        elif k == "id" and typ == "cache":
            out["id"] = v or ""
        elif k == "sharing" and typ == "cache":
            if v not in ("shared", "private", "locked"):
                raise ParseError(line, f"invalid --mount sharing: {v} (shared, private, "
                                       "locked)")
            out["sharing"] = v
        elif k in ("uid", "gid") and typ == "cache":
            if not v or not v.isdigit():
                raise ParseError(line, f"invalid --mount {k}: {v}")
            out[k] = int(v)
        elif k == "mode" and typ == "cache":
            if not v or not re.fullmatch(r"0?[0-7]{1,4}", v):
                raise ParseError(line, f"invalid --mount mode: {v}")
            out["mode"] = int(v, 8)
        elif k == "size" and typ == "tmpfs":
            out["size"] = _size(v or "", line)
        else:
            raise ParseError(line, f"unexpected key '{k}' in '{value}' for --mount "
                                   f"type={typ}")
    if typ == "cache" and not out.get("id"):
        out["id"] = target
    if typ == "cache" and out.get("source") and not out.get("from_"):
        raise ParseError(line, "--mount type=cache: source is a path in from= (a stage or "
                               "an image), and no from is given")
    return MountSpec(**out)


def from_refs(values, line: int) -> list[str]:
    """The ``from=`` of each bind or cache mount value (names or image references)."""
    out = []
    for v in values:
        m = parse(v, line)
        if m.type in ("bind", "cache") and m.from_:
            out.append(m.from_)
    return out
