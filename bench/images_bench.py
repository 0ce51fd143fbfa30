#!/usr/bin/env python3
"""Image store throughput: Dockyard's ImageService against Debian's dockerd.

Builds one image of several hundred MB and tens of thousands of files, then
times, for each engine: import of the rootfs tar, save of the image, load of
the saved archive into an empty store; and the in-process listing of 500
images (dockerd: `docker images` through the CLI, so it includes the CLI's own
startup; Dockyard's API latency is measured by the daemon's benchmarks).

    python3 bench/images_bench.py [--files 30000] [--big-mb 300] [--images 500]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from helpers.dockerd import running_dockerd  # noqa: E402

from dockyard.images.service import ImageService  # noqa: E402
from dockyard.metadata import open_store  # noqa: E402


def build_rootfs(root: Path, files: int, big_mb: int) -> None:
    per_dir = 100
    for d in range(files // per_dir):
        dd = root / f"usr/share/d{d}"
        dd.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir):
            (dd / f"f{f}").write_bytes(os.urandom(1500))
    chunk = 10
    for i in range(max(1, big_mb // chunk)):
        (root / f"opt/big{i}").parent.mkdir(parents=True, exist_ok=True)
        (root / f"opt/big{i}").write_bytes(os.urandom(chunk << 20))


def timed(label: str, results: dict, fn):
    os.sync()   # start each phase with no writeback of the previous one pending
    t = time.perf_counter()
    out = fn()
    results[label] = time.perf_counter() - t
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--big-mb", type=int, default=300)
    ap.add_argument("--images", type=int, default=500)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="images-bench-"))
    try:
        rootfs = work / "rootfs"
        build_rootfs(rootfs, args.files, args.big_mb)
        tar = work / "rootfs.tar"
        with tarfile.open(tar, "w") as tf:
            tf.add(rootfs, arcname=".")
        shutil.rmtree(rootfs)
        print(f"image: {tar.stat().st_size / 1e6:.0f} MB, ~{args.files} files")
        ours: dict = {}
        theirs: dict = {}
        svc = ImageService(work / "dy1", open_store(work / "dy1/metadata.db"))
        with open(tar, "rb") as f:
            timed("import", ours, lambda: svc.import_image(f, "big"))
        with open(work / "ours.tar", "wb") as f:
            timed("save", ours, lambda: svc.export_images(["big"], f))
        svc2 = ImageService(work / "dy2", open_store(work / "dy2/metadata.db"))
        with open(work / "ours.tar", "rb") as f:
            timed("load", ours, lambda: list(svc2.load_images(f, quiet=True)))
        small = io.BytesIO()
        with tarfile.open(fileobj=small, mode="w") as tf:
            ti = tarfile.TarInfo("f")
            tf.addfile(ti, io.BytesIO(b""))
        for i in range(args.images):
            small.seek(0)
            svc2.import_image(io.BytesIO(small.getvalue()), f"many{i}", "v1")
        timed("list 500", ours, lambda: svc2.list_images())
        with running_dockerd(work / "dockerd") as d:
            timed("import", theirs, lambda: d.docker("import", str(tar), "big", timeout=900))
            timed("save", theirs, lambda: d.docker("save", "-o", str(work / "theirs.tar"), "big",
                                                     timeout=900))
            d.docker("rmi", "big")
            timed("load", theirs, lambda: d.docker("load", "-i", str(work / "ours.tar"),
                                                     timeout=900))
            (work / "empty.tar").write_bytes(small.getvalue())
            for i in range(args.images):
                d.docker("import", str(work / "empty.tar"), f"many{i}:v1")
            timed("list 500", theirs, lambda: d.docker("images"))
        print(f"{'':10} {'dockyard':>10} {'dockerd':>10} {'ratio':>7}")
        for k in ours:
            print(f"{k:10} {ours[k]:9.2f}s {theirs[k]:9.2f}s {theirs[k] / ours[k]:6.2f}x")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
