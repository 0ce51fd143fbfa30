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
