"""The real docker CLI's `docker cp`, both ways, against our daemon."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from cp_helpers import run_sleeper, sh

pytestmark = pytest.mark.xdist_group("cp-cli")

BOTH = pytest.mark.parametrize("cli", ["docker", "dockyard"])


def cp(d, cli: str, *args: str, **kw):
    """`docker cp` or our `dockyard cp`, the same arguments."""
    return getattr(d, cli)("cp", *args, **kw)


@BOTH
def test_file_to_running_container_and_back(cpd, name, tmp_path, cli):
    run_sleeper(cpd, name)
    src = tmp_path / "hello.txt"
    src.write_text("hello from the host\n")
    os.chmod(src, 0o640)
    r = cp(cpd, cli, str(src), f"{name}:/tmp/")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert sh(cpd, name, "cat /tmp/hello.txt") == "hello from the host\n"
    assert sh(cpd, name, "stat -c %a /tmp/hello.txt").strip() == "640"
    # to a new name in an existing directory
    r = cp(cpd, cli, str(src), f"{name}:/tmp/renamed.txt")
    assert r.returncode == 0, r.stderr
    sh(cpd, name, "echo changed inside > /tmp/renamed.txt")
    back = tmp_path / "back.txt"
    r = cp(cpd, cli, f"{name}:/tmp/renamed.txt", str(back))
    assert r.returncode == 0, r.stderr
    assert back.read_text() == "changed inside\n"


@BOTH
def test_directory_both_ways(cpd, name, tmp_path, cli):
    run_sleeper(cpd, name)
    src = tmp_path / "tree"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "deeper" / "b.txt").write_text("B" * 100000)
    os.symlink("a.txt", src / "link")
    # to a missing path: the directory is copied under that name
    r = cp(cpd, cli, str(src), f"{name}:/renamed")
    assert r.returncode == 0, r.stderr
    assert sh(cpd, name, "cat /renamed/a.txt") == "A"
    sh(cpd, name, "mkdir /opt")
    r = cp(cpd, cli, str(src), f"{name}:/opt")
    assert r.returncode == 0, r.stderr
    assert sh(cpd, name, "cat /opt/tree/a.txt; wc -c < /opt/tree/sub/deeper/b.txt; "
              "readlink /opt/tree/link") == "A100000\na.txt\n"
    sh(cpd, name, "echo new > /opt/tree/sub/made-inside")
    out = tmp_path / "out"
    out.mkdir()
    r = cp(cpd, cli, f"{name}:/opt/tree", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "tree" / "sub" / "made-inside").read_text() == "new\n"
    assert (out / "tree" / "sub" / "deeper" / "b.txt").read_text() == "B" * 100000
    assert os.readlink(out / "tree" / "link") == "a.txt"
    # "dir/." copies the contents
    out2 = tmp_path / "contents"
    r = cp(cpd, cli, f"{name}:/opt/tree/.", str(out2))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out2)) == ["a.txt", "link", "sub"]


@BOTH
def test_stopped_container_both_ways(cpd, name, tmp_path, cli):
    r = cpd.docker("create", "--name", name, "busybox", "cat", "/data/in.txt")
    assert r.returncode == 0, r.stderr
    src = tmp_path / "in.txt"
    src.write_text("copied while stopped\n")
    r = cp(cpd, cli, str(src), f"{name}:/")
    assert r.returncode == 0, r.stderr
    # /data does not exist: dockerd's words for the missing destination's parent
    r = cp(cpd, cli, str(src), f"{name}:/data/in.txt")
    assert r.returncode == 1
    assert r.stderr == ("Error response from daemon: Could not find the file /data in "
                        f"container {name}\n")
    sh_tar = io.BytesIO()
    with tarfile.open(fileobj=sh_tar, mode="w") as tf:
        ti = tarfile.TarInfo("data/in.txt")
        data = src.read_bytes()
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    r = cp(cpd, cli, "-", f"{name}:/", input=sh_tar.getvalue(), text=False)
    assert r.returncode == 0, r.stderr
    # the rootfs is not left mounted for a stopped container, and the copy is there at start
    r = cpd.docker("start", "-a", name)
    assert (r.returncode, r.stdout) == (0, "copied while stopped\n"), r.stderr
    back = tmp_path / "back"
    r = cp(cpd, cli, f"{name}:/in.txt", str(back))
    assert r.returncode == 0, r.stderr
    assert back.read_text() == "copied while stopped\n"


def test_stdout_tar_and_stat_header_names(cpd, name):
    run_sleeper(cpd, name)
    sh(cpd, name, "mkdir -p /srv/d && echo x > /srv/d/f && ln -s /srv/d /srv/l")
    r = cpd.docker("cp", f"{name}:/srv/d", "-", text=False)
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        names = sorted(m.name.rstrip("/") for m in tf.getmembers())
    assert names == ["d", "d/f"]
    # a symlink is copied as the link; -L follows it (the CLI stats it first)
    r = cpd.docker("cp", f"{name}:/srv/l", "-", text=False)
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        m = tf.getmembers()[0]
    assert (m.name, m.issym(), m.linkname) == ("l", True, "/srv/d")


@BOTH
def test_follow_link_copies_the_target(cpd, name, tmp_path, cli):
    run_sleeper(cpd, name)
    sh(cpd, name, "mkdir -p /srv/d && echo x > /srv/d/f && ln -s d /srv/l")
    r = cp(cpd, cli, "-L", f"{name}:/srv/l", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "f").read_text() == "x\n"
    r = cp(cpd, cli, f"{name}:/srv/l", str(tmp_path / "link"))
    assert r.returncode == 0, r.stderr
    assert os.readlink(tmp_path / "link") == "d"


def test_errors_as_docker_words_them(cpd, name, tmp_path):
    run_sleeper(cpd, name)
    r = cpd.docker("cp", f"{name}:/does/not/exist", str(tmp_path / "x"))
    assert (r.returncode, r.stderr) == (
        1, "Error response from daemon: Could not find the file /does/not/exist in container "
           f"{name}\n")
    r = cpd.docker("cp", "nosuchcontainer-cp:/etc", str(tmp_path / "x"))
    assert r.returncode == 1
    assert "No such container: nosuchcontainer-cp" in r.stderr
    # a file where a directory must be: the CLI's own check after HEAD
    sh(cpd, name, "echo x > /tmp/file")
    f = tmp_path / "f"
    f.write_text("y")
    r = cpd.docker("cp", "-", f"{name}:/tmp/file", input="")
    assert r.returncode == 1
    assert f'destination "{name}:/tmp/file" must be a directory' in r.stderr
    # a directory over a file (noOverwriteDirNonDir=true from the CLI)
    d = tmp_path / "file"
    d.mkdir()
    r = cpd.docker("cp", str(d), f"{name}:/tmp/")
    assert r.returncode == 1
    assert "cannot overwrite non-directory" in r.stderr
    assert sh(cpd, name, "cat /tmp/file") == "x\n"


@BOTH
def test_symlinks_in_container_never_reach_the_host(cpd, name, tmp_path, cli):
    """Links made inside the container that point at host paths resolve in the container."""
    run_sleeper(cpd, name)
    secret = tmp_path / "host-secret"
    secret.write_text("HOST ONLY\n")
    hostdir = str(tmp_path)
    sh(cpd, name, f"ln -s {hostdir} /tmp/abs; ln -s ../../../../../../../..{hostdir} /tmp/rel; "
       "ln -s / /tmp/toroot")
    for link in ("abs", "rel"):
        r = cp(cpd, cli, f"{name}:/tmp/{link}/host-secret", str(tmp_path / f"got-{link}"))
        assert r.returncode == 1, "read a host file through a container symlink"
        assert "Could not find the file" in r.stderr
        assert not (tmp_path / f"got-{link}").exists()
    # writing through them lands inside the container (or nowhere), never on the host
    src = tmp_path / "planted"
    src.write_text("planted\n")
    r = cp(cpd, cli, str(src), f"{name}:/tmp/abs/")
    # HEAD /tmp/abs/ is a 404 (the link leads to a path the container lacks): the CLI's
    # own "no such directory"
    assert r.returncode == 1 and r.stderr.endswith("no such directory\n")
    assert not (tmp_path / "planted-again").exists()
    r = cp(cpd, cli, str(src), f"{name}:/tmp/abs/planted-again")
    assert r.returncode == 1 and "Could not find the file /tmp/abs in container" in r.stderr
    assert not (tmp_path / "planted-again").exists()
    sh(cpd, name, f"mkdir -p {hostdir}")
    r = cp(cpd, cli, str(src), f"{name}:/tmp/rel/written-through")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "written-through").exists()
    assert sh(cpd, name, f"cat {hostdir}/written-through") == "planted\n"
    # ".." above the root stays at the root
    r = cp(cpd, cli, f"{name}:/tmp/toroot/../../../bin/busybox", str(tmp_path / "bb"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "bb").stat().st_size > 100000


def test_our_cli_cp(cpd, name, tmp_path):
    run_sleeper(cpd, name)
    src = tmp_path / "ours.txt"
    src.write_text("via dockyard cp\n")
    r = cpd.dockyard("cp", str(src), f"{name}:/tmp/")
    assert (r.returncode, r.stderr) == (0, "")
    assert sh(cpd, name, "cat /tmp/ours.txt") == "via dockyard cp\n"
    r = cpd.dockyard("cp", f"{name}:/tmp/ours.txt", str(tmp_path / "back.txt"))
    assert (r.returncode, r.stderr) == (0, "")
    assert (tmp_path / "back.txt").read_text() == "via dockyard cp\n"
    r = cpd.dockyard("cp", f"{name}:/nope", str(tmp_path / "x"))
    d = cpd.docker("cp", f"{name}:/nope", str(tmp_path / "x"))
    assert (r.returncode, r.stderr) == (d.returncode, d.stderr) == (
        1, f"Error response from daemon: Could not find the file /nope in container {name}\n")
    r = cpd.dockyard("cp", f"{name}:/tmp", str(tmp_path / "tmpcopy"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "tmpcopy" / "ours.txt").read_text() == "via dockyard cp\n"
