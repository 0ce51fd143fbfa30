"""Shared fixtures: root filesystems built once per session, copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.rootfs import build_bash_rootfs, build_busybox_rootfs, busybox_available, copy_rootfs


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory) -> Path:
    if not busybox_available():
        pytest.fail("busybox-static is required (apt-get install busybox-static)")
    return build_busybox_rootfs(tmp_path_factory.mktemp("tpl") / "busybox")


@pytest.fixture(scope="session")
def bash_template(tmp_path_factory) -> Path:
    return build_bash_rootfs(tmp_path_factory.mktemp("tpl") / "bash")


@pytest.fixture
def busybox_rootfs(busybox_template, tmp_path) -> Path:
    """A private, writable busybox root filesystem."""
    return copy_rootfs(busybox_template, tmp_path / "rootfs")


@pytest.fixture
def bash_rootfs(bash_template, tmp_path) -> Path:
    """A private, writable root filesystem with a dynamically linked bash."""
    return copy_rootfs(bash_template, tmp_path / "rootfs")


_HOST_NETWORK: dict = {}


def pytest_sessionstart(session):
    """The host's interfaces, addresses, routes and iptables rules (ours excluded), taken by
    the controller before any test runs, checked at the end (pytest_sessionfinish)."""
    if hasattr(session.config, "workerinput"):
        return
    from helpers.hoststate import snapshot

    _HOST_NETWORK["before"] = snapshot()


def pytest_sessionfinish(session, exitstatus):
    """Safety net, on the controller only (after every worker is done): sweep the
    chains and bridges a crashed test daemon could have left, and say so; then fail the
    session loudly if anything else of the host's network changed."""
    if hasattr(session.config, "workerinput"):
        return
    from helpers.netclean import sweep

    left = sweep()
    if left:
        print(f"\nnetwork leftovers of test daemons removed: {len(left)} "
              f"({', '.join(left[:6])}{', ...' if len(left) > 6 else ''})")
    if "before" in _HOST_NETWORK:
        from helpers.hoststate import compare, snapshot

        changed = compare(_HOST_NETWORK["before"], snapshot())
        if changed:
            bar = "!" * 78
            print(f"\n{bar}\nTHE TEST SESSION CHANGED THE HOST'S NETWORK (not our test "
                  "daemons' bridges, veths or chains: the host's own):\n  " +
                  "\n  ".join(changed) + f"\n{bar}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # The runtime's default parent cgroup (/dockyard, like dockerd's /docker) that the
    # runtime tests created: removed when nothing is left in it (a real daemon's
    # containers keep it busy, and rmdir refuses then).
    import glob
    import os

    import re

    for d in glob.glob("/sys/fs/cgroup/*/dockyard"):
        # empty cgroups of test containers (ids "t" + 12 hex digits) first
        for c in glob.glob(os.path.join(d, "t*")):
            if re.fullmatch(r"t[0-9a-f]{12}", os.path.basename(c)) and os.path.isdir(c):
                try:
                    os.rmdir(c)
                except OSError:
                    pass
        try:
            os.rmdir(d)
        except OSError:
            pass
