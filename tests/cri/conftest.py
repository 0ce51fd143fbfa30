"""Fixtures for the CRI tests: one private containerd per module (see cri_helpers)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from cri_helpers import Containerd, compile_proto, have_containerd


@pytest.fixture(scope="session")
def cri_pb(tmp_path_factory):
    why = have_containerd()
    if why:
        pytest.skip(why)
    return compile_proto(tmp_path_factory.mktemp("cri-proto"))


@pytest.fixture(scope="module")
def containerd(cri_pb, busybox_template):
    # a short path: containerd's sockets live under it (108-byte limit)
    top = Path(tempfile.mkdtemp(prefix="dyk-cri-", dir="/tmp"))
    c = None
    try:
        c = Containerd(top, busybox_template, *cri_pb)
        yield c
    finally:
        if c is not None:
            c.close()
        shutil.rmtree(top, ignore_errors=True)
