"""Debian's dockerd pushes to and pulls from `dockyard registry`, with and
without auth, and the real docker CLI logs in."""

from __future__ import annotations

import json

import pytest

from helpers.dockerd import running_dockerd
from registry_helpers import running_registry, tar_rootfs

pytestmark = [pytest.mark.slow, pytest.mark.dockerd]


def import_busybox(d, busybox_template, ref: str) -> str:
    d.docker("import", "-", ref, input=tar_rootfs(busybox_template))
    return d.docker("image", "inspect", "--format", "{{.Id}}", ref, text=True).stdout.strip()


def push_pull(d, ref: str, image_id: str) -> None:
    out = d.docker("push", ref, text=True).stdout
    assert "digest: sha256:" in out
    d.docker("rmi", ref)
    assert d.docker("image", "inspect", ref, check=False).returncode != 0
    d.docker("pull", ref)
    assert d.docker("image", "inspect", "--format", "{{.Id}}", ref, text=True).stdout.strip() == image_id


def test_dockerd_push_pull_search(tmp_path, busybox_template):
    with running_registry(tmp_path / "root") as reg, running_dockerd(tmp_path / "d") as d:
        d.forward(int(reg.addr.rpartition(":")[2]))   # dockerd has a network namespace of its own
        ref = f"{reg.addr}/x/busybox:v1"
        image_id = import_busybox(d, busybox_template, ref)
        push_pull(d, ref, image_id)
        # the registry holds a Docker schema 2 manifest for it
        r = reg.client().request("GET", "/v2/x/busybox/manifests/v1", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status == 200 and json.loads(r.body)["config"]["digest"] == image_id
        # a second push finds every blob already there
        out = d.docker("push", ref, text=True).stdout
        assert "Layer already exists" in out
        # pushing to another repository mounts the layer instead of uploading it
        d.docker("tag", ref, f"{reg.addr}/y/busybox:v1")
        out = d.docker("push", f"{reg.addr}/y/busybox:v1", text=True).stdout
        assert "Mounted from x/busybox" in out
        found = d.docker("search", f"{reg.addr}/busybox", "--format", "{{.Name}}", text=True).stdout
        assert "x/busybox" in found


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_dockerd_with_auth(tmp_path, busybox_template, htpasswd, mode):
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"alice": ["pull", "push"], "bob": ["pull"]}))
    with running_registry(tmp_path / "root", "--auth", mode, "--htpasswd", str(htpasswd),
                          "--access", str(access)) as reg, running_dockerd(tmp_path / "d") as d:
        d.forward(int(reg.addr.rpartition(":")[2]))
        ref = f"{reg.addr}/team/busybox:v1"
        image_id = import_busybox(d, busybox_template, ref)
        # not logged in: refused
        r = d.docker("push", ref, check=False, text=True)
        assert r.returncode != 0
        # a wrong password does not log in
        r = d.docker("login", reg.addr, "-u", "alice", "--password-stdin", input=b"wrong\n", check=False)
        assert r.returncode != 0
        r = d.docker("login", reg.addr, "-u", "alice", "--password-stdin", input=b"alicepw\n", text=False)
        assert b"Login Succeeded" in r.stdout
        with open(d.env["DOCKER_CONFIG"] + "/config.json") as f:
            auths = json.load(f)["auths"]
        assert reg.addr in auths
        push_pull(d, ref, image_id)
        d.docker("logout", reg.addr)
        d.docker("rmi", ref)
        assert d.docker("pull", ref, check=False).returncode != 0
        # bob may pull but not push
        d.docker("login", reg.addr, "-u", "bob", "--password-stdin", input=b"bobpw\n")
        d.docker("pull", ref)
        d.docker("tag", ref, f"{reg.addr}/team/busybox:bob")
        r = d.docker("push", f"{reg.addr}/team/busybox:bob", check=False, text=True)
        assert r.returncode != 0 and "denied" in r.stderr
        assert reg.client().request("GET", "/v2/").status == 401
    tags = (tmp_path / "root" / "repositories" / "team" / "busybox" / "_manifests" / "tags")
    assert sorted(p.name for p in tags.iterdir()) == ["v1"]
