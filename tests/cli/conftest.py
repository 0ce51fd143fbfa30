"""A real `dockyard daemon` per test module, with busybox imported, for CLI tests."""

from __future__ import annotations

import pytest

from helpers.cli_daemon import running_daemon
from helpers.rootfs import build_busybox_rootfs


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rootfs = build_busybox_rootfs(root / "rootfs")
    with running_daemon(root / "d") as d:
        d.import_busybox(rootfs)
        yield d
