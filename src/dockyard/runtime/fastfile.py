"""The plain file `create` writes beside state.json for the launcher's sh fast path.

``<root>/<id>/fast`` (0600, in the 0700 state directory) is a POSIX sh file
that ``dockyard-runc``'s ``#!/bin/sh`` front (``launcher.py``) sources to
serve ``start``, ``kill``, ``kill --all``, ``delete`` and ``state`` without starting
Python. Every value is single-quoted or a plain number; a container whose
values could not be written so (a cgroup path with white space, annotations
that are not strings) gets no file, and then every command goes to Python.

It holds what does not change after create: the init's pid and start time
(clock ticks, /proc/PID/stat field 22), whether the spec has poststop or
poststart hooks,
the cgroup directories (the manager's ``fast_paths``), the freezer's state
file and its frozen text, and the state document's text around its two
derived fields (status, pid), rendered as ``json.dumps(doc, indent=2)`` would.

Written after state.json (a create killed before that leaves no file: Python
serves the "creating" container) and removed first by ``Store.remove``.
"""

from __future__ import annotations

from dockyard.runtime import fastos as os

from . import fastjson
from .launcher import FAST_FILE, FAST_VERSION

_BAD_PATH_CHARS = frozenset(" \t\n\r\v\f'\\\"$`*?[]")


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _path_ok(p: str | None) -> bool:
    return (p is None or (isinstance(p, str) and p.startswith("/") and p.isprintable()
                          and not _BAD_PATH_CHARS & set(p)))


def render_state(doc: dict) -> tuple[str, str] | None:
    """(text before ``"status"``, text after ``"pid": N,\\n``) of ``json.dumps(doc,
    indent=2)`` for the state document's shape (strings, an int pid, a dict of
    string annotations), without importing ``json``; None for any other shape."""
    ann = doc.get("annotations")
    if not isinstance(ann, dict):
        return None
    enc = fastjson.dumps
    parts = []
    for key, value in doc.items():
        if key == "annotations":
            if not ann:
                parts.append('  "annotations": {}')
                continue
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
                return None
            inner = ",\n".join(f"    {enc(k)}: {enc(v)}" for k, v in ann.items())
            parts.append('  "annotations": {\n' + inner + "\n  }")
        elif key in ("status", "pid"):
            parts.append(None)
        elif isinstance(value, str):
            parts.append(f"  {enc(key)}: {enc(value)}")
        else:
            return None
    i = parts.index(None)
    if parts[i + 1] is not None:
        return None
    return "{\n" + "".join(p + ",\n" for p in parts[:i]) + "  ", \
        ",\n".join(parts[i + 2:]) + "\n}"


def write(state_dir: str, state: dict, mgr, doc: dict) -> bool:
    """Write the file for a created container (``state``: as saved; ``doc``: its
    OCI state document, any status and pid). False (and no file) when some value
    cannot be served by the sh side."""
    path = os.path.join(state_dir, FAST_FILE)
    priv = state.get("dockyard") or {}
    pid, start = state.get("pid"), priv.get("starttime")
    hooks = (priv.get("spec") or {}).get("hooks") or {}
    text = None
    if (type(pid) is int and pid > 0 and type(start) is int and start >= 0
            and mgr is not None and hasattr(mgr, "fast_paths")):
        dirs, procs, freezer, frozen = mgr.fast_paths()
        rendered = render_state(doc)
        if (rendered and procs and all(_path_ok(d) for d in (*dirs, procs, freezer))
                and frozen.isalnum()):
            pre, post = rendered
            text = (f"# dockyard-runc's sh fast path (runtime/fastfile.py, launcher.py)\n"
                    f"dy_v={FAST_VERSION}\ndy_pid={pid}\ndy_start={start}\n"
                    f"dy_hooks={1 if hooks.get('poststop') else 0}\n"
                    f"dy_poststart={1 if hooks.get('poststart') else 0}\n"
                    f"dy_procs={_q(procs)}\n"
                    f"dy_freezer={_q(freezer or '')}\ndy_frozen={frozen}\n"
                    f"dy_cgroups={_q(' '.join(dirs))}\n"
                    f"dy_pre={_q(pre)}\ndy_post={_q(post)}\n")
    if text is None:
        remove(state_dir)
        return False
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def remove(state_dir: str) -> None:
    try:
        os.unlink(os.path.join(state_dir, FAST_FILE))
    except (FileNotFoundError, NotADirectoryError):
        pass
