"""A base image that is not here is pulled by the build, as dockerd's legacy builder does:
its progress in the build's output, the credentials from X-Registry-Config (the docker CLI
and docker-py send their logins there). A `dockyard registry` with htpasswd auth on
loopback; the real docker CLI and docker-py against a private daemon."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from acceptance.test_build_cli import LEGACY, build, image_id

sys.path.insert(0, str(Path(__file__).parents[1] / "registry"))
from registry_helpers import running_registry, write_htpasswd  # noqa: E402

pytestmark = pytest.mark.slow


def _ctx(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / f"p-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def test_missing_base_is_pulled_with_the_clients_credentials(daemon, tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "alicepw"})
    with running_registry(tmp_path / "reg", "--htpasswd", str(htpasswd),
                          "--auth", "basic") as reg:
        ref = f"{reg.addr}/team/base:1"
        other = f"{reg.addr}/team/other:1"
        build(daemon, _ctx(tmp_path, "FROM busybox\nRUN echo from-registry > /marker\n"),
              "-t", ref)
        daemon.docker("tag", ref, other)
        daemon.docker("login", "-u", "alice", "--password-stdin", reg.addr,
                      input="alicepw\n")
        try:
            daemon.docker("push", ref)
            daemon.docker("push", other)
            daemon.docker("rmi", ref, other)

            # the docker CLI: pulled, with progress, then built on it
            ctx = _ctx(tmp_path, f"FROM {ref}\nRUN cat /marker > /seen\n")
            r = build(daemon, ctx)
            out = r.stdout
            assert "1: Pulling from team/base" in out, out
            assert f"Status: Downloaded newer image for {ref}" in out, out
            # under the FROM step's line, before its image ID (as dockerd's legacy builder)
            assert out.index(f"Step 1/2 : FROM {ref}\n") < out.index("Pulling from") \
                < out.index(" ---> ") < out.index("Successfully built"), out
            iid = image_id(out)
            assert daemon.out("run", "--rm", iid, "cat", "/seen") == "from-registry"
            assert daemon.out("image", "inspect", "-f", "{{.Id}}", ref)
            # -q: only the ID
            daemon.docker("rmi", ref)
            r = daemon.docker("build", "-q", str(ctx), env=LEGACY, timeout=180)
            assert r.stdout.strip().startswith("sha256:") and "Pulling" not in r.stdout

            # docker-py sends the logins of its config.json too
            import docker
            import os
            old = os.environ.get("DOCKER_CONFIG")
            os.environ["DOCKER_CONFIG"] = str(daemon.cfg)
            try:
                client = docker.DockerClient(base_url=daemon.host, timeout=120)
            finally:
                if old is None:
                    os.environ.pop("DOCKER_CONFIG")
                else:
                    os.environ["DOCKER_CONFIG"] = old
            try:
                # a later stage's base: its pull shows under that stage's FROM line
                (ctx / "Dockerfile").write_text(f"FROM busybox AS b\nRUN echo b > /b\n"
                                                f"FROM {other}\nCOPY --from=b /b /b\n"
                                                "RUN cat /marker > /seen2\n")
                image, logs = client.images.build(path=str(ctx), rm=True)
                logs = list(logs)
                at = [i for i, m in enumerate(logs)
                      if "Pulling from team/other" in m.get("status", "")]
                step3 = [i for i, m in enumerate(logs)
                         if m.get("stream", "").startswith(f"Step 3/5 : FROM {other}")]
                assert at and step3 and step3[0] < at[0], logs
                after = [m.get("stream", "") for m in logs[at[0]:]
                         if m.get("stream", "").strip()]
                assert after[0].startswith(" ---> ") and after[1].startswith("Step 4/5"), logs
                assert client.containers.run(image.id, ["cat", "/seen2"],
                                             remove=True) == b"from-registry\n"
            finally:
                client.close()

            # dockyard build sends them as well
            from acceptance.test_build_client import dockyard, ok
            daemon.docker("rmi", other)
            out = ok(dockyard(daemon, "build", "--progress", "plain", str(ctx)))
            assert "Pulling from team/other" in out, out
        finally:
            daemon.docker("logout", reg.addr)

        # no login: the pull is refused in-band, the CLI fails with the registry's answer
        daemon.docker("rmi", ref)
        r = build(daemon, _ctx(tmp_path, f"FROM {ref}\nRUN true\n"), check=False)
        assert r.returncode != 0
        assert "unauthorized" in (r.stderr + r.stdout).lower(), r.stderr + r.stdout
        assert "Successfully built" not in r.stdout
        # a base nobody has: pull access denied, nothing left behind
        r = build(daemon, _ctx(tmp_path, f"FROM {reg.addr}/nosuch/image:1\n"), check=False)
        assert r.returncode != 0 and "Successfully built" not in r.stdout
    assert daemon.out("ps", "-aq") == ""
