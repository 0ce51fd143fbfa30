"""What the parts of the image service share: media types, snapshot key prefixes,
chain IDs, short IDs, digest references and the filters of ``list`` and ``prune``."""

from __future__ import annotations

import hashlib
import time
from typing import Callable

from dockyard.errors import InvalidParameter
from dockyard.images import reference as refs
from dockyard.images.config import parse_time

MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_MEDIA = {"none": MEDIA_LAYER_TAR, "gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD}
EXTRACT_PREFIX = "extract-"
INTERNAL_INGESTS = ("import-", "load-", "commit-", "write-")

UsageChecker = Callable[[str], list]


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


def _digest_ref(r: refs.Reference) -> refs.Reference:
    """Digest references are stored as ``repo@sha256:...`` (Docker drops the tag)."""
    return refs.Reference(r.domain, r.path, None, r.digest)


def _norm_filters(filters) -> dict[str, list[str]]:
    """Accept {"k": ["v"]}, {"k": {"v": True}} (the API's form) or {"k": "v"}."""
    out: dict[str, list[str]] = {}
    for k, v in (filters or {}).items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, str):
            out[k] = [v]
        else:
            out[k] = list(v)
    return out


def _label_match(labels: dict, f: str) -> bool:
    k, eq, v = f.partition("=")
    if k not in labels:
        return False
    return not eq or labels[k] == v


def _parse_until(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        pass
    t = parse_time(v)
    if t:
        return t
    import re
    m = re.fullmatch(r"(\d+)([smh])", v)
    if m:
        mult = {"s": 1, "m": 60, "h": 3600}[m.group(2)]
        return time.time() - int(m.group(1)) * mult
    raise InvalidParameter(f"invalid filter 'until={v}'")
