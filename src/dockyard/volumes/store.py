"""Volume records and data on disk, under ``<data-root>/volumes/`` (owner-only)::

    volumes/<name>/            0700
      volume.json              0600: Name, Driver, Labels, Options, CreatedAt
      _data/                   the content (mounted into containers; its mode and owner
                               are the mount point's, taken at copy-up)

A record is written (atomically) before it is visible; a directory without a
readable ``volume.json`` is an interrupted create and is removed at load. Names are
validated before they reach a path (``names.validate``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil

from dockyard import statefiles

log = logging.getLogger("dockyard.volumes")

RECORD = "volume.json"
DATA = "_data"


class VolumeStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.join(root, "volumes")
        statefiles.makedirs(self.root)

    def dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def data(self, name: str) -> str:
        return os.path.join(self.root, name, DATA)

    def load(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name, RECORD)
            try:
                with open(path, "rb") as f:
                    rec = json.loads(f.read())
                if rec.get("Name") != name:
                    raise ValueError("name mismatch")
            except FileNotFoundError:
                log.warning("volume %s: no record (interrupted create): removed", name)
                self._remove_dir(name)
                continue
            except (OSError, ValueError) as e:
                log.warning("volume %s: unreadable record kept aside: %s", name, e)
                continue
            out[name] = rec
        return out

    def create(self, rec: dict) -> None:
        """The directory and ``_data``, then the record (the commit point)."""
        d = self.dir(rec["Name"])
        os.mkdir(d, statefiles.DIR_MODE)
        try:
            os.mkdir(os.path.join(d, DATA), 0o755)
            os.chmod(os.path.join(d, DATA), 0o755)
            statefiles.write(os.path.join(d, RECORD), json.dumps(rec), fsync=True)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise

    def put(self, rec: dict) -> None:
        statefiles.write(os.path.join(self.dir(rec["Name"]), RECORD), json.dumps(rec), fsync=True)

    def remove(self, name: str) -> None:
        """The record first (the volume is gone), then its data (fd-based, no symlink
        followed: shutil.rmtree's safe walk)."""
        try:
            os.unlink(os.path.join(self.dir(name), RECORD))
        except FileNotFoundError:
            pass
        self._remove_dir(name)

    def _remove_dir(self, name: str) -> None:
        from dockyard.snapshots import mount as snapmount

        d = self.dir(name)
        try:
            snapmount.unmount_all(d)
        except OSError as e:
            log.warning("volume %s: %s", name, e)
            return   # never remove below a mount that stayed
        shutil.rmtree(d, ignore_errors=True)
