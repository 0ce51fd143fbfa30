"""Fixtures for the registry tests: each test gets its own registry process
(own root under tmp_path, port picked by the kernel), stopped even on failure."""

from __future__ import annotations

import pytest

from registry_helpers import running_registry, write_htpasswd


@pytest.fixture
def registry(tmp_path):
    with running_registry(tmp_path / "root") as reg:
        yield reg


@pytest.fixture
def htpasswd(tmp_path):
    return write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw", "bob": "bobpw"})
