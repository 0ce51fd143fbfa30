import pytest

from acceptance.harness import Daemon, import_busybox


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("dky"))
    try:
        d.start()
        import_busybox(d)
        yield d
    finally:
        d.close()


@pytest.fixture
def fresh_daemon(tmp_path):
    """A daemon of the test's own (busybox imported), for tests that stop, kill or
    restart it."""
    d = Daemon(tmp_path)
    try:
        d.start()
        import_busybox(d)
        yield d
    finally:
        d.close()
