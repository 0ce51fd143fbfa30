"""The `dockyard registry` command line: htpasswd lines, the config file, bad flags."""

from __future__ import annotations

import json
import subprocess
import sys

from registry_helpers import basic, running_registry


def dockyard(*args, input=None):
    return subprocess.run([sys.executable, "-m", "dockyard", "registry", *args], capture_output=True,
                          text=True, input=input, timeout=60)


def test_htpasswd_line_logs_in(tmp_path):
    r = dockyard("htpasswd", "carol", "--password-stdin", input="s3cret\n")
    assert r.returncode == 0
    line = r.stdout.strip()
    assert line.startswith("carol:$2b$10$")
    (tmp_path / "htpasswd").write_text(line + "\n")
    with running_registry(tmp_path / "root", "--htpasswd", str(tmp_path / "htpasswd")) as reg:
        # --htpasswd alone means basic auth
        assert reg.client().request("GET", "/v2/").status == 401
        assert reg.client(auth=basic("carol", "s3cret")).request("GET", "/v2/").status == 200
        assert reg.client(auth=basic("carol", "S3cret")).request("GET", "/v2/").status == 401
    assert dockyard("htpasswd", "bad:name", "--password", "x").returncode == 2


def test_config_file(tmp_path, htpasswd):
    cfg = tmp_path / "registry.json"
    cfg.write_text(json.dumps({
        "root": "data",
        "auth": {"type": "token", "htpasswd": str(htpasswd), "service": "my-registry", "ttl": 120,
                 "access": {"alice": {"alice/*": ["pull", "push"], "*": ["pull"]}}},
    }))
    with running_registry(tmp_path / "data", "--config", str(cfg)) as reg:
        c = reg.client(auth=basic("alice", "alicepw"))
        t = c.request("GET", "/token?service=my-registry&scope=repository:alice/x:pull,push"
                              "&scope=repository:team/y:pull,push").json()
        assert t["expires_in"] == 120
        import jwt
        claims = jwt.decode(t["token"], options={"verify_signature": False})
        assert claims["aud"] == "my-registry"
        assert claims["access"] == [
            {"type": "repository", "name": "alice/x", "actions": ["pull", "push"]},
            {"type": "repository", "name": "team/y", "actions": ["pull"]}]
    assert (tmp_path / "data" / "auth" / "token-key.pem").stat().st_mode & 0o077 == 0


def test_bad_flags(tmp_path):
    r = dockyard("serve", "--root", str(tmp_path), "--auth", "basic")
    assert r.returncode == 2 and "needs --htpasswd" in r.stderr
    r = dockyard("serve", "--root", str(tmp_path), "--htpasswd", str(tmp_path / "missing"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = dockyard("serve", "--root", str(tmp_path), "--addr", "nonsense")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    (tmp_path / "bad.json").write_text("{not json")
    r = dockyard("serve", "--config", str(tmp_path / "bad.json"))
    assert r.returncode == 2
    r = dockyard("--help")
    assert r.returncode == 0 and "gc --root" in r.stdout


def test_oversized_manifest_is_refused(registry):
    r = registry.client().request("PUT", "/v2/big/manifests/v1", b"{" + b" " * (4 * 1024 * 1024 + 10) + b"}",
                                  {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 413 and r.codes == ["SIZE_INVALID"]
