import subprocess

import pytest

from acceptance.harness import Daemon, running


def _import_web(d: Daemon) -> None:
    """busybox again, with EXPOSE 80 (for -P)."""
    root = d.dir / "bbroot"
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
    d.docker("import", "-c", 'CMD ["sh"]', "-c", "EXPOSE 80", "-", "bbweb", input=tar)


@pytest.fixture(scope="module")
def ndaemon(tmp_path_factory):
    """A networked private daemon, with images busybox and bbweb (EXPOSE 80)."""
    with running(tmp_path_factory.mktemp("dkn"), close=_close, network=True) as d:
        _import_web(d)
        yield d


def _close(d: Daemon) -> None:
    try:
        if d.proc and d.proc.poll() is None:
            nets = d.out("network", "ls", "-q", "--filter", "type=custom", check=False).split()
            ids = d.out("ps", "-aq", check=False).split()
            if ids:
                d.docker("rm", "-f", *ids, check=False, timeout=120)
            if nets:
                d.docker("network", "rm", *nets, check=False)
    finally:
        d.close()
