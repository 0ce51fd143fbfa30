"""Fixtures for the image store tests: each test gets its own data root under tmp_path
and every mount below tmp_path is detached on teardown, even after a failure."""

from __future__ import annotations

import io
import tarfile

import pytest

from dockyard.metadata import open_store
from dockyard.snapshots import mount as mnt


@pytest.fixture
def unmount_after(tmp_path):
    yield tmp_path
    mnt.unmount_all(tmp_path)


@pytest.fixture
def store(tmp_path, unmount_after):
    s = open_store(tmp_path / "root" / "metadata.db")
    yield s
    s.close()


@pytest.fixture(params=["overlay", "copy"])
def snapshotter_kind(request):
    return request.param


@pytest.fixture
def make_service(tmp_path, unmount_after):
    from dockyard.images.service import ImageService

    made = []

    def make(name="root", snapshotter="overlay", emit=None):
        s = open_store(tmp_path / name / "metadata.db")
        made.append(s)
        return ImageService(tmp_path / name, s, emit=emit, snapshotter=snapshotter)

    yield make
    for s in made:
        s.close()


@pytest.fixture(scope="session")
def busybox_tar_bytes(busybox_template) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(str(busybox_template), arcname=".")
    return buf.getvalue()
