"""skopeo, a real client, copies images to and from `dockyard registry`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from registry_helpers import running_registry, write_oci_layout

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def skopeo(tmp_path, *args, check=True):
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"), "HOME": str(tmp_path)}
    r = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True,
                       timeout=120, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed:\n{r.stderr}")
    return r


def round_trip(tmp_path, reg, layout, creds: list[str]):
    dest = f"docker://{reg.addr}/test/busybox:v1"
    skopeo(tmp_path, "copy", "--dest-tls-verify=false", *[f"--dest-creds={c}" for c in creds],
           f"oci:{layout}:v1", dest)
    back = tmp_path / "back"
    skopeo(tmp_path, "copy", "--src-tls-verify=false", *[f"--src-creds={c}" for c in creds],
           dest, f"oci:{back}:v1")
    raw = skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", *[f"--creds={c}" for c in creds],
                 dest).stdout
    return back, raw


@pytest.fixture
def layout(tmp_path, busybox_template):
    out = tmp_path / "layout"
    info = write_oci_layout(busybox_template, out)
    return out, info


def assert_same_image(back, info):
    idx = json.loads((back / "index.json").read_text())
    assert idx["manifests"][0]["digest"] == info["digest"]
    m = json.loads((back / "blobs" / "sha256" / info["digest"].split(":")[1]).read_text())
    assert m == info["manifest"]
    for desc in [m["config"], *m["layers"]]:
        assert (back / "blobs" / "sha256" / desc["digest"].split(":")[1]).stat().st_size == desc["size"]


def test_skopeo_copy_round_trip(tmp_path, layout):
    out, info = layout
    with running_registry(tmp_path / "root") as reg:
        back, raw = round_trip(tmp_path, reg, out, [])
        assert json.loads(raw) == info["manifest"]
        assert_same_image(back, info)
        tags = reg.client().request("GET", "/v2/test/busybox/tags/list").json()
        assert tags == {"name": "test/busybox", "tags": ["v1"]}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["basic", "token"])
def test_skopeo_with_auth(tmp_path, layout, htpasswd, mode):
    out, info = layout
    with running_registry(tmp_path / "root", "--auth", mode, "--htpasswd", str(htpasswd)) as reg:
        back, _ = round_trip(tmp_path, reg, out, ["alice:alicepw"])
        assert_same_image(back, info)
        r = skopeo(tmp_path, "copy", "--dest-tls-verify=false", "--dest-creds=alice:wrong",
                   f"oci:{out}:v1", f"docker://{reg.addr}/test/other:v1", check=False)
        assert r.returncode != 0 and ("401" in r.stderr or "unauthorized" in r.stderr.lower())
        r = skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false",
                   f"docker://{reg.addr}/test/busybox:v1", check=False)
        assert r.returncode != 0
        assert not (reg.root / "repositories" / "test" / "other").exists()
