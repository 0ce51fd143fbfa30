"""The `dockyard-runc` that pip installs is the daemon's launcher (the sh fast path
of runtime/launcher.py, then `<python> -I -S -c ...`: no `site`, no PYTHON*
variables, not the working directory on sys.path), not an entry-point wrapper
that pays for `site` and `re` at each of the calls containerd and dockerd make."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pip_installed_dockyard_runc_starts_without_site(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import cleanvenv
    finally:
        sys.path.remove(str(ROOT / "bench"))
    bin_dir = cleanvenv.build(tmp_path)
    if bin_dir is None:
        pytest.skip("no venv could be built here (see the message above)")
    script = bin_dir / "dockyard-runc"
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n"), text[:100]
    front, sep, end = text.rpartition(f"\nexec '{bin_dir / 'python'}' -I -S -c '")
    assert sep and end.endswith("' \"$@\"\n"), text[-300:]
    # the same fast path as the launcher the daemon writes: only the Python part differs
    from dockyard.runtime import launcher_script
    assert front == launcher_script().rpartition("\nexec ")[0]
    # it finds the package in its venv without `site`, from any directory: a
    # bundle directory holding a `dockyard` package of its own is not imported
    trap = tmp_path / "bundle" / "dockyard"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise SystemExit('imported from the working directory')\n")
    r = subprocess.run([str(script), "--version"], cwd=trap.parent, capture_output=True,
                       text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(trap.parent)})
    assert r.returncode == 0 and r.stdout.startswith("dockyard-runc version"), r.stderr
    assert not list((bin_dir.parent / "lib").glob("*/site-packages/dockyard_build.py"))
