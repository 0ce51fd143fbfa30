"""Round trips with Debian's dockerd 20.10 (started privately by the test)."""

import io
import json

import pytest

from helpers.dockerd import running_dockerd
from imghelpers import entry, make_tar

pytestmark = [pytest.mark.slow, pytest.mark.dockerd]

SAME_KEYS = ("Id", "RepoTags", "Parent", "Comment", "Created", "Container", "ContainerConfig",
             "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "RootFS")


def test_roundtrip_with_dockerd(tmp_path, make_service, busybox_tar_bytes):
    tar = tmp_path / "bb.tar"
    tar.write_bytes(busybox_tar_bytes)
    svc = make_service()
    with running_dockerd(tmp_path / "dockerd") as d:
        # real Docker -> Dockyard
        real_id = d.docker("import", "-c", 'CMD ["sh"]', "-c", "ENV A=1", "-m", "from docker",
                           str(tar), "bb:real", text=True).stdout.strip()
        d.docker("tag", "bb:real", "localhost:5000/bb:other")
        d.docker("save", "-o", str(tmp_path / "real.tar"), "bb:real", "localhost:5000/bb:other")
        with open(tmp_path / "real.tar", "rb") as f:
            msgs = list(svc.load_images(f))
        assert {"stream": "Loaded image: bb:real\n"} in msgs
        assert {"stream": "Loaded image: localhost:5000/bb:other\n"} in msgs
        real = json.loads(d.docker("image", "inspect", "bb:real").stdout)[0]
        ours = svc.inspect("bb:real")
        assert ours["Id"] == real_id
        for k in SAME_KEYS:
            if k == "RepoTags":
                assert sorted(ours[k]) == sorted(real[k])
            else:
                assert ours[k] == real[k], k
        real_hist = json.loads(d.docker("history", "--format", "{{json .}}", "--no-trunc",
                                        "bb:real").stdout.splitlines()[0])
        assert ours["Comment"] == real_hist["Comment"] == "from docker"

        # Dockyard -> real Docker
        mine = svc.import_image(io.BytesIO(busybox_tar_bytes), "mine", "v1",
                                ['ENTRYPOINT ["/bin/sh"]', "LABEL a=b", "EXPOSE 8080"])
        small = svc.import_image(io.BytesIO(make_tar([entry("etc/", "dir"), entry("etc/x", data=b"x"),
                                                       entry("l", "symlink", linkname="etc/x")])))
        with open(tmp_path / "ours.tar", "wb") as f:
            svc.export_images(["mine:v1", small, "bb:real"], f)
        out = d.docker("load", "-i", str(tmp_path / "ours.tar"), text=True).stdout
        assert "Loaded image: mine:v1" in out   # (20.10 prints no "Loaded image ID" here)
        theirs = json.loads(d.docker("image", "inspect", "mine:v1").stdout)[0]
        ours = svc.inspect("mine:v1")
        assert theirs["Id"] == mine
        for k in ("Config", "RootFS", "Size", "Created", "Comment", "Architecture", "Os"):
            assert theirs[k] == ours[k], k
        assert json.loads(d.docker("image", "inspect", small).stdout)[0]["Id"] == small
        # and what Docker saves of our image loads back here unchanged
        d.docker("save", "-o", str(tmp_path / "back.tar"), "mine:v1")
        fresh = make_service("fresh")
        with open(tmp_path / "back.tar", "rb") as f:
            list(fresh.load_images(f, quiet=True))
        assert fresh.inspect("mine:v1")["Id"] == mine


def test_built_image_history_matches_dockerd(tmp_path, make_service, busybox_tar_bytes):
    """A multi-step image built by dockerd (empty layers, COPY layers) inspects and
    reports history here as it does there."""
    import subprocess
    (tmp_path / "bb.tar").write_bytes(busybox_tar_bytes)
    ctx = tmp_path / "ctx"
    (ctx / "dir").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(
        "FROM bb:real\nENV A=1\nCOPY hello.txt /srv/hello.txt\nLABEL x=y\n"
        "COPY dir /srv/dir\nCMD [\"cat\", \"/srv/hello.txt\"]\n")
    (ctx / "hello.txt").write_text("hello\n")
    (ctx / "dir/a").write_text("a")
    svc = make_service()
    with running_dockerd(tmp_path / "dockerd") as d:
        d.docker("import", str(tmp_path / "bb.tar"), "bb:real")
        subprocess.run(["/usr/local/bin/docker", "build", "-q", "-t", "built:1", str(ctx)],
                       env=dict(d.env, DOCKER_BUILDKIT="0"), check=True, capture_output=True,
                       timeout=120)
        d.docker("save", "-o", str(tmp_path / "b.tar"), "built:1")
        with open(tmp_path / "b.tar", "rb") as f:
            list(svc.load_images(f, quiet=True))
        theirs = [json.loads(line) for line in d.docker(
            "history", "--no-trunc", "--human=false", "--format", "{{json .}}", "built:1",
            text=True).stdout.splitlines()]
        real = json.loads(d.docker("image", "inspect", "built:1").stdout)[0]
    ours = svc.history("built:1")
    assert len(ours) == len(theirs) == 6
    for t, o in zip(theirs, ours):
        assert (o["CreatedBy"], o["Size"], o["Comment"]) == (t["CreatedBy"], int(t["Size"]),
                                                             t["Comment"])
    assert ours[0]["Id"] == real["Id"] and ours[0]["Tags"] == ["built:1"]
    assert all(o["Id"] == "<missing>" for o in ours[1:])
    mine = svc.inspect("built:1")
    for k in SAME_KEYS:
        if k != "Parent":     # the local parent chain is not part of an archive
            assert mine[k] == real[k], k
