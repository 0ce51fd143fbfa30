"""Bad input: a clear message, a non-zero exit, and nothing left behind."""

from __future__ import annotations

import json
import os

import pytest

from runtime_helpers import cgroup_dirs
from dockyard.runtime.spec import make_spec


def _create(runc, bundle, cid=None):
    cid = cid or runc.new_id()
    r = runc.cmd("create", "--bundle", str(bundle), cid)
    return cid, r


def _nothing_left(runc, cid):
    assert not (runc.root / cid).exists()
    assert cgroup_dirs(cid) == []


def _bundle_with(runc, tmp_path, rootfs, mutate):
    spec = make_spec(str(rootfs), ["true"])
    mutate(spec)
    b = tmp_path / "badbundle"
    b.mkdir(exist_ok=True)
    (b / "config.json").write_text(json.dumps(spec))
    return b


def test_malformed_config_json(runc, tmp_path):
    b = tmp_path / "b"
    b.mkdir()
    (b / "config.json").write_text('{"ociVersion": "1.2.0", "process": ')
    cid, r = _create(runc, b)
    assert r.returncode != 0
    assert "not valid JSON" in r.stderr and "config.json" in r.stderr
    _nothing_left(runc, cid)


def test_missing_config_json(runc, tmp_path):
    cid, r = _create(runc, tmp_path)
    assert r.returncode != 0 and "no such file" in r.stderr
    _nothing_left(runc, cid)


def test_missing_rootfs(runc, tmp_path, busybox_rootfs):
    b = _bundle_with(runc, tmp_path, busybox_rootfs,
                     lambda s: s["root"].update(path=str(tmp_path / "nope")))
    cid, r = _create(runc, b)
    assert r.returncode != 0 and "root.path" in r.stderr and "does not exist" in r.stderr
    _nothing_left(runc, cid)


def test_unknown_namespace_type(runc, tmp_path, busybox_rootfs):
    b = _bundle_with(runc, tmp_path, busybox_rootfs,
                     lambda s: s["linux"]["namespaces"].append({"type": "wormhole"}))
    cid, r = _create(runc, b)
    assert r.returncode != 0 and "unknown namespace type 'wormhole'" in r.stderr
    _nothing_left(runc, cid)


@pytest.mark.parametrize("mutate,needle", [
    (lambda s: s["process"].update(args=[]), "process.args"),
    (lambda s: s["process"].update(cwd="relative"), "process.cwd"),
    (lambda s: s["process"]["capabilities"].update(bounding=["CAP_FLY"]), "CAP_FLY"),
    (lambda s: s["mounts"].append({"destination": "rel", "type": "tmpfs"}), "absolute"),
    (lambda s: s["mounts"].append({"destination": "/x", "type": "bind",
                                   "source": "/no/such/dir"}), "does not exist"),
    (lambda s: s["linux"]["namespaces"].append({"type": "net", "path": "/no/such"}),
     "unknown namespace type"),
    (lambda s: s["linux"].update(sysctl={"kernel.panic": "1"}), "not namespaced"),
    (lambda s: s.update(hooks={"prestart": [{"path": "relative"}]}), "absolute"),
    (lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]),
     "RLIMIT_BOGUS"),
    (lambda s: s["linux"]["resources"].update(memory={"limit": "lots"}), "memory"),
    (lambda s: s["linux"].update(seccomp={"defaultAction": "SCMP_ACT_EXPLODE"}),
     "SCMP_ACT_EXPLODE"),
])
def test_invalid_config_fields(runc, tmp_path, busybox_rootfs, mutate, needle):
    b = _bundle_with(runc, tmp_path, busybox_rootfs, mutate)
    cid, r = _create(runc, b)
    assert r.returncode != 0 and needle in r.stderr, r.stderr
    _nothing_left(runc, cid)


def test_missing_program_fails_create(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["/no/such/program"])
    cid, r = _create(runc, b)
    assert r.returncode != 0 and "/no/such/program" in r.stderr
    _nothing_left(runc, cid)


def test_missing_program_fails_run(runc, busybox_rootfs):
    # `run` opens the FIFO before init reports (start_at_once): the error still
    # comes back, and nothing is left (no state directory, cgroup or process)
    b = runc.bundle(busybox_rootfs, ["/no/such/program"])
    cid = runc.new_id()
    r = runc.run(b, cid)
    assert r.returncode != 0 and "/no/such/program" in r.stderr
    _nothing_left(runc, cid)


def test_run_that_fails_after_create_takes_the_container_down(runc, busybox_rootfs, tmp_path):
    # with an unwritable --pid-file, `run` fails after create, when (start_at_once)
    # the program may already be running: it must not be left running unwatched
    b = runc.bundle(busybox_rootfs, ["sh", "-c", "sleep 2; echo late > /late"])
    cid = runc.new_id()
    r = runc.run(b, cid, "--pid-file", str(tmp_path / "no" / "such" / "dir" / "pid"))
    assert r.returncode != 0 and "pid" in r.stderr
    _nothing_left(runc, cid)
    r = runc.cmd("list", "--quiet")
    assert cid not in r.stdout.split()
    import time
    time.sleep(2.5)                  # the program would have written by now
    assert not (busybox_rootfs / "late").exists()


@pytest.mark.parametrize("cmd", [["state"], ["start"], ["kill"], ["delete"], ["pause"],
                                 ["resume"], ["ps"], ["exec", "--", "true"]])
def test_unknown_container_id(runc, cmd):
    args = [cmd[0], "no-such-container", *cmd[1:]]
    r = runc.cmd(*args)
    assert r.returncode != 0
    assert "does not exist" in r.stderr, r.stderr
    assert not (runc.root / "no-such-container").exists()


def test_delete_force_of_unknown_id_succeeds(runc):
    assert runc.cmd("delete", "--force", "ghost").returncode == 0


def test_duplicate_id_and_invalid_id(runc, busybox_rootfs):
    b = runc.bundle(busybox_rootfs, ["sleep", "1000"])
    cid, r = _create(runc, b)
    assert r.returncode == 0, r.stderr
    _, r = _create(runc, b, cid)
    assert r.returncode != 0 and "already exists" in r.stderr
    _, r = _create(runc, b, "../escape")
    assert r.returncode != 0 and "invalid container id" in r.stderr


def test_usage_errors(runc):
    r = runc.cmd("frobnicate")
    assert r.returncode == 1 and "no such command" in r.stderr
    r = runc.cmd("state", "--bogus", "x")
    assert r.returncode == 1 and "flag provided but not defined" in r.stderr
    r = runc.cmd("--systemd-cgroup", "state", "x")
    assert r.returncode == 1 and "systemd cgroup driver is not supported" in r.stderr


def test_errors_are_logged_as_json(runc, tmp_path):
    log = tmp_path / "log.json"
    r = runc.cmd("--log", str(log), "--log-format", "json", "state", "nope")
    assert r.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"]


def test_version_spec_features(runc, tmp_path):
    r = runc.cmd("--version", check=True)
    assert r.stdout.startswith("dockyard-runc version ") and "spec: 1.2.0" in r.stdout
    r = runc.cmd("spec", "--bundle", str(tmp_path), check=True)
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"] and spec["process"]["terminal"] is True
    assert runc.cmd("spec", "--bundle", str(tmp_path)).returncode != 0
    feats = json.loads(runc.cmd("features", check=True).stdout)
    assert feats["ociVersionMax"] == "1.2.0" and "user" in feats["linux"]["namespaces"]
    assert "CAP_CHECKPOINT_RESTORE" in feats["linux"]["capabilities"]
    assert os.path.exists(tmp_path / "config.json")


def test_delete_force_cleans_up_after_a_killed_create(runc, busybox_rootfs):
    """`create` killed while init waits for its hooks: delete --force still
    removes the processes, the cgroup and the state directory."""
    import signal
    import subprocess
    import time
    from runtime_helpers import RUNC, reap
    marker = runc.tmp / "hook-started"
    b = runc.bundle(busybox_rootfs, ["true"], hooks={"prestart": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"echo $$ > {marker}.tmp; "
                                     f"mv {marker}.tmp {marker}; exec sleep 60"]}]})
    cid = runc.new_id()
    p = subprocess.Popen([*RUNC, "--root", str(runc.root), "create", "--bundle", str(b), cid],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    hook_pid = int(marker.read_text())
    os.kill(hook_pid, signal.SIGKILL)           # the orphaned hook: reparented to us
    reap(hook_pid)
    assert runc.state(cid)["status"] == "creating"
    assert cgroup_dirs(cid)
    runc.cmd("delete", "--force", cid, check=True)
    _nothing_left(runc, cid)
