"""Root filesystems for tests, built from what this machine has.

* ``busybox``: Debian's busybox-static, one static binary plus a link per applet.
* ``bash``: the host's bash (dynamically linked) with the shared libraries that
  ``ldd`` names, so tests also cover a dynamic loader inside a container.

Nothing is downloaded; both are built into a directory the caller owns.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

_SKELETON_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys",
                  "dev", "var", "home", "run")


def _skeleton(root: Path) -> None:
    for d in _SKELETON_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        "tester:x:1000:1000:tester:/home/tester:/bin/sh\n"
    )
    (root / "etc/group").write_text(
        "root:x:0:\ndaemon:x:1:\nusers:x:100:tester\nnogroup:x:65534:\ntester:x:1000:\n"
    )
    (root / "etc/hostname").write_text("localhost\n")


def busybox_available() -> bool:
    return BUSYBOX.exists()


def build_busybox_rootfs(root: Path) -> Path:
    """Build a busybox root filesystem at ``root`` and return it."""
    if not busybox_available():
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    root = Path(root)
    _skeleton(root)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    out = subprocess.run([str(BUSYBOX), "--list-full"], check=True, capture_output=True,
                         text=True).stdout
    for rel in out.split():
        target = root / rel
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", target)
    for applet in ("sh", "ash"):
        if not (root / "bin" / applet).exists():
            os.symlink("/bin/busybox", root / "bin" / applet)
    return root


def _ldd_libs(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)", line)
        if m:
            libs.append(m.group(1))
    return libs


def build_bash_rootfs(root: Path, extra: tuple[str, ...] = ("/bin/cat", "/bin/ls")) -> Path:
    """Build a root filesystem with the host's dynamically linked bash and its libraries."""
    root = Path(root)
    _skeleton(root)
    for binary in ("/bin/bash", *extra):
        real = os.path.realpath(binary)
        dest = root / binary.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest)
        for lib in _ldd_libs(real):
            for path in {lib, os.path.realpath(lib)}:
                ldest = root / path.lstrip("/")
                if not ldest.exists():
                    ldest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(os.path.realpath(path), ldest)
    if not (root / "bin/sh").exists():
        os.symlink("bash", root / "bin/sh")
    return root


def copy_rootfs(src: Path, dst: Path) -> Path:
    """Copy a template root filesystem, keeping links, modes and owners."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return Path(dst)
