"""Fixtures for the daemon/API/CLI tests: a real `dockyard daemon` per test."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from helpers.daemon import running_daemon


@pytest.fixture
def dockyard_daemon(tmp_path):
    with running_daemon(tmp_path) as d:
        yield d


def _tar_of(root) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(root)):
            tar.add(os.path.join(root, name), arcname=name)
    return buf.getvalue()


@pytest.fixture(scope="session")
def busybox_tar(busybox_template, tmp_path_factory):
    """Path of a plain tar of the busybox root filesystem (for import)."""
    p = tmp_path_factory.mktemp("bbtar") / "busybox.tar"
    p.write_bytes(_tar_of(busybox_template))
    return p


@pytest.fixture(scope="session")
def saved_busybox(busybox_tar, tmp_path_factory):
    """A `docker save` tar of busybox created 2020-01-01 (stable CREATED column):
    (path, image id); tagged am/busybox:v1 and am/busybox:latest."""
    from imgtar import saved_image

    data, image_id = saved_image(busybox_tar.read_bytes(),
                                 ["am/busybox:v1", "am/busybox:latest"],
                                 labels={"org.dockyard.test": "yes"})
    p = tmp_path_factory.mktemp("saved") / "busybox-saved.tar"
    p.write_bytes(data)
    return p, image_id
