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
