"""Cache mounts' sharing modes (builder.mounts), on real directories and real flocks."""

from __future__ import annotations

import os
import stat
import threading
import time

from dockyard.builder import mounts
from dockyard.builder.runmount import MountSpec


def _rm(root, *specs):
    tmp = root / "builder" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return mounts.RunMounts(None, str(tmp), str(root), specs, None, {})


def test_shared_private_locked(tmp_path):
    shared = MountSpec("cache", "/c", id="one", uid=5, gid=6, mode=0o710)
    a, b = _rm(tmp_path, shared), _rm(tmp_path, shared)
    ha, hb = a.setup(), b.setup()
    src = ha["Binds"][0].split(":")[0]
    assert hb["Binds"][0].split(":")[0] == src and ha["Binds"][0].endswith(":/c:rw")
    st = os.stat(src)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (5, 6, 0o710)
    assert stat.S_IMODE(os.stat(mounts.cache_root(tmp_path)).st_mode) == 0o700
    assert [u["InUse"] for u in mounts.cache_usage(tmp_path)] == [True]
    assert mounts.prune_cache(tmp_path) == 0            # busy: kept
    # private while busy: a directory of its own, gone after the step
    private = MountSpec("cache", "/c", id="one", sharing="private")
    p = _rm(tmp_path, private)
    own = p.setup()["Binds"][0].split(":")[0]
    assert own != src and own.startswith(str(tmp_path / "builder" / "tmp"))
    p.close()
    assert not os.path.exists(os.path.dirname(own))
    a.close()
    b.close()
    # locked: the second waits for the first
    locked = MountSpec("cache", "/c", id="one", sharing="locked")
    first = _rm(tmp_path, locked)
    first.setup()
    got = []
    second = _rm(tmp_path, locked)
    t = threading.Thread(target=lambda: got.append(second.setup()))
    t.start()
    time.sleep(0.3)
    assert got == []
    first.close()
    t.join(5)
    assert got and got[0]["Binds"][0].split(":")[0] == src
    second.close()
    assert mounts.prune_cache(tmp_path) >= 0
    assert mounts.cache_usage(tmp_path) == []


def test_tmpfs_size(tmp_path):
    r = _rm(tmp_path, MountSpec("tmpfs", "/t", size=1 << 20), MountSpec("tmpfs", "/u"))
    assert r.setup() == {"Tmpfs": {"/t": "size=1048576", "/u": ""}}
    r.close()
