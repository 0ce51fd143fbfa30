"""Interop with skopeo: it reads our `docker save` archives and we load what it writes
(docker-archive and oci-archive, gzip layers)."""

import io
import shutil
import subprocess

import pytest

from imghelpers import entry, make_tar

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")


def skopeo(*args):
    return subprocess.run(["skopeo", "--insecure-policy", *args], check=True,
                          capture_output=True, text=True, timeout=120)


def test_skopeo_reads_ours_and_we_read_skopeo(make_service, tmp_path):
    svc = make_service()
    iid = svc.import_image(io.BytesIO(make_tar([entry("etc/", "dir"), entry("etc/x", data=b"x"),
                                                entry("bin/", "dir"),
                                                entry("bin/sh", data=b"#!", mode=0o755)])),
                           "sk", "1", ['CMD ["sh"]'])
    with open(tmp_path / "ours.tar", "wb") as f:
        svc.export_images(["sk:1"], f)
    skopeo("copy", f"docker-archive:{tmp_path}/ours.tar", f"docker-archive:{tmp_path}/d.tar:sk:3")
    skopeo("copy", f"oci-archive:{tmp_path}/ours.tar", f"oci-archive:{tmp_path}/o.tar:example.com/sk:2")
    fresh = make_service("fresh")
    with open(tmp_path / "d.tar", "rb") as f:
        assert list(fresh.load_images(f, quiet=True)) == [{"stream": "Loaded image: sk:3\n"}]
    assert fresh.resolve("sk:3") == iid           # same config bytes, same ID
    with open(tmp_path / "o.tar", "rb") as f:
        assert list(fresh.load_images(f, quiet=True)) == [
            {"stream": "Loaded image: example.com/sk:2\n"}]
    # skopeo rewrites the config as OCI (another ID) but the layers are the same
    assert fresh.inspect("example.com/sk:2")["RootFS"] == svc.inspect("sk:1")["RootFS"]
    assert fresh.inspect("example.com/sk:2")["Config"]["Cmd"] == ["sh"]
