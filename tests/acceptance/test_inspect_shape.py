"""`docker inspect` of a container has dockerd's shape (same keys, same types)."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers.dockerd import dockerd_available, running_dockerd

pytestmark = [pytest.mark.slow, pytest.mark.dockerd]

RUN = ["run", "-d", "--name", "shape", "-e", "A=1", "--label", "l=1", "-m", "64m",
       "--restart", "on-failure:2", "busybox", "sleep", "1000"]


def keyshape(v, depth=0):
    if isinstance(v, dict) and depth < 3:
        return {k: keyshape(x, depth + 1) for k, x in v.items()}
    return type(v).__name__ if v is not None else "null"


def diff_keys(ours, theirs, path=""):
    out = []
    if isinstance(theirs, dict) and isinstance(ours, dict):
        for k in theirs:
            if k not in ours:
                out.append(f"missing {path}.{k}")
            else:
                out += diff_keys(ours[k], theirs[k], f"{path}.{k}")
    return out


# Keys dockerd 20.10 has that we knowingly do not (no equivalent here).
# Both daemons run without a bridge here: dockerd still names its "bridge" network and
# sets NetworkDisabled; ours has no network at all with --bridge none.
ALLOWED_MISSING = {".Config.NetworkDisabled", ".NetworkSettings.Networks.bridge"}


@pytest.mark.skipif(not dockerd_available(), reason="dockerd not installed")
def test_inspect_keys_match_dockerd(daemon, tmp_path):
    daemon.docker(*RUN)
    ours = json.loads(daemon.out("inspect", "shape"))[0]
    try:
        with running_dockerd(tmp_path / "dkd") as d:
            from helpers.rootfs import build_busybox_rootfs

            root = build_busybox_rootfs(tmp_path / "bb")
            tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
            d.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
            d.docker(*RUN)
            theirs = json.loads(d.docker("inspect", "shape").stdout)[0]
            d.docker("rm", "-f", "shape")
    finally:
        daemon.docker("rm", "-f", "shape")
    missing = [m for m in diff_keys(ours, theirs) if m.split(" ")[1] not in ALLOWED_MISSING]
    for section in ("State", "Config", "HostConfig", "NetworkSettings"):
        assert isinstance(ours[section], dict)
    assert ours["Mounts"] == theirs["Mounts"] == []
    assert not missing, missing
    for key in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
                "Error", "StartedAt", "FinishedAt"):
        assert type(ours["State"][key]) is type(theirs["State"][key]), key
    assert ours["HostConfig"]["RestartPolicy"] == theirs["HostConfig"]["RestartPolicy"]
    assert ours["HostConfig"]["Memory"] == theirs["HostConfig"]["Memory"]
    assert ours["Config"]["Env"] == theirs["Config"]["Env"]
    assert ours["Config"]["Labels"] == theirs["Config"]["Labels"]
