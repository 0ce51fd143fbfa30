"""Fixtures for the networking tests (helpers live in nethelpers.py)."""

from __future__ import annotations

import pytest

from nethelpers import NetnsFactory, make_manager, new_net_ids, scrub


@pytest.fixture
def netns():
    f = NetnsFactory()
    try:
        yield f
    finally:
        f.cleanup()


@pytest.fixture
def net_ids():
    return new_net_ids()


@pytest.fixture
def manager(net_ids):
    m = make_manager(net_ids)
    try:
        m.start()
        yield m
    finally:
        try:
            m.teardown()
        finally:
            scrub(net_ids)
