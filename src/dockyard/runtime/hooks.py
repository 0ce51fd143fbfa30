"""OCI hooks: run each with the container's state JSON on stdin.

Failure handling follows the runtime spec: a failing prestart,
createRuntime, createContainer or startContainer hook fails the operation;
a failing poststart or poststop hook is only a warning.
"""

from __future__ import annotations

import sys

from . import fastjson

WARN_ONLY = {"poststart", "poststop"}


class HookError(Exception):
    pass


def _run_one(hook, state_json: bytes) -> None:
    import subprocess
    args = list(hook.args) or [hook.path]
    env = dict(e.split("=", 1) for e in hook.env if "=" in e)
    try:
        r = subprocess.run(args, executable=hook.path, input=state_json, env=env,
                           timeout=hook.timeout or None, capture_output=True)
    except subprocess.TimeoutExpired:
        raise HookError(f"hook {hook.path} timed out after {hook.timeout}s") from None
    except OSError as e:
        raise HookError(f"hook {hook.path}: {e.strerror}") from None
    if r.returncode != 0:
        detail = (r.stderr or r.stdout).decode(errors="replace").strip()
        raise HookError(f"hook {hook.path} exited with status {r.returncode}"
                        + (f": {detail}" if detail else ""))


def run(kind: str, hooks: dict, state: dict) -> None:
    """Run the hooks of ``kind``; raises HookError unless the kind only warns."""
    items = hooks.get(kind) or ()
    if not items:
        return
    data = fastjson.dumps(state).encode()
    for hook in items:
        try:
            _run_one(hook, data)
        except HookError as e:
            if kind in WARN_ONLY:
                print(f"dockyard-runc: warning: {kind} {e}", file=sys.stderr)
                continue
            raise HookError(f"{kind} {e}") from None


def from_spec(raw: dict) -> dict:
    """Hooks from a saved spec dict (for commands that run after create)."""
    from .spec import _hooks
    return _hooks(raw.get("hooks"))

