"""/containers/{id}/archive through docker-py and raw HTTP: the stat header, parameters,
and hostile archives (nothing may land outside the container, nothing half-written)."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import urllib.parse

import docker
import pytest
from cp_helpers import run_sleeper, sh

pytestmark = pytest.mark.xdist_group("cp-api")


@pytest.fixture(scope="module")
def api(cpd):
    cl = docker.APIClient(base_url=cpd.host, version="1.43", timeout=60)
    yield cl
    cl.close()


def tar_of(*entries) -> bytes:
    """entries: (name, kind, payload) with kind file/dir/sym/hard/chr/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o644
            data = None
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                ti.size = len(data)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def read_tar(stream) -> dict[str, tarfile.TarInfo | bytes]:
    data = b"".join(stream)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            out[m.name.rstrip("/")] = tf.extractfile(m).read() if m.isfile() else m
    return out


def raw(cpd, method: str, cid: str, path: str | None, body: bytes | None = None, **q):
    from helpers.daemon import unix_request

    params = dict(q)
    if path is not None:
        params["path"] = path
    url = f"/v1.43/containers/{cid}/archive?" + urllib.parse.urlencode(params)
    sock = cpd.host[len("unix://"):]
    return unix_request(sock, method, url, body,
                        {"Content-Type": "application/x-tar"} if body is not None else None)


def path_stat(headers) -> dict:
    h = {k.lower(): v for k, v in dict(headers).items()}
    return json.loads(base64.b64decode(h["x-docker-container-path-stat"]))


def test_put_and_get_archive_with_docker_py(cpd, api, name):
    cid = run_sleeper(cpd, name)
    tar = tar_of(("d", "dir", None), ("d/a.txt", "file", "alpha"), ("d/l", "sym", "a.txt"),
                 ("d/h", "hard", "d/a.txt"), ("d/p", "fifo", None))
    assert api.put_archive(cid, "/tmp", tar) is True
    assert sh(cpd, name, "cat /tmp/d/a.txt /tmp/d/h; readlink /tmp/d/l; "
              "stat -c '%h %F' /tmp/d/a.txt /tmp/d/p") == \
        "alphaalphaa.txt\n2 regular file\n1 fifo\n"
    stream, st = api.get_archive(cid, "/tmp/d")
    got = read_tar(stream)
    assert got["d/a.txt"] == b"alpha"
    assert got["d/l"].issym() and got["d/l"].linkname == "a.txt"
    assert got["d/h"].islnk() or got["d/h"] == b"alpha"
    assert got["d/p"].isfifo()
    assert st["name"] == "d" and st["mode"] & (1 << 31) and st["linkTarget"] == ""


def test_stat_header_as_dockerd_writes_it(cpd, name):
    cid = run_sleeper(cpd, name)
    sh(cpd, name, "printf 12345 > /tmp/f; chmod 4755 /tmp/f; ln -s f /tmp/rel; "
       "ln -s /tmp/f /tmp/abs; ln -s ../../../nowhere /tmp/dangling; touch -d @1700000000 /tmp/f")
    status, headers, body = raw(cpd, "HEAD", name, "/tmp/f")
    assert status == 200 and body == b""
    st = path_stat(headers)
    assert st == {"name": "f", "size": 5, "mode": (1 << 23) | 0o755,
                  "mtime": "2023-11-14T22:13:20Z", "linkTarget": ""}
    st = path_stat(raw(cpd, "HEAD", cid, "/tmp/rel")[1])
    assert (st["name"], st["mode"] & (1 << 27) != 0, st["linkTarget"]) == ("rel", True, "/tmp/f")
    assert path_stat(raw(cpd, "HEAD", cid, "tmp/abs")[1])["linkTarget"] == "/tmp/f"
    assert path_stat(raw(cpd, "HEAD", cid, "/tmp/dangling")[1])["linkTarget"] == "/nowhere"
    # a trailing slash follows the link: the directory itself
    sh(cpd, name, "mkdir /tmp/dir && ln -s dir /tmp/dlink")
    st = path_stat(raw(cpd, "HEAD", cid, "/tmp/dlink/")[1])
    assert st["name"] == "dlink" and st["mode"] & (1 << 31) and st["linkTarget"] == ""
    st = path_stat(raw(cpd, "HEAD", cid, "/")[1])
    assert st["name"] == "/" and st["mode"] & (1 << 31)


def test_errors_and_parameters(cpd, name):
    cid = run_sleeper(cpd, name)
    status, _, body = raw(cpd, "GET", cid, "/no/such")
    assert (status, json.loads(body)) == (
        404, {"message": f"Could not find the file /no/such in container {cid}"})
    status, _, body = raw(cpd, "GET", name, "/no/such")
    assert json.loads(body)["message"] == f"Could not find the file /no/such in container {name}"
    assert raw(cpd, "HEAD", cid, "/no/such")[0] == 404
    status, _, body = raw(cpd, "GET", "nosuchcontainer-cp", "/")
    assert status == 404 and "No such container: nosuchcontainer-cp" in json.loads(body)["message"]
    assert raw(cpd, "GET", cid, None)[0] == 400
    status, _, body = raw(cpd, "PUT", cid, "/tmp", tar_of(("x", "file", "x")),
                          noOverwriteDirNonDir="maybe")
    assert status == 400
    status, _, body = raw(cpd, "PUT", cid, "/bin/busybox", tar_of(("x", "file", "x")))
    assert (status, json.loads(body)["message"]) == (400, "extraction point is not a directory")
    status, _, body = raw(cpd, "PUT", cid, "/nodir", tar_of(("x", "file", "x")))
    assert (status, json.loads(body)["message"]) == (
        404, f"Could not find the file /nodir in container {cid}")
    status, _, body = raw(cpd, "PUT", cid, "/tmp", b"this is not a tar archive" * 40)
    assert status == 400


def test_no_overwrite_dir_non_dir(cpd, api, name):
    cid = run_sleeper(cpd, name)
    sh(cpd, name, "mkdir -p /tmp/isdir/keep && echo f > /tmp/isfile")
    with pytest.raises(docker.errors.APIError, match="cannot overwrite directory"):
        raw_put = raw(cpd, "PUT", cid, "/tmp", tar_of(("isdir", "file", "x")),
                      noOverwriteDirNonDir="true")
        raise docker.errors.APIError(json.loads(raw_put[2])["message"])
    status, _, body = raw(cpd, "PUT", cid, "/tmp", tar_of(("isfile", "dir", None)),
                          noOverwriteDirNonDir="1")
    assert status >= 400 and "cannot overwrite non-directory" in json.loads(body)["message"]
    assert sh(cpd, name, "ls /tmp/isdir; cat /tmp/isfile") == "keep\nf\n"
    # without the parameter both are replaced, as dockerd does
    assert api.put_archive(cid, "/tmp", tar_of(("isdir", "file", "now a file"),
                                               ("isfile", "dir", None)))
    assert sh(cpd, name, "cat /tmp/isdir; test -d /tmp/isfile && echo dir") == "now a filedir\n"


def test_copy_uid_gid(cpd, api, name):
    cid = run_sleeper(cpd, name, "--user", "1234:5678")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("owned")
        ti.uid, ti.gid, ti.size = 42, 43, 1
        tf.addfile(ti, io.BytesIO(b"o"))
    tar = buf.getvalue()
    assert api.put_archive(cid, "/tmp", tar)
    assert sh(cpd, name, "stat -c %u:%g /tmp/owned") == "42:43\n"
    status, _, _ = raw(cpd, "PUT", cid, "/tmp", tar, copyUIDGID="true")
    assert status == 200
    assert sh(cpd, name, "stat -c %u:%g /tmp/owned") == "1234:5678\n"


# -- hostile archives -------------------------------------------------------------------------

@pytest.mark.parametrize("entries,words", [
    ([("ok.txt", "file", "fine"), ("../escaped", "file", "x")], "is outside of"),
    ([("ok.txt", "file", "fine"), ("a/../../escaped", "file", "x")], "is outside of"),
    ([("ok.txt", "file", "fine"), ("up", "sym", "../../../../../../../../")],
     "invalid symlink"),
    ([("ok.txt", "file", "fine"), ("hl", "hard", "../../etc/passwd")], "invalid hardlink"),
    ([("ok.txt", "file", "fine"), ("null", "chr", None)], "device node"),
])
def test_hostile_archive_refused_and_nothing_written(cpd, name, entries, words):
    cid = run_sleeper(cpd, name)
    sh(cpd, name, "mkdir -p /dst/sub")
    status, _, body = raw(cpd, "PUT", cid, "/dst/sub", tar_of(*entries))
    assert status == 400, body
    assert words in json.loads(body)["message"]
    assert sh(cpd, name, "ls -A /dst /dst/sub") == "/dst:\nsub\n\n/dst/sub:\n"


def test_hostile_archive_contained_in_the_container(cpd, name, tmp_path):
    """Absolute names, absolute symlinks and writing through them stay in the container."""
    cid = run_sleeper(cpd, name)
    hostdir = str(tmp_path)
    tar = tar_of(("/abs-name", "file", "abs"),
                 ("esc", "sym", hostdir),           # a link to a host path...
                 ("esc/pwned", "file", "pwned"),    # ...written through
                 ("root", "sym", "/"),
                 ("root/tmp/through-root", "file", "tr"),
                 ("./", "dir", None))
    status, _, body = raw(cpd, "PUT", cid, "/tmp", tar)
    assert status == 200, body
    assert not (tmp_path / "pwned").exists()
    assert not os.path.exists("/tmp/through-root")
    assert sh(cpd, name, f"cat /tmp/abs-name {hostdir}/pwned /tmp/through-root") == "abspwnedtr"
    # a link the container made, pointing at the host's root, is resolved in the container
    host_marker = tmp_path / "marker"
    host_marker.write_text("host")
    sh(cpd, name, f"ln -s {hostdir} /tmp/hostlink")
    status, _, _ = raw(cpd, "PUT", cid, "/tmp/hostlink", tar_of(("marker", "file", "evil")))
    assert status == 200
    assert host_marker.read_text() == "host"
    assert sh(cpd, name, f"cat {hostdir}/marker") == "evil"


def test_device_nodes_in_a_privileged_container(cpd, name):
    cid = run_sleeper(cpd, name, "--privileged")
    status, _, body = raw(cpd, "PUT", cid, "/tmp", tar_of(("null", "chr", None)))
    assert status == 200, body
    assert sh(cpd, name, "stat -c '%F %t:%T' /tmp/null") == "character special file 1:3\n"


def test_archive_of_a_stopped_container(cpd, api, name):
    r = cpd.docker("create", "--name", name, "busybox", "true")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert api.put_archive(cid, "/", tar_of(("etc/fromtar", "file", "stopped")))
    stream, st = api.get_archive(cid, "/etc/fromtar")
    assert read_tar(stream)["fromtar"] == b"stopped"
    assert st["size"] == 7
    rootfs = cpd.root / "data" / "containers" / cid / "rootfs"
    assert not os.path.ismount(rootfs)


def test_read_only_rootfs_refuses_put_but_serves_get(cpd, api, name):
    cid = run_sleeper(cpd, name, "--read-only")
    status, _, body = raw(cpd, "PUT", cid, "/tmp", tar_of(("x", "file", "x")))
    assert (status, json.loads(body)["message"]) == (403, "container rootfs is marked read-only")
    stream, st = api.get_archive(cid, "/bin/busybox")
    assert read_tar(stream)["busybox"][:4] == b"\x7fELF"


def test_no_way_into_the_kernels_interfaces(cpd, name):
    """The copy works on the rootfs, not through /proc/<pid>/root: the container's /proc,
    /sys and /dev are not there to read or write."""
    cid = run_sleeper(cpd, name)
    for p in ("/proc/1/environ", "/proc/self/root/etc/passwd", "/sys/kernel", "/proc/sys/kernel"):
        status, _, _ = raw(cpd, "GET", cid, p)
        assert status == 404, p
    status, _, body = raw(cpd, "PUT", cid, "/proc/sys/kernel",
                          tar_of(("core_pattern", "file", "|x")))
    assert status == 404, body
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() != "|x\n"


def test_symlink_loop_is_a_bad_request(cpd, name):
    cid = run_sleeper(cpd, name)
    sh(cpd, name, "ln -s loop2 /tmp/loop1 && ln -s loop1 /tmp/loop2")
    status, _, body = raw(cpd, "GET", cid, "/tmp/loop1/x")
    assert status == 400 and "too many levels of symbolic links" in json.loads(body)["message"]
    # dockerd evaluates a link's target for the stat: a loop fails there too
    assert raw(cpd, "HEAD", cid, "/tmp/loop1")[0] == 400


def test_extracting_through_a_file_or_a_loop_is_a_bad_request(cpd, name):
    # an entry whose parent, inside the destination, is a file or a symlink loop
    cid = run_sleeper(cpd, name)
    sh(cpd, name, "mkdir /tmp/x && echo f > /tmp/x/afile && ln -s l2 /tmp/x/l1 && ln -s l1 /tmp/x/l2")
    status, _, body = raw(cpd, "PUT", cid, "/tmp/x", tar_of(("afile/inner", "file", "y")))
    assert (status, json.loads(body)["message"]) == (
        400, 'cannot extract into "/tmp/x/afile": not a directory')
    status, _, body = raw(cpd, "PUT", cid, "/tmp/x", tar_of(("l1/inner", "file", "y")))
    assert status == 400 and "too many levels of symbolic links" in json.loads(body)["message"]
    # missing parents are made, through a symlink that stays inside the root
    sh(cpd, name, "ln -s /tmp/x/made /tmp/x/tomade")
    status, _, _ = raw(cpd, "PUT", cid, "/tmp/x", tar_of(("tomade/a/b", "file", "deep")))
    assert status == 200
    assert sh(cpd, name, "cat /tmp/x/made/a/b").strip() == "deep"
