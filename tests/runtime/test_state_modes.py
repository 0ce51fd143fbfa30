"""The runtime's --root is owner-only (0700, as runc's), and so is each container's
state: a container's state.json names its bundle and pid, and the directories under
the root lead to the exec FIFO. A non-root container user still starts."""

from __future__ import annotations

import os
import stat


def _mode(p) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_root_and_container_state_are_owner_only(runc, busybox_rootfs):
    assert not runc.root.exists()
    b = runc.bundle(busybox_rootfs, ["sleep", "30"], process={"user": {"uid": 1000, "gid": 1000}})
    cid = runc.new_id()
    runc.cmd("create", "--bundle", str(b), cid, check=True)
    d = runc.root / cid
    assert _mode(runc.root) == 0o700
    assert _mode(d) == 0o700
    assert _mode(d / "state.json") == 0o600
    runc.cmd("start", cid, check=True)     # init (uid 1000 by then) got through its FIFO
    assert runc.state(cid)["status"] == "running"
    assert _mode(d / "state.json") == 0o600
