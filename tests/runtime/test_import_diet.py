"""The runtime's command path imports none of the stdlib's slow modules.

Each of these costs milliseconds at every `dockyard-runc` call (typing ~10 ms, re/enum
~5 ms); the path was written to avoid them, and a new shared helper can silently bring
one back (procexit did, with `from typing import ...`).
"""

from __future__ import annotations

import os
import subprocess

from dockyard.runtime import runtime_argv

SLOW = ("typing", "re", "enum", "ctypes", "json", "hashlib", "subprocess", "tempfile",
        # os (~1.6 ms: collections.abc's classes): the path uses runtime/fastos.py
        "os", "posixpath", "_collections_abc")
PATH = ("dockyard.runtime.cli", "dockyard.runtime.commands", "dockyard.runtime.container",
        "dockyard.runtime.init", "dockyard.runtime.state", "dockyard.runtime.spec",
        "dockyard.runtime.sync", "dockyard.runtime.cgroups", "dockyard.runtime.cgroups.v1",
        "dockyard.runtime.cgroups.v2", "dockyard.runtime.rootfs", "dockyard.runtime.process",
        "dockyard.runtime.caps", "dockyard.runtime.foreground", "dockyard.runtime.cgwarm",
        "dockyard.procexit")


def _slow_modules_after(code: str) -> list[str]:
    """The SLOW modules loaded after running ``code`` in the launcher's interpreter,
    with its flags (no site) and our source directory on the path."""
    argv = runtime_argv()
    interp = argv[: argv.index("-c")]
    src = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    probe = (f"import sys; sys.path.append({src!r})\n{code}\n"
             f"print(' '.join(sorted(m for m in {SLOW!r} if m in sys.modules)))")
    r = subprocess.run([*interp, "-c", probe], capture_output=True, text=True, check=True)
    return r.stdout.split()


def test_command_path_imports_no_slow_module():
    assert _slow_modules_after(f"for m in {PATH!r}: __import__(m)") == []


def test_seccomp_cache_lookup_imports_no_slow_module():
    # with Docker's default profile every create looks up libseccomp for its cache key
    assert _slow_modules_after("from dockyard.runtime import seccomp\n"
                               "seccomp._libseccomp_identity()") == []


def test_the_check_sees_a_slow_import():
    # the same probe, with a module that does import os: it must be reported
    assert "os" in _slow_modules_after("import shutil")
