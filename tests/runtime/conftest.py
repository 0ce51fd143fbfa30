"""Fixtures for running real containers through `dockyard-runc`.

``runc`` is a small driver: every test gets its own --root under tmp_path,
ids are random, and on teardown every container left in that root is
force-deleted (processes killed, cgroups removed) even if the test failed.
The test process becomes a child subreaper so that containers created with
`create` are reparented to it and can be reaped (no zombies left behind).
"""

from __future__ import annotations

import ctypes

import pytest

from runtime_helpers import Runc


@pytest.fixture(scope="session", autouse=True)
def _subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    yield


@pytest.fixture
def runc(tmp_path):
    r = Runc(tmp_path / "state", tmp_path)
    try:
        yield r
    finally:
        r.cleanup()
