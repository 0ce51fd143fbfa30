"""Build compatibility: Debian's docker-compose 1.29 (`build` and `up --build`), docker-py's
`api.build` with every parameter (supported ones applied, the others refused with a clear
message), and one multi-stage Dockerfile using every instruction built by Debian's dockerd
(legacy builder) and by Dockyard to the same config, history and files."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LEGACY = {"DOCKER_BUILDKIT": "0"}


# -- docker-compose 1.29 ---------------------------------------------------------------------

COMPOSE = """\
version: "3.7"
services:
  web:
    build:
      context: ./web
      dockerfile: web.Dockerfile
      args:
        GREETING: hello-compose
      labels:
        com.example.built-by: compose
      target: final
    image: {image}
    network_mode: none
    command: ["sh", "-c", "cat /greeting; cat /from-base"]
"""

WEB_DOCKERFILE = """\
FROM busybox AS base
RUN echo base-stage > /from-base
FROM busybox AS final
ARG GREETING=none
COPY --from=base /from-base /from-base
RUN echo "$GREETING" > /greeting
"""


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose is not installed (scripts/install-deps)")
def test_docker_compose_build_and_up_build(daemon, tmp_path):
    proj = tmp_path / f"proj{uuid.uuid4().hex[:6]}"
    (proj / "web").mkdir(parents=True)
    image = f"compose-web-{uuid.uuid4().hex[:6]}"
    (proj / "docker-compose.yml").write_text(COMPOSE.format(image=image))
    (proj / "web" / "web.Dockerfile").write_text(WEB_DOCKERFILE)
    env = {**daemon.env, "COMPOSE_DOCKER_CLI_BUILD": "0", "DOCKER_BUILDKIT": "0"}

    def compose(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run(["docker-compose", "--no-ansi", *args], cwd=proj, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (args, r.stdout, r.stderr, daemon.log_text()[-3000:])
        return r

    try:
        r = compose("build")
        assert "Successfully built" in r.stdout + r.stderr
        cfg = json.loads(daemon.out("image", "inspect", image))[0]["Config"]
        assert cfg["Labels"]["com.example.built-by"] == "compose"
        # up --build: built again (from the cache) and run
        (proj / "web" / "web.Dockerfile").write_text(WEB_DOCKERFILE + "RUN echo more\n")
        r = compose("up", "--build", "--abort-on-container-exit")
        out = r.stdout + r.stderr
        assert "hello-compose" in out and "base-stage" in out, out
        assert "Using cache" in out
    finally:
        subprocess.run(["docker-compose", "--no-ansi", "down", "--rmi", "all"], cwd=proj,
                       env=env, capture_output=True, timeout=120)


# -- docker-py api.build: every parameter ----------------------------------------------------

def test_docker_py_api_build_every_parameter(daemon, tmp_path):
    import docker
    api = docker.APIClient(base_url=daemon.host, timeout=300)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "probe.Dockerfile").write_text(
        "FROM busybox AS unused\nRUN exit 7\n"
        "FROM busybox AS probe\nARG WHO\n"
        "RUN echo \"$WHO\" > /who && ulimit -n > /nofile && grep -c myhost /etc/hosts > /hosts"
        " && df -k /dev/shm | tail -1 | awk '{print $2}' > /shm\n")
    (ctx / ".dockerignore").write_text("ignored\n")
    (ctx / "ignored").write_text("x")
    tag = f"dpy-{uuid.uuid4().hex[:6]}"
    try:
        out = list(api.build(
            path=str(ctx), tag=tag, quiet=False, nocache=True, rm=True, timeout=300,
            pull=False, forcerm=True, dockerfile="probe.Dockerfile",
            container_limits={"memory": 256 << 20, "memswap": -1, "cpushares": 512,
                              "cpusetcpus": "0"},
            decode=True, buildargs={"WHO": "docker-py"}, gzip=True, shmsize=32 << 20,
            labels={"via": "api.build"}, cache_from=[], target="probe",
            network_mode="none", extra_hosts={"myhost": "10.1.2.3"},
            platform=None, use_config_proxy=False))
        assert not [m for m in out if "error" in m], out
        aux = [m["aux"]["ID"] for m in out if "aux" in m]
        assert aux and any("Successfully tagged" in m.get("stream", "") for m in out)
        got = daemon.out("run", "--rm", tag, "cat", "/who", "/hosts", "/shm").splitlines()
        assert got == ["docker-py", "1", "32768"], got
        assert json.loads(daemon.out("image", "inspect", "--format",
                                     "{{json .Config.Labels}}", tag)) == {"via": "api.build"}
        # a fileobj context with custom_context and an encoding
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            data = b"FROM busybox\nLABEL fileobj=yes\n"
            ti = tarfile.TarInfo("Dockerfile")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        buf.seek(0)
        out = list(api.build(fileobj=buf, custom_context=True, encoding="gzip",
                             tag=tag + "-f", decode=True, quiet=True))
        assert any("aux" in m for m in out), out
        # refused clearly: squash (experimental in dockerd), isolation other than default
        for kw, word in (({"squash": True}, "squash"), ({"isolation": "hyperv"}, "isolation")):
            with pytest.raises(docker.errors.APIError) as ei:
                list(api.build(path=str(ctx), dockerfile="probe.Dockerfile", target="probe",
                               decode=True, **kw))
            assert ei.value.status_code == 400 and word in str(ei.value), str(ei.value)
    finally:
        for t in (tag, tag + "-f"):
            daemon.docker("rmi", "-f", t, check=False)
        api.close()


# -- the same Dockerfile, dockerd's legacy builder and ours ----------------------------------

EVERY = """\
# escape=\\
ARG BASE=busybox
FROM ${BASE} AS tools
MAINTAINER Someone <someone@example.com>
RUN mkdir -p /out/bin && echo tool > /out/bin/tool && chmod 750 /out/bin/tool \\
    && echo "grp:x:2000:" >> /etc/group && echo "usr:x:2000:2000::/home/usr:/bin/sh" >> /etc/passwd
RUN ["sh", "-c", "echo json-form > /out/json"]
FROM ${BASE}
ARG VERSION=1.0
ARG UNUSED_DEFAULT=x
ENV APP_HOME=/srv/app \\
    VERSION=${VERSION}
ENV LEGACY_FORM value with spaces
LABEL org.example.version="${VERSION}" org.example.multi="a b"
RUN echo "app:x:3000:" >> /etc/group && echo "app:x:3000:3000::/srv/app:/bin/sh" >> /etc/passwd
WORKDIR ${APP_HOME}
COPY --from=tools /out/ ./tools/
COPY --chown=app:app files/ ./files/
COPY files/a.txt files/b.sh ./flat/
ADD archive.tar.gz ./unpacked/
ADD --chown=3000:3000 files/a.txt ./added.txt
RUN ln -s files/a.txt link && chmod 600 files/a.txt && mkdir -p /data
VOLUME ["/data", "/logs"]
EXPOSE 8080 9000/udp
USER app:app
SHELL ["/bin/sh", "-ec"]
RUN echo "run as $(id -u):$(id -g)" > /tmp/whoami
ONBUILD RUN echo triggered
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --start-period=2s --retries=4 CMD wget -q -O- localhost:8080 || exit 1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hello"]
"""

CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels",
               "Healthcheck", "StopSignal", "Volumes", "OnBuild", "Shell", "ArgsEscaped")
SKIP = ("dev/", "proc/", "sys/", "etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv",
        "etc/mtab")


def every_context(root: Path) -> Path:
    ctx = root / "every"
    (ctx / "files" / "sub").mkdir(parents=True)
    (ctx / "files" / "a.txt").write_text("a\n")
    (ctx / "files" / "b.sh").write_text("#!/bin/sh\necho b\n")
    os.chmod(ctx / "files" / "b.sh", 0o755)
    (ctx / "files" / "sub" / "c.bin").write_bytes(os.urandom(3000))
    os.chmod(ctx / "files" / "sub", 0o700)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data, mode in (("pkg/readme", b"readme\n", 0o644),
                                 ("pkg/run", b"#!/bin/sh\n", 0o755)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid, ti.gid = len(data), mode, 1234, 5678
            tf.addfile(ti, io.BytesIO(data))
    (ctx / "archive.tar.gz").write_bytes(buf.getvalue())
    (ctx / "Dockerfile").write_text(EVERY)
    return ctx


def facts(cli, tag: str) -> dict:
    """Config, history and the files of an image, through the docker CLI ``cli``."""
    info = json.loads(cli("image", "inspect", tag))[0]
    cfg = {k: info["Config"].get(k) for k in CONFIG_KEYS}
    hist = json.loads("[" + ",".join(cli("history", "--no-trunc", "--format", "{{json .}}",
                                         tag).splitlines()) + "]")
    created_by = [h["CreatedBy"] for h in hist]
    cid = cli("create", tag).strip()
    try:
        raw = cli("export", cid, raw=True)
    finally:
        cli("rm", "-f", cid)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for m in tf:
            name = m.name.lstrip("./").rstrip("/")
            if not name or name.startswith(SKIP) or name in ("dev", "proc", "sys"):
                continue
            files[name] = (m.type, oct(m.mode & 0o7777), m.uid, m.gid,
                           m.size if m.isreg() else 0, m.linkname)
    return {"config": cfg, "history": created_by, "files": files,
            "layers": len(info["RootFS"]["Layers"])}


def _norm(out: str) -> list[str]:
    """Build output lines with IDs masked and the CLI's deprecation notice dropped (config-only
    steps show " ---> Running in" and "Removing intermediate container" as with dockerd)."""
    import re
    return [re.sub(r"\b[0-9a-f]{12}\b", "<id>", ln) for ln in out.splitlines()
            if ln.strip() and not ln.startswith(("DEPRECATED", "            ", "Install the"))]


def test_every_instruction_matches_dockerd_legacy_builder(daemon, tmp_path):
    from helpers.dockerd import running_dockerd
    from helpers.rootfs import build_busybox_rootfs

    ctx = every_context(tmp_path)
    tag = f"every-{uuid.uuid4().hex[:6]}"

    def runner(env):
        def cli(*args: str, raw: bool = False):
            r = subprocess.run(["/usr/local/bin/docker", *args], env={**env, **LEGACY},
                               capture_output=True, timeout=300)
            assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
            return r.stdout if raw else r.stdout.decode()
        return cli

    ours = runner(daemon.env)
    my_build = _norm(ours("build", "--network", "none", "--build-arg", "VERSION=2.5", "-t",
                          tag, str(ctx)))
    mine = facts(ours, tag)
    child, grand = tmp_path / "child", tmp_path / "grand"
    child.mkdir()
    grand.mkdir()
    (child / "Dockerfile").write_text(f"FROM {tag}\nONBUILD RUN echo again\nONBUILD ENV G=1\n")
    (grand / "Dockerfile").write_text(f"FROM {tag}-mid\nCMD [\"x\"]\n")

    def descendants(cli) -> list[str]:
        # ONBUILD triggers run in the child, announced once per image
        return (_norm(cli("build", "--network", "none", "-t", tag + "-mid", str(child)))
                + _norm(cli("build", "--network", "none", "-t", tag + "-gc", str(grand))))
    my_out = descendants(ours)
    my_child = json.loads(ours("image", "inspect", tag + "-gc"))[0]
    with running_dockerd(tmp_path / "dkd") as dkd:
        theirs_cli = runner(dkd.env)
        bb = build_busybox_rootfs(tmp_path / "bb")
        tar = subprocess.run(["tar", "-C", str(bb), "-c", "."], capture_output=True,
                             check=True).stdout
        subprocess.run(["/usr/local/bin/docker", "import", "-c", 'CMD ["sh"]', "-", "busybox"],
                       env=dkd.env, input=tar, check=True, capture_output=True)
        their_build = _norm(theirs_cli("build", "--network", "none", "--build-arg",
                                       "VERSION=2.5", "-t", tag, str(ctx)))
        theirs = facts(theirs_cli, tag)
        their_out = descendants(theirs_cli)
        their_child = json.loads(theirs_cli("image", "inspect", tag + "-gc"))[0]
    assert my_build == their_build, "\n".join(my_build) + "\n=== dockerd:\n" + "\n".join(
        their_build)
    assert my_out == their_out, "\n".join(my_out) + "\n=== dockerd:\n" + "\n".join(their_out)
    for k in ("Cmd", "Entrypoint", "Env", "OnBuild", "WorkingDir", "User"):
        assert my_child["ContainerConfig"].get(k) == their_child["ContainerConfig"].get(k), k
    assert mine["config"] == theirs["config"]
    # the content hashes in COPY/ADD lines are each builder's own (dockerd's tarsum)
    import re
    norm = [re.sub(r"(file|dir|multi):[0-9a-f]{64}", r"\1:<hash>", h) for h in mine["history"]]
    tnorm = [re.sub(r"(file|dir|multi):[0-9a-f]{64}", r"\1:<hash>", h)
             for h in theirs["history"]]
    assert norm == tnorm, "\n".join(f"{a!r}\n{b!r}\n" for a, b in zip(norm, tnorm) if a != b)
    assert mine["layers"] == theirs["layers"]
    # a VOLUME's mount point is made in every container of the image (so the RUN after
    # VOLUME commits /logs), by dockerd and by Dockyard
    assert mine["files"].get("logs") == theirs["files"].get("logs") != None  # noqa: E711
    only_mine = sorted(set(mine["files"]) - set(theirs["files"]))
    only_theirs = sorted(set(theirs["files"]) - set(mine["files"]))
    assert not only_mine and not only_theirs, (only_mine, only_theirs)
    diffs = {k: (mine["files"][k], theirs["files"][k]) for k in mine["files"]
             if mine["files"][k] != theirs["files"][k]}
    assert not diffs, diffs
