"""Space held back for removals on a full disk (ext4's reserved blocks, in one file).

``<data-root>/reserve`` (1 MiB, owner-only) is made at start. A removal that meets a
full disk (its metadata database cannot record it, ENOSPC) releases it and tries once
more: freeing space must not need space. It is made again when there is room.
"""

from __future__ import annotations

import errno
import os
import sqlite3

SIZE = 1 << 20
NAME = "reserve"


def disk_full(e: BaseException | None) -> bool:
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, sqlite3.OperationalError) and "full" in str(e):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


class Reserve:
    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, NAME)

    def ensure(self) -> bool:
        """Make the reserve if it is missing and the space is there (never a partial one)."""
        try:
            if os.path.getsize(self.path) == SIZE:
                return True
        except OSError:
            pass
        tmp = self.path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, SIZE)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            return True
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False

    def release(self) -> bool:
        """Free it; False if there was none to free."""
        try:
            os.unlink(self.path)
            return True
        except OSError:
            return False
