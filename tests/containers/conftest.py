"""A container service wired to real pieces: image store, supervisor, a real OCI runtime."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import tarfile

import pytest

from dockyard.containers.service import ContainerService
from dockyard.containers.store import ContainerStore
from dockyard.oci.seccomp_default import default_profile
from dockyard.supervisor import client as supclient


def tar_of(root) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(root)):
            tar.add(os.path.join(root, name), arcname=name)
    return buf.getvalue()


@pytest.fixture(scope="session")
def busybox_tar(busybox_template) -> bytes:
    return tar_of(busybox_template)


class Env:
    def __init__(self, root, busybox_tar, runtime):
        from dockyard.images.service import ImageService
        from dockyard.metadata import open_store

        self.root = str(root)
        self.store = open_store(root / "metadata.db")
        self.images = ImageService(root=root, store=self.store)
        self.images.import_image(io.BytesIO(busybox_tar), repo="busybox", tag="latest",
                                 changes=["CMD [\"sh\"]"])
        self.sup_root = str(root / "supervisor")
        self.sup_path = supclient.ensure_running(self.sup_root)
        self.cstore = ContainerStore(str(root / "metadata.db"))
        self.runtime = runtime
        self.events: list[tuple] = []
        self.svc: ContainerService | None = None
        import uuid

        self.cgroup_parent = f"/dockyard-test-{uuid.uuid4().hex[:10]}"

    def make(self) -> ContainerService:
        runtimes = {"runc": shutil.which("runc") or "runc",
                    "dockyard": shutil.which("dockyard-runc") or "dockyard-runc"}
        self.svc = ContainerService(
            root=self.root, images=self.images, store=self.cstore,
            supervisor=supclient.AsyncClient(self.sup_path), runtimes=runtimes,
            default_runtime=self.runtime,
            emit=lambda *a: self.events.append(a), seccomp_profile=default_profile,
            cgroup_parent=self.cgroup_parent)
        self.images.set_usage_checker(self.svc.usage)
        return self.svc

    def cleanup(self):
        async def rm_all():
            svc = self.make()
            await svc.restore()
            for cid in list(svc.containers):
                try:
                    await svc.remove(cid, force=True)
                except Exception:  # noqa: BLE001
                    pass
            await svc.close()
        try:
            asyncio.run(rm_all())
        finally:
            pid = supclient.SyncClient(self.sup_path).request("ping")["pid"]
            os.kill(pid, signal.SIGTERM)
            from dockyard.snapshots.mount import mounts_under, unmount

            for m in reversed(mounts_under(self.root)):
                try:
                    unmount(m, 2)
                except OSError:
                    pass
            import glob

            for d in glob.glob(f"/sys/fs/cgroup/*{self.cgroup_parent}"):
                try:
                    os.rmdir(d)
                except OSError:
                    pass


@pytest.fixture(params=["runc", "dockyard"])
def env(request, tmp_path, busybox_tar):
    e = Env(tmp_path / "data", busybox_tar, request.param)
    yield e
    e.cleanup()
