"""The real docker CLI (28.x) and our CLI against `dockyard daemon`: image commands,
outputs and exit codes."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
import tarfile
import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler

import pytest

from helpers.daemon import DOCKER

ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def both(d, *args, **kw):
    """Run a command with the docker CLI and ours; both must agree on output and status."""
    a = d.docker(*args, **kw)
    b = d.dockyard(*args, **kw)
    # usage messages name the program: ours is "dockyard"
    theirs = (a.returncode, a.stdout, a.stderr)
    ours = (b.returncode, b.stdout, b.stderr.replace("dockyard", "docker"))
    assert ours == theirs, args
    return a


def test_import_images_inspect_history(dockyard_daemon, busybox_tar):
    d = dockyard_daemon
    r = d.docker("import", "-c", "ENV A=1", "-c", "LABEL x=y", "-m", "first import",
                 str(busybox_tar), "am/imp:v1")
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    assert ID_RE.match(image_id)
    assert d.docker("tag", "am/imp:v1", "127.0.0.1:5000/am/imp:v2").returncode == 0
    r = d.docker("images")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert re.match(r"REPOSITORY\s{3,}TAG\s{3,}IMAGE ID\s{3,}CREATED\s{3,}SIZE$", lines[0])
    rows = sorted(ln.split()[:3] for ln in lines[1:])
    assert rows == [["127.0.0.1:5000/am/imp", "v2", image_id[7:19]],
                    ["am/imp", "v1", image_id[7:19]]]
    assert all(ln.rstrip().endswith("MB") for ln in lines[1:])
    assert d.docker("images", "-q").stdout.split() == [image_id[7:19]] * 2
    r = d.docker("images", "--no-trunc", "--format", "{{.ID}}")
    assert r.stdout.split() == [image_id] * 2
    r = d.docker("images", "am/imp", "--format", "{{.Repository}}:{{.Tag}}")
    assert r.stdout == "am/imp:v1\n"
    r = d.docker("image", "ls", "--filter", "reference=127.0.0.1:5000/*/*", "--format", "{{.Tag}}")
    assert r.stdout == "v2\n"
    r = d.docker("inspect", "--format", "{{.Id}} {{.Comment}} {{index .Config.Labels \"x\"}} "
                 "{{json .Config.Env}}", "am/imp:v1")
    assert r.returncode == 0 and r.stdout == f'{image_id} first import y ["A=1"]\n', r.stderr
    info = json.loads(d.docker("image", "inspect", "127.0.0.1:5000/am/imp:v2").stdout)
    assert info[0]["Id"] == image_id and info[0]["RootFS"]["Type"] == "layers"
    assert sorted(info[0]["RepoTags"]) == ["127.0.0.1:5000/am/imp:v2", "am/imp:v1"]
    r = d.docker("history", "am/imp:v1")
    assert r.stdout.splitlines()[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE",
                                                "COMMENT"]
    assert r.stdout.splitlines()[1].startswith(image_id[7:19])
    assert "first import" in r.stdout
    # a second import from stdin, untagged: a dangling image
    r = d.docker("import", "-", input=busybox_tar.read_bytes(), text=False)
    assert r.returncode == 0
    dangling = r.stdout.decode().strip()
    r = d.docker("images", "--filter", "dangling=true", "--format", "{{.ID}} {{.Repository}}")
    assert r.stdout == f"{dangling[7:19]} <none>\n"
    r = d.docker("system", "df")
    assert r.returncode == 0
    assert re.search(r"^Images\s+2\s+0\s+\S+MB\s+\S+MB \(100%\)$", r.stdout, re.M), r.stdout


def test_our_cli_matches_docker_cli(dockyard_daemon, saved_busybox, busybox_tar):
    d = dockyard_daemon
    path, image_id = saved_busybox
    assert d.docker("load", "-i", str(path)).returncode == 0
    # a second image sharing the layer, also with a fixed creation time (stable CREATED)
    from imgtar import saved_image

    other, _ = saved_image(busybox_tar.read_bytes(), ["other/img:1"], cmd=["/bin/true"],
                           created="2021-06-01T00:00:00Z")
    assert d.docker("load", input=other, text=False).returncode == 0
    for args in (
        ("images", "am/busybox"),
        ("images", "-q", "am/busybox"),
        ("images", "--digests", "am/busybox"),
        ("images", "--no-trunc", "am/busybox"),
        ("images", "--format", "{{json .}}", "am/busybox"),
        ("images", "--format", "table {{.ID}}\\t{{.Repository}}:{{.Tag}}\\t{{.Size}}"),
        ("images", "--filter", "label=org.dockyard.test=yes", "--format", "{{.Tag}}"),
        ("images", "--filter", "dangling=false", "-q"),
        ("images", "--filter", "bogus=1"),
        ("images", "--badflag"),
        ("history", "am/busybox:v1"),
        ("history", "--no-trunc", "am/busybox:v1"),
        ("history", "-H=false", "am/busybox:v1"),
        ("history", "-q", "am/busybox"),
        ("history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}", "am/busybox"),
        ("history", "nope"),
        ("image", "inspect", "am/busybox:v1"),
        ("image", "inspect", "--format", "{{.Id}} {{.Config.Cmd}} {{.Size}}", "am/busybox"),
        ("inspect", "--format", "{{json .RootFS}}", "am/busybox:v1", "nope"),
        ("inspect", "nope"),
        ("image", "inspect", "nope"),
        ("tag", "am/busybox", "Bad/Name"),
        ("tag", "am/busybox", "UPPER"),
        ("tag", "am/busybox", "bad//name"),
        ("tag", "nope", "x"),
        ("tag", "am/busybox"),
        ("system", "df"),
        ("system", "df", "-v"),
        ("system", "df", "--format", "{{json .}}"),
        ("inspect", "--format", "json", "am/busybox:v1"),
        ("history", "--format", "json", "am/busybox"),
        ("image", "ls", "--format", "json", "am/busybox"),
        ("version", "--format", "{{.Server.APIVersion}} {{json .Server.Components}}"),
        ("image", "prune", "-f"),
        ("rmi", "nope"),
    ):
        both(d, *args)
    both(d, "rmi", "nope1", "nope2")


def test_our_cli_stateful_outputs(dockyard_daemon, saved_busybox):
    d = dockyard_daemon
    path, image_id = saved_busybox
    for cli in (d.docker, d.dockyard):
        assert cli("load", "-i", str(path)).stdout == \
            "Loaded image: am/busybox:v1\nLoaded image: am/busybox:latest\n"
        assert cli("tag", "am/busybox:v1", "am/copy:a").returncode == 0
        r = cli("rmi", "am/copy:a")
        assert (r.returncode, r.stdout) == (0, "Untagged: am/copy:a\n")
        r = cli("rmi", image_id[7:19])
        assert r.returncode == 1
        assert r.stderr == (f"Error response from daemon: conflict: unable to delete "
                            f"{image_id[7:19]} (must be forced) - image is referenced in "
                            "multiple repositories\n")
        r = cli("rmi", "-f", image_id[7:19])
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert sorted(lines[:2]) == ["Untagged: am/busybox:latest", "Untagged: am/busybox:v1"]
        assert lines[2] == f"Deleted: {image_id}" and lines[3].startswith("Deleted: sha256:")
        assert cli("images", "-q").stdout == ""


def test_save_load_round_trip(dockyard_daemon, saved_busybox, busybox_tar, tmp_path):
    d = dockyard_daemon
    path, image_id = saved_busybox
    assert d.docker("load", "-q", "-i", str(path)).returncode == 0
    assert d.docker("import", str(busybox_tar), "second:one").returncode == 0
    out = tmp_path / "both.tar"
    r = d.docker("save", "-o", str(out), "am/busybox:v1", "second:one")
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tf:
        names = tf.getnames()
        manifest = json.load(tf.extractfile("manifest.json"))
    assert "manifest.json" in names
    assert sorted(t for m in manifest for t in m["RepoTags"]) == ["am/busybox:v1", "second:one"]
    # save to stdout (a pipe) streams the same archive format
    r = d.docker("save", "am/busybox:v1", text=False)
    assert r.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        assert "manifest.json" in tf.getnames()
    # our CLI writes the same archive
    ours = d.dockyard("save", "am/busybox:v1", text=False)
    assert ours.returncode == 0 and ours.stdout == r.stdout
    assert d.docker("rmi", "-f", "am/busybox:v1", "am/busybox:latest", "second:one"
                    ).returncode == 0
    assert d.docker("images", "-q").stdout == ""
    # load from a file, from stdin, quietly, with both CLIs
    r = d.docker("load", "-i", str(out))
    assert r.returncode == 0 and set(r.stdout.splitlines()) == {
        "Loaded image: am/busybox:v1", "Loaded image: second:one"}
    assert d.docker("rmi", "second:one").returncode == 0
    r = d.dockyard("load", input=out.read_bytes(), text=False)
    assert r.returncode == 0 and b"Loaded image: second:one" in r.stdout
    r = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(r.stdout.split()) == ["am/busybox:v1", "second:one"]
    assert json.loads(d.docker("inspect", "am/busybox:v1").stdout)[0]["Id"] == image_id
    # a missing name: nothing is written, the error comes from the daemon
    bad = tmp_path / "bad.tar"
    r = d.docker("save", "-o", str(bad), "nope")
    assert r.returncode == 1 and "No such image: nope" in r.stderr and not bad.exists()
    r = d.dockyard("save", "-o", str(bad), "nope")
    assert r.returncode == 1 and "No such image: nope" in r.stderr and not bad.exists()


def test_save_refuses_a_terminal(dockyard_daemon):
    d = dockyard_daemon
    for cmd in ([DOCKER], [sys.executable, "-m", "dockyard"]):
        master, slave = pty.openpty()
        try:
            p = subprocess.run([*cmd, "save", "busybox"], env=d.env, stdout=slave,
                               stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(slave)
            os.close(master)
        assert p.returncode == 1
        assert b"cowardly refusing to save to a terminal. Use the -o flag or redirect" in \
            p.stderr


def test_image_prune(dockyard_daemon, saved_busybox, busybox_tar):
    d = dockyard_daemon
    path, image_id = saved_busybox
    assert d.docker("load", "-i", str(path)).returncode == 0
    dangling = d.docker("import", str(busybox_tar)).stdout.strip()
    # without -f it asks; "n" keeps everything
    r = d.docker("image", "prune", input="n\n")
    assert r.returncode == 0
    assert r.stdout.startswith("WARNING! This will remove all dangling images.\n"
                               "Are you sure you want to continue? [y/N] ")
    r2 = d.dockyard("image", "prune", input="n\n")
    assert (r2.returncode, r2.stdout) == (r.returncode, r.stdout)
    assert len(d.docker("images", "-q").stdout.split()) == 3
    r = d.dockyard("image", "prune", input="y\n")
    assert r.returncode == 0
    assert f"Deleted Images:\ndeleted: {dangling}\n" in r.stdout
    assert re.search(r"\n\nTotal reclaimed space: \S+B\n$", r.stdout)
    assert d.docker("image", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    # -a with a label filter that matches nothing keeps the image, then -a removes it
    r = d.docker("image", "prune", "-a", "-f", "--filter", "label=nomatch")
    assert r.stdout == "Total reclaimed space: 0B\n"
    r = d.docker("image", "prune", "-a", "-f")
    assert r.returncode == 0
    assert "untagged: am/busybox:v1\n" in r.stdout and f"deleted: {image_id}\n" in r.stdout
    assert d.docker("images", "-aq").stdout == ""


def test_import_from_url(dockyard_daemon, busybox_tar):
    d = dockyard_daemon
    handler = partial(SimpleHTTPRequestHandler, directory=str(busybox_tar.parent))
    handler.log_message = lambda *a: None
    srv = HTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/{busybox_tar.name}"
        r = d.docker("import", url, "from/url:1")
        assert r.returncode == 0 and ID_RE.match(r.stdout.strip()), r.stderr
        r = d.dockyard("import", "-m", "hi", url, "from/url:2")
        assert r.returncode == 0 and ID_RE.match(r.stdout.strip()), r.stderr
        r = d.docker("import", url + ".missing", "from/url:3")
        assert r.returncode == 1 and "404" in r.stderr
    finally:
        srv.shutdown()
        srv.server_close()
    r = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert sorted(r.stdout.split()) == ["from/url:1", "from/url:2"]


def test_image_names_with_registry_ports_in_paths(dockyard_daemon, saved_busybox):
    d = dockyard_daemon
    path, image_id = saved_busybox
    assert d.docker("load", "-i", str(path)).returncode == 0
    assert d.docker("tag", "am/busybox:v1", "127.0.0.1:5000/am/busybox:v1").returncode == 0
    for p in ("/v1.47/images/127.0.0.1:5000/am/busybox:v1/json",
              "/v1.47/images/127.0.0.1:5000/am/busybox:v1/history",
              "/images/" + image_id + "/json",
              "/images/am/busybox/json"):
        status, _, body = d.request("GET", p)
        assert status == 200, (p, body)
    status, _, body = d.request("DELETE", "/v1.47/images/127.0.0.1:5000/am/busybox:v1")
    assert status == 200 and json.loads(body) == [{"Untagged": "127.0.0.1:5000/am/busybox:v1"}]
    status, _, body = d.request("POST", "/v1.47/images/127.0.0.1:5000/am/busybox/push?tag=v1",
                                headers={"X-Registry-Auth": "e30="})
    assert status >= 400 and json.loads(body)["message"]
