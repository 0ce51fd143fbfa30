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


def test_command_path_imports_no_slow_module():
    argv = runtime_argv()
    # the launcher's interpreter and flags, with a -c of our own after them
    interp = argv[: argv.index("-c")]
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    code = ("import sys; sys.path.append(%r)\n"
            "for m in %r: __import__(m)\n"
            "print(' '.join(sorted(m for m in %r if m in sys.modules)))"
            % (os.path.abspath(src), PATH, SLOW))
    r = subprocess.run([*interp, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == []


def test_the_check_sees_a_slow_import():
    # the same probe, with a module that does import os: it must be reported
    argv = runtime_argv()
    interp = argv[: argv.index("-c")]
    code = ("import sys; __import__('shutil')\n"
            "print(' '.join(sorted(m for m in %r if m in sys.modules)))" % (SLOW,))
    r = subprocess.run([*interp, "-c", code], capture_output=True, text=True, check=True)
    assert "os" in r.stdout.split()
