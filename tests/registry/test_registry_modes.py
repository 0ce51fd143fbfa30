"""The registry's --root is owner-only: what was pushed is for its clients, through
its auth, not for other local users (issue 12)."""

from __future__ import annotations

import os
import stat

from registry_helpers import running_registry


def _loose(root) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                out.append(f"{oct(stat.S_IMODE(st.st_mode))} {os.path.relpath(p, root)}")
    return out


def test_new_root_and_everything_pushed_is_owner_only(tmp_path):
    root = tmp_path / "new" / "root"
    with running_registry(root) as reg:
        c = reg.client()
        c.push_image("team/app", "v1", layers=[os.urandom(300), os.urandom(200)])
        r = c.request("POST", "/v2/team/app/blobs/uploads/")   # an upload left open
        assert r.status == 202
        assert c.request("PATCH", r.headers["Location"], os.urandom(100),
                         {"Content-Type": "application/octet-stream"}).status == 202
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
        assert list((root / "uploads").iterdir())
        assert list((root / "repositories").rglob("v1"))
        assert _loose(root) == []


def test_an_existing_world_readable_root_is_tightened(tmp_path):
    root = tmp_path / "old"
    (root / "blobs").mkdir(parents=True)
    os.chmod(root, 0o755)
    with running_registry(root) as reg:
        reg.client().push_image("app", "v1")
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
