"""Identity tokens (issue 15): `docker login` to a registry with a token server gets an
IdentityToken (an OAuth2 refresh token, asked for with offline_token=true as dockerd's login
does), the docker CLI keeps it in config.json instead of the password, and push/pull then
authenticate with it (grant_type=refresh_token)."""

from __future__ import annotations

import base64
import json
import os
import sys
import uuid

import pytest

pytestmark = pytest.mark.slow


def test_login_identity_token_then_push_and_pull(daemon, tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "registry"))
    from registry_helpers import running_registry, write_htpasswd

    pw = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    access = tmp_path / "access.json"
    access.write_text(json.dumps({"alice": ["pull", "push"]}))
    name = f"idt{uuid.uuid4().hex[:8]}"
    cfg_path = daemon.cfg / "config.json"
    with running_registry(tmp_path / "reg", "--auth", "token", "--htpasswd", str(pw),
                          "--access", str(access)) as reg:
        ref = f"{reg.addr}/team/{name}:v1"
        daemon.docker("tag", "busybox", ref)
        try:
            daemon.docker("login", "-u", "alice", "--password-stdin", reg.addr, input="alicepw")
            entry = json.loads(cfg_path.read_text())["auths"][reg.addr]
            # the CLI keeps the identity token and drops the password
            assert entry.get("identitytoken"), entry
            assert base64.b64decode(entry["auth"]) == b"alice:"
            out = daemon.docker("push", ref).stdout
            assert "v1: digest: sha256:" in out, out
            daemon.docker("rmi", ref)
            daemon.docker("pull", ref)
            assert daemon.out("run", "--rm", ref, "echo", "ok") == "ok"

            # it is the identity token that authenticates: a forged one is refused (through
            # docker-py: the CLI would prompt for a login)
            import docker

            daemon.docker("rmi", ref)
            api = docker.APIClient(base_url=daemon.host, version="1.41")
            try:
                with pytest.raises(docker.errors.APIError) as e:
                    api.pull(ref, auth_config={"username": "alice", "identitytoken": "forged",
                                               "serveraddress": reg.addr})
                assert "unauthorized" in str(e.value).lower(), e.value
                api.pull(ref, auth_config={"username": "alice", "serveraddress": reg.addr,
                                           "identitytoken": entry["identitytoken"]})
                assert daemon.out("image", "inspect", "-f", "{{.Id}}", ref).startswith("sha256:")
                # docker-py's login answers the IdentityToken too
                got = api.login("alice", "alicepw", registry=reg.addr, reauth=True)
                assert got["Status"] == "Login Succeeded" and got["IdentityToken"], got
            finally:
                api.close()
        finally:
            daemon.docker("logout", reg.addr, check=False)
            daemon.docker("rmi", "-f", ref, check=False)


def test_basic_registry_login_has_no_identity_token(daemon, tmp_path):
    """An htpasswd (Basic) registry has no token server: IdentityToken stays empty and the
    CLI keeps the password, as with dockerd."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "registry"))
    from registry_helpers import running_registry, write_htpasswd

    pw = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    with running_registry(tmp_path / "reg", "--auth", "basic", "--htpasswd", str(pw)) as reg:
        try:
            daemon.docker("login", "-u", "alice", "--password-stdin", reg.addr, input="alicepw")
            entry = json.loads((daemon.cfg / "config.json").read_text())["auths"][reg.addr]
            assert not entry.get("identitytoken")
            assert base64.b64decode(entry["auth"]) == b"alice:alicepw"
        finally:
            daemon.docker("logout", reg.addr, check=False)
