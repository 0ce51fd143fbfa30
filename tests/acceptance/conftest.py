import pytest

from acceptance.harness import running


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running(tmp_path_factory.mktemp("dky")) as d:
        yield d


@pytest.fixture
def fresh_daemon(tmp_path):
    """A daemon of the test's own (busybox imported), for tests that stop, kill or
    restart it."""
    with running(tmp_path) as d:
        yield d
