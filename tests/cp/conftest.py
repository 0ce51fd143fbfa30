"""A private `dockyard daemon` per test module (busybox imported) for the `docker cp` tests."""

from __future__ import annotations

import uuid

import pytest

from helpers.cli_daemon import running_daemon
from helpers.rootfs import build_busybox_rootfs


@pytest.fixture(scope="module")
def cpd(tmp_path_factory):
    root = tmp_path_factory.mktemp("cp")
    rootfs = build_busybox_rootfs(root / "rootfs")
    with running_daemon(root / "d") as d:
        d.import_busybox(rootfs)
        yield d


@pytest.fixture
def name() -> str:
    return f"cp-{uuid.uuid4().hex[:10]}"
