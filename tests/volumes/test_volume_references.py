"""A volume is never removed while a container references it, even one still being
created: the container service's volume making (``Lifecycle._make_volumes``) and its
user lookup (``Records.volume_users``), run on a real VolumeService in a data root of the
test's own, with a `volume prune` / `volume rm` landing right after each volume call
(the interleaving of API threads a busy daemon can produce, made certain here)."""

import types

from dockyard import errors
from dockyard.containers import mounts
from dockyard.containers.lifecycle import Lifecycle
from dockyard.containers.records import Records
from dockyard.volumes.service import VolumeService


class RacingVolumes(VolumeService):
    """After every create/exists/get, the other API calls run: prune, and rm of ``name``."""

    def __init__(self, root, rm_name):
        super().__init__(root)
        self.rm_name = rm_name
        self.removed, self.refused = [], []

    def _race(self):
        self.removed += self.prune()["VolumesDeleted"] or []
        try:
            self.remove(self.rm_name)
            self.removed.append(self.rm_name)
        except errors.Conflict:
            self.refused.append(self.rm_name)
        except errors.NotFound:
            pass

    def create(self, *a, **kw):
        out = super().create(*a, **kw)
        self._race()
        return out

    def exists(self, name):
        out = super().exists(name)
        self._race()
        return out

    def get(self, *a, **kw):
        out = super().get(*a, **kw)
        self._race()
        return out


def _service(tmp_path, rm_name):
    svc = types.SimpleNamespace(containers={}, _creating={})
    svc.volumes = RacingVolumes(str(tmp_path), rm_name)
    svc.volumes.set_users(lambda n: Records.volume_users(svc, n))
    return svc


def _record(cid, host, config):
    return {"Id": cid, "MountPoints": mounts.parse_all(host, config, {})}


def test_prune_and_rm_during_create_leave_the_new_containers_volumes(tmp_path):
    svc = _service(tmp_path, "shared")
    VolumeService.create(svc.volumes, "shared")   # exists before (no race for this one)
    rec = _record("c1", {"Binds": ["shared:/data", "/anon"]}, {"Volumes": {"/img": {}}})
    Lifecycle._make_volumes(svc, rec)
    names = [mp["Name"] for mp in rec["MountPoints"]]
    assert len(names) == 3 and all(names)
    for n in names:
        assert svc.volumes.exists(n), (n, svc.volumes.removed)
    assert not set(names) & set(svc.volumes.removed)
    assert "shared" in svc.volumes.refused          # the rm was refused: in use (409)
    # and once stored, the record keeps them (the service moves it into containers)
    svc.containers["c1"] = svc._creating.pop("c1")
    svc.volumes._race()
    assert all(VolumeService.exists(svc.volumes, n) for n in names)


def test_a_named_volume_removed_before_the_create_counts_is_made_again(tmp_path):
    svc = _service(tmp_path, "gone")
    VolumeService.create(svc.volumes, "gone")
    VolumeService.remove(svc.volumes, "gone")       # the rm that won the race
    rec = _record("c2", {"Binds": ["gone:/data"]}, {})
    Lifecycle._make_volumes(svc, rec)
    assert VolumeService.exists(svc.volumes, "gone")
    assert rec["MountPoints"][0]["MadeHere"] is True
