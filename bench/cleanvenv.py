"""A throwaway venv with this checkout pip-installed, for timing our console scripts as a
normal machine runs them: `site` and pip's entry-point template, but none of this
sandbox's site-packages hooks (its certifi `.pth` costs ~30 ms per interpreter start).

Built offline from the local index/cache: `wheel` for the build, the project with
--no-deps, then whatever the timed path needs (``extra``). Lives under the caller's temp
dir and goes with it. The venv's Python is the system's (Debian's /usr/bin/python3.X,
what `pip install` on a fresh Debian machine uses) when it has the venv module, else the
one running the bench.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def system_python() -> str:
    """Debian's build of this Python version if present (else this interpreter)."""
    v = sys.version_info
    system = f"/usr/bin/python{v.major}.{v.minor}"
    return system if Path(system).exists() else sys.executable


def build(tmp: Path, extra: tuple[str, ...] = ()) -> Path | None:
    """The venv's bin/ directory, or None (the reason printed) if it cannot be built."""
    src = tmp / "venv-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp / "venv"
    py = str(venv / "bin" / "python")
    steps = []
    if subprocess.run([system_python(), "-m", "venv", str(venv)], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)     # e.g. Debian without python3-venv
        steps.append([sys.executable, "-m", "venv", str(venv)])
    steps += [
        [py, "-m", "pip", "install", "-q", "wheel"],          # setuptools 65 builds through it
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
    ]
    if extra:
        steps.append([py, "-m", "pip", "install", "-q", "--no-deps", *extra])
    for cmd in steps:
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            print(f"(clean venv skipped: {' '.join(cmd[2:5])} failed: "
                  f"{err[-1] if err else r.returncode})")
            return None
    return venv / "bin"
