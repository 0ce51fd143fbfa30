"""Where this copy of Dockyard came from: its Git commit and build time.

An installed copy (``scripts/install``, what ``scripts/demo`` runs) carries
``dockyard/_buildstamp.py``, written into the copy it builds the wheel from;
a source checkout (an editable install, ``python -m dockyard`` from the clone)
has no stamp and reads the commit from ``.git`` without spawning git.
Imports nothing beyond the standard modules already loaded at start.
"""

from __future__ import annotations

import os

_cache: dict[str, str] = {}


def _stamp() -> dict[str, str]:
    if not _cache:
        try:
            from dockyard import _buildstamp  # type: ignore[attr-defined]
            _cache["commit"] = _buildstamp.GIT_COMMIT
            _cache["built"] = _buildstamp.BUILD_TIME
        except ImportError:
            _cache["commit"] = _checkout_commit()
            _cache["built"] = ""
    return _cache


def git_commit() -> str:
    """The 7-digit commit this copy was built from ("" when not known)."""
    return _stamp()["commit"]


def build_time() -> float | None:
    """Seconds since the epoch when the installed copy was built; None for a checkout."""
    b = _stamp()["built"]
    return float(b) if b else None


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _checkout_commit() -> str:
    d = os.path.dirname(os.path.abspath(__file__))
    while True:
        git = os.path.join(d, ".git")
        if os.path.isdir(git):
            break
        parent = os.path.dirname(d)
        if parent == d:
            return ""
        d = parent
    try:
        ref = _read(os.path.join(git, "HEAD"))
        if not ref.startswith("ref: "):
            return ref[:7]
        name = ref[5:]
        p = os.path.join(git, name)
        if os.path.isfile(p):
            return _read(p)[:7]
        for line in _read(os.path.join(git, "packed-refs")).splitlines():
            if line.endswith(" " + name):
                return line[:7]
    except OSError:
        pass
    return ""
