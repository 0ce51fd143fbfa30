"""Error outputs and exit codes of the real docker CLI: against dockyard and against dockerd."""

from __future__ import annotations

import re
import subprocess

import pytest

from acceptance.harness import DOCKER
from helpers.dockerd import dockerd_available, running_dockerd

pytestmark = [pytest.mark.slow, pytest.mark.dockerd]

SETUP = [
    ["create", "--name", "stopped", "busybox", "true"],
    ["run", "-d", "--name", "running", "busybox", "sleep", "1000"],
    ["run", "-d", "--name", "paused", "busybox", "sleep", "1000"],
    ["pause", "paused"],
]

CASES = [
    ["top", "stopped"],
    ["pause", "stopped"],
    ["pause", "paused"],
    ["unpause", "running"],
    ["kill", "stopped"],
    ["kill", "-s", "NOSUCHSIG", "running"],
    ["stop", "stopped"],
    ["start", "running"],
    ["start", "paused"],
    ["exec", "stopped", "true"],
    ["exec", "paused", "true"],
    ["rm", "running"],
    ["rm", "paused"],
    ["rm", "nosuch"],
    ["rename", "running", "stopped"],
    ["rename", "running", "running"],
    ["attach", "stopped"],
    ["logs", "nosuch"],
    ["wait", "nosuch"],
    ["inspect", "--type", "container", "nosuch"],
    ["create", "--name", "running", "busybox"],
    ["run", "--rm", "busybox", "sh", "-c", "exit 7"],
    ["run", "--rm", "busybox", "/etc"],
    ["run", "--rm", "busybox", "/etc/passwd"],
    ["restart", "nosuch"],
    ["update", "--memory", "1k", "running"],
    ["diff", "nosuch"],
    ["export", "nosuch"],
    ["commit", "nosuch", "x"],
    ["unpause", "paused"],
]


# dockerd warns at create when the host's (or its network namespace's) ip_forward is 0: a
# property of the machine at that moment (other tests' daemons toggle it), not of the command.
HOST_WARNINGS = re.compile(r"^WARNING: IPv4 forwarding is disabled\. Networking will not work\.\n?", re.M)


def normalize(text: str, ids: dict[str, str]) -> str:
    text = HOST_WARNINGS.sub("", text)
    for name, cid in ids.items():
        text = text.replace(cid, f"<{name}>")
    text = re.sub(r"[0-9a-f]{64}", "<id>", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def run_all(env: dict) -> list[tuple[int, str]]:
    def docker(*a):
        return subprocess.run([DOCKER, *a], env=env, capture_output=True, text=True, timeout=60)

    for s in SETUP:
        r = docker(*s)
        assert r.returncode == 0, r.stderr
    ids = {n: docker("inspect", "-f", "{{.Id}}", n).stdout.strip() for n in ("stopped", "running", "paused")}
    out = []
    for c in CASES:
        r = docker(*c)
        out.append((r.returncode, normalize(r.stderr, ids)))
    return out


# Exit codes must match; only the runtime's wording differs (runc's "failed to create shim
# task: ... runc create failed: unable to start container process").
KNOWN_WORDING = {
    ("run", "--rm", "busybox", "/etc"),
    ("run", "--rm", "busybox", "/etc/passwd"),
}


@pytest.mark.skipif(not dockerd_available(), reason="dockerd not installed")
def test_error_outputs_and_exit_codes_match_dockerd(daemon, tmp_path):
    ours = run_all(daemon.env)
    with running_dockerd(tmp_path / "dkd") as d:
        from helpers.rootfs import build_busybox_rootfs

        root = build_busybox_rootfs(tmp_path / "bb")
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
        d.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
        theirs = run_all(d.env)
        d.docker("rm", "-f", "stopped", "running", "paused", check=False)
    daemon.docker("rm", "-f", "stopped", "running", "paused", check=False)
    diffs = []
    for case, o, t in zip(CASES, ours, theirs):
        if o[0] != t[0]:
            diffs.append(f"{case}: exit {o[0]} vs dockerd {t[0]}\n   ours: {o[1]}\n   theirs: {t[1]}")
        elif o[1] != t[1] and tuple(case) not in KNOWN_WORDING:
            diffs.append(f"{case}: message\n   ours: {o[1]}\n   theirs: {t[1]}")
    assert not diffs, "\n".join(diffs)
