"""scripts/install: Dockyard in a virtual environment of its own, independent of the clone.

A copy of this checkout (its commit, with the working tree's files) installs into a
private prefix with the commands linked into a private bin directory; the copy is then
deleted and the installed `dockyard` still runs and reports the commit it was built from.
A second run with nothing changed reinstalls nothing and takes a few seconds at most.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _copy_checkout(dest: Path) -> str:
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True, timeout=120)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = REPO / os.fsdecode(f)
        if src.is_file() and not src.is_symlink():
            (dest / os.fsdecode(f)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / os.fsdecode(f))
    return subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=dest,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_install_outlives_the_clone(tmp_path):
    clone, prefix, bindir = tmp_path / "clone", tmp_path / "prefix", tmp_path / "bin"
    commit = _copy_checkout(clone)
    env = {**os.environ, "DOCKYARD_BINDIR": str(bindir)}
    env.pop("PYTHONPATH", None)
    r = subprocess.run(["bash", str(clone / "scripts/install"), str(prefix)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    # not editable: no path back into the clone anywhere in the environment
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "dockyard" / "__init__.py").is_file()
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    assert str(clone) not in "".join(p.read_text(errors="replace") for p in site.glob("*.pth"))
    for cmd in ("dockyard", "dockyard-runc"):
        assert os.readlink(bindir / cmd) == str(prefix / "bin" / cmd)

    # a second run with nothing changed: nothing reinstalled, fast
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(clone / "scripts/install"), str(prefix)], env=env,
                       capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 0 and "already installed" in r.stdout, r.stdout + r.stderr
    assert took < 5, took

    shutil.rmtree(clone)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DOCKER_HOST")}
    clean["DOCKER_HOST"] = f"unix://{tmp_path}/none.sock"
    out = subprocess.run([str(bindir / "dockyard"), "--version"], env=clean,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("Dockyard version "), out
    v = subprocess.run([str(bindir / "dockyard"), "version", "--format", "{{.Client.GitCommit}}"],
                       env=clean, capture_output=True, text=True, timeout=60)
    assert v.stdout.strip() == commit, v   # no daemon there: the client part is printed
    r = subprocess.run([str(bindir / "dockyard-runc"), "--version"], env=clean,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
