"""`docker build` (the real CLI 28, classic builder API) against `dockyard daemon`."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LEGACY = {"DOCKER_BUILDKIT": "0"}

DOCKERFILE = """\
# syntax=docker/dockerfile:1
ARG GREETING=hello
FROM busybox AS build
ARG GREETING
RUN mkdir -p /out && echo "$GREETING from build" > /out/greeting && echo built-it
COPY --chmod=640 app/data.txt /out/stage-data.txt
FROM busybox
LABEL org.example.name="two stage"
ENV APP=/app \\
    PATH=/app:/bin
WORKDIR $APP
COPY --from=build /out/ ./
COPY app/ ./
RUN chmod 4755 run.sh && echo "user:x:1000:1000::/app:/bin/sh" >> /etc/passwd
USER user
EXPOSE 8080 53/udp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD true
CMD ["run.sh"]
"""


def make_context(root: Path) -> Path:
    ctx = root / f"ctx-{uuid.uuid4().hex[:6]}"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "run.sh").write_text("#!/bin/sh\necho running as $(id -u)\n")
    os.chmod(ctx / "app" / "run.sh", 0o755)
    (ctx / "app" / "data.txt").write_text("data\n")
    (ctx / "app" / "secret.key").write_text("not for the image\n")
    (ctx / ".dockerignore").write_text("**/*.key\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


def build(d, ctx: Path, *args: str, check: bool = True):
    return d.docker("build", *args, str(ctx), check=check, env=LEGACY, timeout=180)


def image_id(out: str) -> str:
    m = re.search(r"Successfully built ([0-9a-f]{12})", out)
    assert m, out
    return m.group(1)


def test_two_stage_build_config_files_history_and_cache(daemon, tmp_path):
    ctx = make_context(tmp_path)
    tag = f"built-{uuid.uuid4().hex[:6]}"
    r = build(daemon, ctx, "-t", f"{tag}:1", "-t", f"{tag}:2")
    out = r.stdout
    iid = image_id(out)
    assert "Step 1/17 : ARG GREETING=hello" in out
    assert "Step 4/17 : RUN mkdir -p /out" in out and "built-it\n" in out
    assert re.search(r" ---> Running in [0-9a-f]{12}\n", out)
    assert re.search(r"Removing intermediate container [0-9a-f]{12}\n", out)
    assert f"Successfully tagged {tag}:1" in out and f"Successfully tagged {tag}:2" in out
    assert "Using cache" not in out

    info = json.loads(daemon.out("image", "inspect", f"{tag}:1"))[0]
    assert info["Id"].startswith("sha256:" + iid)
    cfg = info["Config"]
    # PATH first: dockerd gives a base without PATH the default one, which ENV replaces
    assert cfg["Env"] == ["PATH=/app:/bin", "APP=/app"]
    assert cfg["Cmd"] == ["run.sh"] and cfg["WorkingDir"] == "/app" and cfg["User"] == "user"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"org.example.name": "two stage"}
    assert cfg["StopSignal"] == "SIGTERM"
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}
    # the files: copied across stages, from the context (not the ignored one), their modes
    assert daemon.out("run", "--rm", f"{tag}:1") == "running as 1000"
    listing = daemon.out("run", "--rm", "--user", "0", f"{tag}:1", "sh", "-c",
                         "cat greeting data.txt; stat -c '%n %a %u:%g' run.sh data.txt "
                         "stage-data.txt greeting /app; ls /app")
    assert listing.splitlines() == [
        "hello from build", "data", "run.sh 4755 0:0", "data.txt 644 0:0",
        "stage-data.txt 640 0:0", "greeting 644 0:0", "/app 755 0:0", "data.txt", "greeting",
        "run.sh", "stage-data.txt"]
    # history: Docker's CreatedBy forms; a layer only where files changed
    hist = json.loads(daemon.out("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                                 f"{tag}:1"))
    base_layers = json.loads(daemon.out("image", "inspect", "--format",
                                        "{{json .RootFS.Layers}}", "busybox"))
    assert len(hist) == len(base_layers) + 4   # WORKDIR, COPY --from, COPY, RUN
    created = daemon.out("history", "--no-trunc", "--format", "{{.CreatedBy}}",
                         f"{tag}:1").splitlines()
    assert created[0] == '/bin/sh -c #(nop)  CMD ["run.sh"]'
    assert created[4] == "/bin/sh -c #(nop)  USER user"
    assert created[5] == '/bin/sh -c chmod 4755 run.sh && echo "user:x:1000:1000::/app:/bin/sh" >> /etc/passwd'
    assert re.fullmatch(r"/bin/sh -c #\(nop\) COPY dir:[0-9a-f]{64} in \./ ", created[6])
    assert created[9] == "/bin/sh -c #(nop)  ENV APP=/app PATH=/app:/bin"

    # a no-change rebuild: every step from the cache, the same image
    r2 = build(daemon, ctx, "-t", f"{tag}:1")
    assert image_id(r2.stdout) == iid
    assert r2.stdout.count(" ---> Using cache") == 14   # all but the global ARG and the FROMs
    assert "Running in" not in r2.stdout

    # one changed file: the steps before its COPY are cached, the rest rebuilt
    (ctx / "app" / "data.txt").write_text("changed\n")
    r3 = build(daemon, ctx)
    steps = r3.stdout.split("Step ")
    cached = [s.split(" :")[0] for s in steps if "Using cache" in s]
    # the build stage's ARG and RUN (before its COPY), the last stage's steps before its
    # COPY --from (which takes the changed stage)
    assert cached == ["3/17", "4/17", "7/17", "8/17", "9/17"]
    assert image_id(r3.stdout) != iid
    # nothing is left behind: no intermediate containers
    assert daemon.out("ps", "-aq") == ""


def test_parse_error_names_the_line(daemon, tmp_path):
    ctx = tmp_path / "bad"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n# comment\nFROMM x\n")
    r = build(daemon, ctx, check=False)
    assert r.returncode == 1
    assert "dockerfile parse error line 3: unknown instruction: FROMM" in r.stderr


def test_failing_run_reports_its_code_and_leaves_nothing_with_force_rm(daemon, tmp_path):
    ctx = tmp_path / "fail"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo before\nRUN exit 3\nCMD x\n")
    before = set(daemon.out("images", "-aq").split())
    r = build(daemon, ctx, "--force-rm", check=False)
    assert r.returncode == 3, r
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in r.stderr
    assert "Step 3/4 : RUN exit 3" in r.stdout and "Step 4/4" not in r.stdout
    assert daemon.out("ps", "-aq") == ""
    # without --force-rm the failing step's container stays, as with dockerd
    r = build(daemon, ctx, check=False)
    assert r.returncode == 3
    left = daemon.out("ps", "-aq", "--filter", "status=exited").split()
    assert len(left) == 1
    daemon.docker("rm", *left)
    assert before <= set(daemon.out("images", "-aq").split())


def test_quiet_iidfile_build_args_and_target(daemon, tmp_path):
    ctx = make_context(tmp_path)
    iidfile = tmp_path / "iid"
    r = build(daemon, ctx, "-q", "--iidfile", str(iidfile), "--build-arg", "GREETING=bonjour",
              "--target", "build", "--label", "from.cli=yes")
    iid = iidfile.read_text().strip()
    assert r.stdout.strip() == iid and iid.startswith("sha256:")
    out = daemon.out("run", "--rm", iid, "cat", "/out/greeting")
    assert out == "bonjour from build"
    labels = json.loads(daemon.out("image", "inspect", "--format", "{{json .Config.Labels}}", iid))
    assert labels == {"from.cli": "yes"}


def test_unsupported_options_refused(daemon, tmp_path):
    ctx = tmp_path / "opts"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n")
    r = build(daemon, ctx, "--cgroup-parent", "elsewhere", check=False)
    assert r.returncode == 1 and "build parameter cgroupparent=elsewhere is not supported" \
        in r.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=secret,id=t true\n")
    r = build(daemon, ctx, check=False)
    assert r.returncode == 1 and "RUN --mount=type=secret is not supported" in r.stderr
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY missing /x\n")
    r = build(daemon, ctx, check=False)
    assert r.returncode == 1
    assert "COPY failed: file not found in build context or excluded by .dockerignore: " \
           "stat missing: file does not exist" in r.stderr
    r = build(daemon, ctx, "-f", "Nope.Dockerfile", check=False)
    assert r.returncode == 1


def test_cache_survives_a_restart(fresh_daemon, tmp_path):
    d = fresh_daemon
    ctx = tmp_path / "restart"
    ctx.mkdir()
    (ctx / "f").write_text("x")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f /f\nRUN echo ran\n")
    iid = image_id(build(d, ctx).stdout)
    d.stop()
    d.start()
    r = build(d, ctx)
    assert image_id(r.stdout) == iid and r.stdout.count("Using cache") == 2
    # nothing of the builds is left on disk
    assert os.listdir(d.data / "builder" / "tmp") == []


def test_heredocs_existing_dirs_and_plain_cli(daemon, tmp_path):
    """BuildKit's heredocs through the classic API; `docker build` with no DOCKER_BUILDKIT
    (the CLI falls back to this API without buildx); COPY into an existing directory keeps
    its owner and mode."""
    ctx = tmp_path / "here"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d" / "f").write_text("f\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nENV WHO=world\n"
        "RUN mkdir -m 700 /keep && chown 12:34 /keep\n"
        "COPY d /keep/\n"
        "COPY <<EOF /etc/motd\nhello $WHO\nEOF\n"
        "RUN <<EOF\nset -e\necho \"script as $(id -u)\" > /ran\nEOF\n")
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_BUILDKIT"}
    r = daemon.docker("build", "-t", "heredocs", str(ctx), env={**env, "DOCKER_BUILDKIT": ""},
                      timeout=180)
    assert "Successfully tagged heredocs:latest" in r.stdout
    out = daemon.out("run", "--rm", "heredocs", "sh", "-c",
                     "cat /etc/motd /ran /keep/f; stat -c '%a %u:%g' /keep")
    assert out.splitlines() == ["hello world", "script as 0", "f", "700 12:34"]


def test_docker_py_build(daemon, tmp_path):
    ctx = tmp_path / "py"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nARG X\nRUN echo \"x=$X\" > /x\nCMD cat /x\n")
    client = daemon.client()
    try:
        image, logs = client.images.build(path=str(ctx), tag="pybuilt:1", buildargs={"X": "7"},
                                          rm=True)
        assert any("Successfully built" in m.get("stream", "") for m in logs)
        assert client.containers.run(image.id, remove=True) == b"x=7\n"
        import docker
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 5\n")
        with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 5"):
            client.images.build(path=str(ctx), forcerm=True)
    finally:
        client.close()


def test_client_going_away_stops_the_build(daemon, tmp_path):
    import subprocess
    import time
    from acceptance.harness import DOCKER
    ctx = tmp_path / "gone"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 60\n")
    p = subprocess.Popen([DOCKER, "build", str(ctx)], env={**daemon.env, **LEGACY},
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in p.stdout:
            if line.strip() == "started":
                break
        assert daemon.out("ps", "-q"), "the RUN step's container should be running"
    finally:
        p.kill()
        p.wait()
    deadline = time.monotonic() + 10
    while daemon.out("ps", "-aq") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert daemon.out("ps", "-aq") == ""
    assert os.listdir(daemon.data / "builder" / "tmp") == []
