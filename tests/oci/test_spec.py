"""Docker's configuration -> OCI spec, checked as data and by running the spec with runc."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from dockyard.oci import spec as S


def _spec(rootfs, config=None, host=None, image=None, **kw):
    return S.build_spec(container_id="c" + uuid.uuid4().hex[:8], config=config or {"Cmd": ["true"]},
                        host_config=host or {}, image_config=image or {}, rootfs=str(rootfs),
                        hostname="abc123", **kw)


def test_capabilities_follow_dockers_rules():
    assert S.capabilities(None, None, False) == S.DEFAULT_CAPS
    caps = S.capabilities(["NET_ADMIN"], ["chown", "CAP_KILL"], False)
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert S.capabilities(["SYS_TIME"], ["ALL"], False) == ["CAP_SYS_TIME"]
    assert S.capabilities(None, None, True) == S.ALL_CAPS
    with pytest.raises(S.SpecError, match="unknown capability"):
        S.capabilities(["BOGUS"], None, False)


def test_command_entrypoint_resets_image_cmd():
    img = {"Entrypoint": ["/ep"], "Cmd": ["a"]}
    assert S.command({}, img) == ["/ep", "a"]
    assert S.command({"Cmd": ["b"]}, img) == ["/ep", "b"]
    assert S.command({"Entrypoint": ["/x"]}, img) == ["/x"]
    with pytest.raises(S.SpecError, match="no command"):
        S.command({}, {})


def test_env_merges_image_then_container_and_defaults():
    env = S.merge_env(["A=1", "PATH=/img"], ["A=2", "B=3"], "h", tty=True)
    assert env[:2] == ["PATH=/img", "HOSTNAME=h"]
    assert "A=2" in env and "B=3" in env and "TERM=xterm" in env


def test_user_resolves_against_the_containers_files(busybox_rootfs):
    assert S.resolve_user("tester", str(busybox_rootfs)) == {"uid": 1000, "gid": 1000,
                                                            "additionalGids": [100, 1000]}
    # an explicit group: that group alone (dockerd's list), no /etc/group members
    assert S.resolve_user("1000:users", str(busybox_rootfs)) == {"uid": 1000, "gid": 100,
                                                                "additionalGids": [100]}
    assert S.resolve_user("4242", str(busybox_rootfs)) == {"uid": 4242, "gid": 0,
                                                           "additionalGids": [0]}
    with pytest.raises(S.SpecError, match="unable to find user nosuch"):
        S.resolve_user("nosuch", str(busybox_rootfs))


def test_binds_and_tmpfs_validated():
    m = S.parse_bind("/h:/c:ro")
    assert m["options"] == ["rbind", "ro", "rprivate"] and m["source"] == "/h"
    for bad in ("/h", "/h:rel", "/h:/c:bogus", "/h:/"):
        with pytest.raises(S.SpecError):
            S.parse_bind(bad)
    t = S.parse_tmpfs("/run", "size=1m,exec")
    assert "noexec" not in t["options"] and "size=1m" in t["options"]


def test_resources_and_their_errors():
    res = S.resources({"Memory": 64 << 20, "NanoCpus": 500_000_000, "PidsLimit": 10,
                       "CpuShares": 512})
    assert res["memory"]["limit"] == 64 << 20
    assert res["cpu"] == {"shares": 512, "period": 100000, "quota": 50000}
    assert res["pids"] == {"limit": 10}
    with pytest.raises(S.SpecError, match="Minimum memory limit"):
        S.resources({"Memory": 1024})
    with pytest.raises(S.SpecError, match="Range of CPUs"):
        S.resources({"NanoCpus": 10**15})


def test_default_spec_has_dockers_security_defaults(busybox_rootfs):
    sp = _spec(busybox_rootfs)
    assert sp["process"]["capabilities"]["bounding"] == S.DEFAULT_CAPS
    assert "/proc/kcore" in sp["linux"]["maskedPaths"]
    assert "/proc/sys" in sp["linux"]["readonlyPaths"]
    assert {n["type"] for n in sp["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount",
                                                              "network"}
    priv = _spec(busybox_rootfs, host={"Privileged": True})
    assert "maskedPaths" not in priv["linux"]
    with pytest.raises(S.SpecError, match="security-opt"):
        _spec(busybox_rootfs, host={"SecurityOpt": ["bogus"]})


def test_spec_runs_under_runc_with_user_caps_and_readonly_root(busybox_rootfs, tmp_path):
    cid = "spec" + uuid.uuid4().hex[:8]
    sp = S.build_spec(
        container_id=cid,
        config={"Cmd": ["sh", "-c", "id -u; grep CapEff /proc/self/status; hostname; "
                        "touch /x 2>/dev/null || echo ro"], "User": "tester"},
        host_config={"ReadonlyRootfs": True, "CapDrop": ["ALL"]}, image_config={},
        rootfs=str(busybox_rootfs), hostname="myhost")
    sp["linux"]["cgroupsPath"] = f"/dockyard-test-{cid}"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(sp))
    out = subprocess.run(["runc", "--root", str(tmp_path / "rt"), "run", "--bundle", str(bundle),
                          cid], capture_output=True, text=True, timeout=60)
    subprocess.run(["runc", "--root", str(tmp_path / "rt"), "delete", "-f", cid],
                   capture_output=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "1000"
    assert lines[1].split()[1] == "0000000000000000"
    assert lines[2] == "myhost" and lines[3] == "ro"
