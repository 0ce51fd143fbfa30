"""Content-store ingests and blobs, snapshots and the push records under
``distribution/`` are owner-only (issue 12), whatever the umask."""

from __future__ import annotations

import os
import stat

from dockyard.content.store import ContentStore
from dockyard.images.push import BlobSources
from dockyard.metadata import open_store
from dockyard.snapshots import new_snapshotter


def _modes(root) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def test_store_state_is_owner_only(tmp_path):
    old = os.umask(0o002)       # a loose umask must not loosen anything
    try:
        cs = ContentStore(tmp_path)
        w = cs.writer("pull-layer")
        w.write(b"half")
        w.flush()
        during = _modes(tmp_path)
        w.close()
        w2 = cs.writer("done")
        w2.write(b"blob")
        d = w2.commit()
        BlobSources(tmp_path).add("registry.local", "team/app", [d])
        BlobSources(tmp_path).set_gzip("sha256:" + "1" * 64, d, 4)
        store = open_store(tmp_path / "metadata.db")
        sn = new_snapshotter(tmp_path, store, "copy")
        sn.prepare("active")
        store.close()
    finally:
        os.umask(old)
    assert any(p.endswith("/data") for p in during) and during
    assert all(m & 0o077 == 0 for m in during.values()), during
    after = _modes(tmp_path)
    assert after[f"content/blobs/sha256/{d.split(':')[1]}"] == 0o400
    assert any(p.startswith("distribution/sources/") for p in after)
    loose = {p: oct(m) for p, m in after.items() if m & 0o077 and not p.endswith("/fs")}
    assert loose == {}
    assert after["metadata.db"] == 0o600
