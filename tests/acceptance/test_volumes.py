"""Volumes and mounts (issue 14) against a private daemon, with the real docker CLI,
docker-py and `dockyard volume`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest


def _name(prefix: str = "v") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _dockyard(d, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "dockyard", "-H", d.host, *args],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, (r.stdout, r.stderr)
    return r


# ---- the volume API and commands -------------------------------------------------------

def test_volume_commands_and_api(daemon):
    name = _name()
    assert daemon.out("volume", "create", "--label", "team=a", name) == name
    assert daemon.out("volume", "create", name) == name          # an existing name: returned
    v = json.loads(daemon.out("volume", "inspect", name))[0]
    assert v["Name"] == name and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Labels"] == {"team": "a"}
    other = _name()
    daemon.out("volume", "create", other)
    assert json.loads(daemon.out("volume", "inspect", other))[0]["Labels"] is None   # as dockerd
    daemon.out("volume", "rm", other)
    assert v["Mountpoint"] == str(daemon.data / "volumes" / name / "_data")
    assert name in daemon.out("volume", "ls", "-q").split()
    assert daemon.out("volume", "ls", "-q", "--filter", "label=team=a") == name
    assert name not in daemon.out("volume", "ls", "-q", "--filter", "label=team=b").split()
    assert name in daemon.out("volume", "ls", "-q", "--filter", "dangling=true").split()
    assert name in daemon.out("volume", "ls", "-q", "--filter", f"name={name[:6]}").split()
    r = daemon.docker("volume", "inspect", _name(), check=False)
    assert r.returncode == 1 and "no such volume" in r.stderr
    # the data root's volume directory and record are owner-only
    assert (daemon.data / "volumes" / name).stat().st_mode & 0o777 == 0o700
    assert (daemon.data / "volumes" / name / "volume.json").stat().st_mode & 0o777 == 0o600
    assert daemon.out("volume", "rm", name) == name
    assert name not in daemon.out("volume", "ls", "-q").split()
    # generated name, dockyard's own command
    gen = _dockyard(daemon, "volume", "create").stdout.strip()
    assert len(gen) == 64
    assert gen in _dockyard(daemon, "volume", "ls", "-q").stdout.split()
    assert json.loads(_dockyard(daemon, "volume", "inspect", gen).stdout)[0]["Name"] == gen
    _dockyard(daemon, "volume", "rm", gen)


@pytest.mark.parametrize("bad", ["../../etc", "a", "x/y", ".hidden", "a b"])
def test_invalid_volume_names(daemon, bad):
    r = daemon.docker("volume", "create", bad, check=False)
    assert r.returncode != 0 and "includes invalid characters for a local volume name" in r.stderr
    import docker

    cl = daemon.client()   # the API as sent (the CLI makes relative paths absolute binds)
    with pytest.raises(docker.errors.APIError) as e:
        cl.api.create_container("busybox", "true",
                                host_config=cl.api.create_host_config(binds=[f"{bad}:/x"]))
    assert e.value.status_code == 400
    assert not any(p.name not in ("volume.json",) and ".." in p.name
                   for p in (daemon.data / "volumes").iterdir())
    assert not (daemon.data / "etc").exists()


def test_in_use_and_prune(daemon):
    name = _name()
    cid = daemon.out("create", "-v", f"{name}:/data", "busybox", "true")   # never started
    r = daemon.docker("volume", "rm", name, check=False)
    assert r.returncode == 1
    assert f"remove {name}: volume is in use - [{cid}]" in r.stderr
    daemon.out("volume", "prune", "-af")
    assert name in daemon.out("volume", "ls", "-q").split()       # in use: kept
    anon = daemon.out("create", "-v", "/anon", "busybox", "true")
    anon_vol = json.loads(daemon.out("inspect", anon))[0]["Mounts"][0]["Name"]
    daemon.out("rm", cid, anon)
    keep = _name()
    daemon.out("volume", "create", keep)
    out = daemon.out("volume", "prune", "-f")                       # anonymous only
    assert anon_vol in out and name not in out and keep not in out
    out = daemon.out("volume", "prune", "-af", "--filter", f"label=nothing")
    assert name not in out
    out = daemon.out("volume", "prune", "-af")
    assert name in out and keep in out


# ---- mounts in containers ---------------------------------------------------------------

def _image_with_volume(d) -> str:
    """An image whose VOLUME /data holds a file, owned 1000:1000 with mode 0750."""
    tag = _name("img")
    cid = d.out("create", "busybox", "sh", "-c",
                "mkdir -p /data/sub && echo image > /data/sub/f && chown -R 1000:1000 /data "
                "&& chmod 750 /data")
    d.out("start", "-a", cid)
    d.out("commit", "--change", "VOLUME /data", cid, tag)
    d.out("rm", cid)
    return tag


def test_named_volume_data_survives_container_removal(daemon):
    name = _name()
    daemon.out("run", "--rm", "-v", f"{name}:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert daemon.out("run", "--rm", "-v", f"{name}:/data", "busybox", "cat", "/data/f") == "kept"
    # a volume created implicitly shows up as a volume
    assert name in daemon.out("volume", "ls", "-q").split()
    daemon.out("volume", "rm", name)


def test_image_volume_copy_up_anonymous_and_rm_v(daemon):
    img = _image_with_volume(daemon)
    cid = daemon.out("create", img, "sh", "-c", "cat /data/sub/f; stat -c '%u:%g %a' /data")
    assert daemon.out("start", "-a", cid).splitlines() == ["image", "1000:1000 750"]
    m = json.loads(daemon.out("inspect", cid))[0]["Mounts"]
    assert len(m) == 1 and m[0]["Type"] == "volume" and m[0]["Destination"] == "/data"
    assert m[0]["Driver"] == "local" and m[0]["RW"] is True and len(m[0]["Name"]) == 64
    anon = m[0]["Name"]
    assert anon in daemon.out("ps", "-aq", "--no-trunc", "--filter", f"volume={anon}") or \
        cid in daemon.out("ps", "-aq", "--no-trunc", "--filter", f"volume={anon}")
    # copied once: emptied by the container, it stays empty at the next start
    once = daemon.out("create", img, "sh", "-c", "ls /data; rm -rf /data/*")
    assert daemon.out("start", "-a", once) == "sub"
    assert daemon.out("start", "-a", once) == ""
    daemon.out("rm", "-v", once)
    # nocopy: an empty new volume
    named = _name()
    assert daemon.out("run", "--rm", "-v", f"{named}:/data:nocopy", img, "ls", "/data") == ""
    # a named volume: copied up when new and empty
    named2 = _name()
    assert daemon.out("run", "--rm", "-v", f"{named2}:/data", img, "cat", "/data/sub/f") == "image"
    # rm -v removes the anonymous volume, not named ones
    daemon.out("rm", "-v", cid)
    vols = daemon.out("volume", "ls", "-q").split()
    assert anon not in vols and named in vols and named2 in vols
    # run --rm removes its anonymous volumes
    cid2 = daemon.out("run", "-d", "--rm", "-v", "/scratch", "busybox", "sleep", "30")
    anon2 = json.loads(daemon.out("inspect", cid2))[0]["Mounts"][0]["Name"]
    daemon.out("rm", "-f", cid2)
    time.sleep(0.5)
    assert anon2 not in daemon.out("volume", "ls", "-q").split()
    daemon.out("volume", "rm", named, named2)


def test_run_rm_anonymous_volumes_are_gone_when_run_returns(daemon):
    """As dockerd: a `run --rm` container's anonymous volumes are removed before it is
    reported removed, so a `volume ls` right after the run lists none of them (they
    were listed for a few ms after); its named volumes stay."""
    named = _name()
    before = set(daemon.out("volume", "ls", "-q").split())
    for _ in range(3):
        daemon.out("run", "--rm", "-v", "/data", "-v", f"{named}:/named", "busybox", "sh", "-c",
                   "echo x > /data/f; echo y > /named/f")
        assert set(daemon.out("volume", "ls", "-q").split()) == before | {named}
    daemon.out("volume", "rm", named)


def test_copy_up_keeps_xattrs(daemon, tmp_path):
    """Copy-up copies extended attributes (file capabilities, user.*) as dockerd's."""
    import io
    import struct
    import tarfile

    from helpers.rootfs import BUSYBOX

    # VFS_CAP_REVISION_2 with the effective bit, CAP_NET_BIND_SERVICE permitted
    cap = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(str(BUSYBOX), "bin/busybox")
        d = tarfile.TarInfo("data")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        d.pax_headers = {"SCHILY.xattr.user.top": "dir-attr"}
        tf.addfile(d)
        f = tarfile.TarInfo("data/tool")
        f.mode, f.size = 0o755, 4
        f.pax_headers = {"SCHILY.xattr.user.note": "hello",
                         "SCHILY.xattr.security.capability": cap.decode("latin-1")}
        tf.addfile(f, io.BytesIO(b"tool"))
        s = tarfile.TarInfo("data/sub")
        s.type, s.mode = tarfile.DIRTYPE, 0o700
        s.pax_headers = {"SCHILY.xattr.user.sub": "x"}
        tf.addfile(s)
    raw = buf.getvalue()   # (every byte of cap is ASCII: the PAX value's UTF-8 is cap)
    tag = _name("xattr")
    daemon.docker("import", "--change", "VOLUME /data", "-", tag, input=raw)
    name = _name()
    daemon.out("run", "--rm", "-v", f"{name}:/data", tag, "/bin/busybox", "true")
    data = daemon.data / "volumes" / name / "_data"
    assert (data / "tool").read_bytes() == b"tool"
    assert os.getxattr(data / "tool", "user.note") == b"hello"
    assert os.getxattr(data / "tool", "security.capability") == cap
    assert os.getxattr(data, "user.top") == b"dir-attr"
    assert os.getxattr(data / "sub", "user.sub") == b"x"
    daemon.out("volume", "rm", name)
    daemon.out("rmi", tag)


def test_mount_flag_types_and_options(daemon, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "f").write_text("host\n")
    # bind, read-only
    r = daemon.docker("run", "--rm", "--mount", f"type=bind,source={src},target=/b,readonly",
                      "busybox", "sh", "-c", "cat /b/f; touch /b/g", check=False)
    assert r.stdout == "host\n" and "Read-only file system" in r.stderr
    # tmpfs with size and mode
    out = daemon.out("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770",
                     "busybox", "sh", "-c", "stat -c %a /t; df -k /t | tail -1")
    mode, df = out.splitlines()
    assert mode == "1770" and df.split()[1] == "1024"
    # a volume with a subpath (API 1.45) and volume-opt labels
    name = _name()
    daemon.out("run", "--rm", "-v", f"{name}:/v", "busybox", "sh", "-c",
               "mkdir /v/part && echo sub > /v/part/x")
    assert daemon.out("run", "--rm", "--mount",
                      f"type=volume,source={name},target=/s,volume-subpath=part",
                      "busybox", "cat", "/s/x") == "sub"
    from dockyard.snapshots.mount import mounts_under

    sub_cid = daemon.out("run", "-d", "--mount",
                         f"type=volume,source={name},target=/s,volume-subpath=part",
                         "busybox", "sleep", "30")
    # the staged subpath is the container's own once it runs: nothing left on the host
    assert not mounts_under(daemon.data / "mounts")
    assert daemon.out("exec", sub_cid, "cat", "/s/x") == "sub"
    daemon.out("rm", "-f", sub_cid)
    made = _name()
    daemon.out("run", "--rm", "--mount", f"type=volume,source={made},target=/m,volume-label=k=v",
               "busybox", "true")
    assert json.loads(daemon.out("volume", "inspect", made))[0]["Labels"] == {"k": "v"}
    # a volume with the local driver's tmpfs options
    tv = _name()
    daemon.out("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=2m", tv)
    assert daemon.out("run", "--rm", "-v", f"{tv}:/tv", "busybox", "sh", "-c",
                      "df -k /tv | tail -1").split()[1] == "2048"
    # volume-opt: a volume made by the --mount with the driver's options; volume-nocopy
    mo = _name()
    assert daemon.out("run", "--rm", "--mount", f"type=volume,source={mo},target=/etc,"
                      "volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=3m,"
                      "volume-nocopy", "busybox", "sh", "-c",
                      "ls /etc; df -k /etc | tail -1").split()[:5] == \
        ["hostname", "hosts", "resolv.conf", "tmpfs", "3072"]   # the daemon's files on top
    assert json.loads(daemon.out("volume", "inspect", mo))[0]["Options"]["o"] == "size=3m"
    daemon.out("volume", "rm", mo)
    # o=bind of a host directory
    bv = _name()
    daemon.out("volume", "create", "-o", "type=none", "-o", f"device={src}", "-o", "o=bind", bv)
    assert daemon.out("run", "--rm", "-v", f"{bv}:/bv", "busybox", "cat", "/bv/f") == "host"
    daemon.out("volume", "rm", name, made, tv, bv)


def test_bind_recursive_readonly_and_nonrecursive(daemon, tmp_path):
    from dockyard.snapshots import mount as snapmount

    src = tmp_path / "rsrc"
    (src / "inner").mkdir(parents=True)
    snapmount.mount_one({"type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}, src / "inner")
    try:
        r = daemon.docker("run", "--rm", "-v", f"{src}:/r:ro", "busybox", "touch", "/r/inner/x",
                          check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr   # recursive ro
        r = daemon.docker("run", "--rm", "--mount",
                          f"type=bind,source={src},target=/r,readonly,bind-recursive=writable",
                          "busybox", "touch", "/r/inner/x", check=False)
        assert r.returncode == 0, r.stderr
        out = daemon.out("run", "--rm", "--mount", f"type=bind,source={src},target=/r,"
                         "bind-nonrecursive", "busybox", "sh", "-c",
                         "grep -c ' /r/inner ' /proc/self/mountinfo || true")
        assert out == "0"
    finally:
        snapmount.unmount(src / "inner", 2)


def test_mount_options_gated_by_api_version_as_dockerd(daemon, tmp_path):
    """dockerd's create handler: clients below API 1.44 keep non-recursive read-only
    binds (ReadOnlyNonRecursive ignored, ReadOnlyForceRecursive refused), below 1.45 a
    volume Subpath is refused."""
    from dockyard.snapshots import mount as snapmount

    src = tmp_path / "gsrc"
    (src / "inner").mkdir(parents=True)
    snapmount.mount_one({"type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}, src / "inner")
    old = {"DOCKER_API_VERSION": "1.43"}
    try:
        # 1.43: -v :ro and --mount readonly are read-only at the top only
        for how in (["-v", f"{src}:/r:ro"], ["--mount", f"type=bind,source={src},target=/r,ro"]):
            r = daemon.docker("run", "--rm", *how, "busybox", "sh", "-c",
                              "touch /r/inner/x && touch /r/y", check=False, env=old)
            assert "Read-only file system" in r.stderr and "/r/y" in r.stderr, r
            assert (src / "inner" / "x").exists()
            (src / "inner" / "x").unlink()
        # 1.47 (the default): recursively read-only
        r = daemon.docker("run", "--rm", "-v", f"{src}:/r:ro", "busybox", "touch", "/r/inner/x",
                          check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr
        import docker

        old_cl = docker.APIClient(base_url=daemon.host, version="1.43", timeout=60)
        with pytest.raises(docker.errors.APIError) as e:
            old_cl.create_container("busybox", "true", host_config=old_cl.create_host_config(
                mounts=[{"Type": "bind", "Source": str(src), "Target": "/r", "ReadOnly": True,
                         "BindOptions": {"ReadOnlyForceRecursive": True}}]))
        assert e.value.status_code == 400
        assert "BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer" in str(e.value)
        name = _name()
        daemon.out("volume", "create", name)
        for version in ("1.43", "1.44"):
            cl = docker.APIClient(base_url=daemon.host, version=version, timeout=60)
            with pytest.raises(docker.errors.APIError) as e:
                cl.create_container("busybox", "true", host_config=cl.create_host_config(
                    mounts=[{"Type": "volume", "Source": name, "Target": "/s",
                             "VolumeOptions": {"Subpath": "part"}}]))
            assert e.value.status_code == 400
            assert "VolumeOptions.Subpath needs API v1.45 or newer" in str(e.value)
        daemon.out("volume", "rm", name)
    finally:
        snapmount.unmount(src / "inner", 2)


def test_volume_subpath_errors_as_dockerd(daemon):
    name = _name()
    daemon.out("run", "--rm", "-v", f"{name}:/v", "busybox", "sh", "-c",
               "mkdir /v/d && ln -s d /v/link")
    # a subpath that is not in the volume is not made: the start fails (404 in dockerd)
    r = daemon.docker("run", "--rm", "--mount",
                      f"type=volume,source={name},target=/s,volume-subpath=missing/x",
                      "busybox", "true", check=False)
    assert r.returncode != 0
    assert f"cannot access path {daemon.data}/volumes/{name}/_data/missing/x: no such file " \
           "or directory" in r.stderr, r.stderr
    assert daemon.out("run", "--rm", "-v", f"{name}:/v", "busybox", "ls", "/v") == "d\nlink"
    # a symlink is never followed
    r = daemon.docker("run", "--rm", "--mount",
                      f"type=volume,source={name},target=/s,volume-subpath=link",
                      "busybox", "true", check=False)
    assert r.returncode != 0 and "cannot access path" in r.stderr, r.stderr
    # lexically outside the volume, or on an anonymous volume: refused at create
    for spec, msg in ((f"source={name},target=/s,volume-subpath=../x",
                       "subpath must be a relative path within the volume"),
                      (f"source={name},target=/s,volume-subpath=d/../../x",
                       "subpath must be a relative path within the volume"),
                      ("target=/s,volume-subpath=d",
                       "must not set Subpath when using anonymous volumes")):
        r = daemon.docker("create", "--mount", "type=volume," + spec, "busybox", "true",
                          check=False)
        assert r.returncode == 1 and msg in r.stderr, r.stderr
    # a subpath with a harmless ".." inside is the path it names (Go's IsLocal)
    assert daemon.out("run", "--rm", "--mount",
                      f"type=volume,source={name},target=/s,volume-subpath=x/../d",
                      "busybox", "ls", "-a", "/s") == ".\n.."
    daemon.out("volume", "rm", name)


def test_bind_source_symlink_resolved_on_host(daemon, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("via link\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert daemon.out("run", "--rm", "-v", f"{link}:/l", "busybox", "cat", "/l/f") == "via link"


def test_mount_errors_as_dockerd(daemon, tmp_path):
    def err(*args):
        r = daemon.docker("run", "--rm", *args, "busybox", "true", check=False)
        assert r.returncode == 125, r
        return r.stderr

    assert "bind source path does not exist: /no/such/dir" in err(
        "--mount", "type=bind,source=/no/such/dir,target=/x")
    assert "mount type unknown" in err("--mount", "type=weird,target=/x")
    assert "Duplicate mount point: /x" in err("-v", "aa:/x", "-v", "bb:/x")
    assert "Duplicate mount point: /x" in err("-v", "aa:/x", "--mount", "type=tmpfs,target=/x")
    assert "invalid mount path" in err("--mount", "type=volume,source=aa,target=rel")
    assert ("invalid volume specification: 'aa:/x:rshared': invalid mount config for type "
            '"volume": field BindOptions must not be specified') in err("-v", "aa:/x:rshared")
    assert 'type "bind": field VolumeOptions must not be specified' in err(
        "-v", f"{tmp_path}:/x:nocopy")
    assert 'type "tmpfs": field Source must not be specified' in err(
        "--mount", "type=tmpfs,src=foo,dst=/x")
    assert 'type "bind": field Source must not be empty' in err("--mount", "type=bind,dst=/x")
    # the local driver's options, in dockerd's words
    for opts, msg in ((["-o", "foo=bar"], 'invalid option: "foo"'),
                      (["-o", "type=tmpfs"], 'missing required option: "device"'),
                      (["-o", "o=size=1m"], 'missing required option: "device"'),
                      (["-o", "device=/tmp"], 'missing required option: "type"')):
        r = daemon.docker("volume", "create", *opts, "badopts", check=False)
        assert r.returncode == 1 and f"create badopts: {msg}" in r.stderr, r.stderr
    # an o=bind volume of a missing host directory fails at mount, as dockerd's
    daemon.out("volume", "create", "-o", "type=none", "-o", "device=/no/such/dir", "-o", "o=bind",
               "missingdev")
    r = daemon.docker("run", "--rm", "-v", "missingdev:/x", "busybox", "true", check=False)
    assert r.returncode != 0 and "error while mounting volume" in r.stderr
    daemon.out("volume", "rm", "missingdev")
    import docker

    cl = daemon.client()   # (the CLI takes any 404 of a create for a missing image)
    with pytest.raises(docker.errors.NotFound) as e:
        cl.api.create_container("busybox", "true", host_config=cl.api.create_host_config(
            volumes_from=["no-such-ctr"]))
    assert "No such container: no-such-ctr" in str(e.value)


def test_volumes_from(daemon):
    name = _name()
    src = daemon.out("create", "--name", _name("c"), "-v", f"{name}:/shared", "-v", "/anon",
                     "busybox", "true")
    daemon.out("run", "--rm", "--volumes-from", src, "busybox", "sh", "-c",
               "echo from > /shared/f; echo a > /anon/f")
    r = daemon.docker("run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "sh", "-c",
                      "cat /shared/f /anon/f; touch /shared/g", check=False)
    assert r.stdout == "from\na\n" and "Read-only file system" in r.stderr
    daemon.out("rm", "-v", src)
    daemon.out("volume", "rm", name)


def test_propagation_rshared(daemon, tmp_path):
    from dockyard.snapshots import mount as snapmount

    src = tmp_path / "prop"
    src.mkdir()
    # make the source a shared mount of its own (the test host's / may be private)
    snapmount.mount_one({"type": "bind", "source": str(src), "options": ["bind"]}, src)
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)
        cid = daemon.out("run", "-d", "--privileged", "-v", f"{src}:/p:rshared", "busybox", "sh",
                         "-c", "mkdir -p /p/in && mount -t tmpfs none /p/in && sleep 30")
        deadline = time.time() + 10
        while time.time() < deadline and not os.path.ismount(src / "in"):
            time.sleep(0.1)
        assert os.path.ismount(src / "in")   # the container's mount reached the host
        m = json.loads(daemon.out("inspect", cid))[0]["Mounts"][0]
        assert m["Propagation"] == "rshared" and m["Type"] == "bind"
        daemon.out("rm", "-f", cid)
    finally:
        snapmount.unmount_all(src)


def test_inspect_mounts_shape(daemon, tmp_path):
    name = _name()
    cid = daemon.out("create", "-v", f"{name}:/n:ro", "-v", f"{tmp_path}:/b", "--mount",
                     "type=tmpfs,target=/t", "busybox", "true")
    mounts = {m["Destination"]: m for m in json.loads(daemon.out("inspect", cid))[0]["Mounts"]}
    assert mounts["/n"] == {"Type": "volume", "Name": name, "Source":
                            str(daemon.data / "volumes" / name / "_data"), "Destination": "/n",
                            "Driver": "local", "Mode": "ro", "RW": False, "Propagation": ""}
    assert mounts["/b"] == {"Type": "bind", "Source": str(tmp_path), "Destination": "/b",
                            "Mode": "", "RW": True, "Propagation": "rprivate"}
    assert mounts["/t"]["Type"] == "tmpfs"
    daemon.out("rm", cid)
    daemon.out("volume", "rm", name)


def test_volume_events(daemon):
    name = _name()
    since = str(int(time.time()) - 1)
    daemon.out("run", "--rm", "-v", f"{name}:/d", "busybox", "true")
    daemon.out("volume", "rm", name)
    out = daemon.out("events", "--since", since, "--until", str(int(time.time()) + 1),
                     "--filter", "type=volume", "--format", "{{.Action}} {{.Actor.ID}}")
    actions = [ln.split()[0] for ln in out.splitlines() if name in ln]
    assert actions == ["create", "mount", "unmount", "destroy"], out


# ---- docker-py ---------------------------------------------------------------------------

def test_docker_py_volumes_and_mounts(daemon):
    import docker
    from docker.types import Mount

    cl = daemon.client()
    name = _name()
    v = cl.volumes.create(name, labels={"py": "1"})
    assert v.name == name and cl.volumes.get(name).attrs["Labels"] == {"py": "1"}
    assert [x.name for x in cl.volumes.list(filters={"label": "py=1"})] == [name]
    out = cl.containers.run("busybox", ["sh", "-c", "echo py > /m/f; cat /m/f"], remove=True,
                            mounts=[Mount("/m", name, type="volume")])
    assert out == b"py\n"
    c = cl.containers.create("busybox", "true", mounts=[Mount("/m", name, type="volume")])
    with pytest.raises(docker.errors.APIError) as e:
        v.remove()
    assert e.value.status_code == 409 and "volume is in use" in str(e.value)
    c.remove()
    with pytest.raises(docker.errors.APIError) as e:
        cl.containers.run("busybox", "true", remove=True,
                          mounts=[Mount("/x", "/nonexistent-src", type="bind")])
    assert e.value.status_code == 400 and "bind source path does not exist" in str(e.value)
    v.remove()
    with pytest.raises(docker.errors.NotFound):
        cl.volumes.get(name)
    rep = cl.volumes.prune()
    assert "SpaceReclaimed" in rep


# ---- never lose data -----------------------------------------------------------------------

def test_volume_data_survives_daemon_kill9(fresh_daemon):
    d = fresh_daemon
    name = _name()
    d.out("run", "-d", "--name", "keeper", "-v", f"{name}:/d", "busybox", "sh", "-c",
          "echo before > /d/f; sleep 300")
    time.sleep(0.3)
    d.kill9()
    d.start()
    assert name in d.out("volume", "ls", "-q").split()
    r = d.docker("volume", "rm", name, check=False)
    assert "volume is in use" in r.stderr
    assert d.out("exec", "keeper", "cat", "/d/f") == "before"
    d.out("rm", "-f", "keeper")
    assert d.out("run", "--rm", "-v", f"{name}:/d", "busybox", "cat", "/d/f") == "before"
    d.stop()
    d.start()
    assert d.out("run", "--rm", "-v", f"{name}:/d", "busybox", "cat", "/d/f") == "before"


# ---- hostile containers ---------------------------------------------------------------------

from acceptance.test_fs_race import swapper  # noqa: E402,F401 - the session's static swapper


@pytest.mark.slow
def test_mount_target_swapped_with_symlink_stays_inside_root(daemon, swapper, tmp_path):
    """CVE-2021-30465's shape: a container sharing a volume swaps a directory that another
    container mounts over (a tmpfs at /vol/t) with a symlink to a host path, in a tight
    loop, while the victim restarts. Every start either fails or has its tmpfs inside
    its own root; a mount that followed the link to the host path would be missing from
    the victim's view (it went to the host path in its mount namespace)."""
    hostdir = tmp_path / "host-target"
    hostdir.mkdir()
    vol = _name()
    attacker = daemon.out("run", "-d", "-v", f"{vol}:/s", "busybox", "sleep", "300")
    try:
        daemon.docker("cp", str(swapper), f"{attacker}:/swapper")
        daemon.out("exec", attacker, "sh", "-c", f"mkdir /s/t && ln -s {hostdir} /s/l")
        daemon.out("exec", "-d", attacker, "/swapper", "/s/t", "/s/l", "120")
        victim = daemon.out("create", "-v", f"{vol}:/vol", "--mount",
                            "type=tmpfs,target=/vol/t,tmpfs-size=1024k", "busybox", "sh", "-c",
                            "grep -c 'size=1024k' /proc/self/mountinfo")
        started = 0
        for _ in range(60):
            r = daemon.docker("start", "-a", victim, check=False)
            if "Error response from daemon" in r.stderr:
                continue   # refused (e.g. the target was the link to the root): fine
            started += 1
            assert r.stdout.strip() == "1", (r.stdout, r.stderr)
            assert not os.path.ismount(hostdir)
        assert started > 5
        daemon.out("rm", "-f", victim)
    finally:
        daemon.docker("rm", "-f", attacker, check=False)
        daemon.docker("volume", "rm", vol, check=False)


def test_mount_target_symlink_in_own_root_resolved_inside(daemon, tmp_path):
    """A container replaces its own mount target with a symlink to a host path (and to
    /proc/1/root) before its next start: the mount lands inside its root."""
    hostdir = tmp_path / "own-target"
    hostdir.mkdir()
    cid = daemon.out("create", "--mount", "type=tmpfs,target=/mnt/t,tmpfs-size=1024k",
                     "busybox", "sh", "-c",
                     f"grep -c 'size=1024k' /proc/self/mountinfo; "
                     f"[ -L /mnt ] || {{ mv /mnt /mnt.old && ln -s {hostdir} /mnt; }}")
    assert daemon.out("start", "-a", cid) == "1"
    r = daemon.docker("start", "-a", cid, check=False)   # now through the symlink
    assert r.stdout.splitlines()[0] == "1" and not os.path.ismount(hostdir)
    daemon.out("rm", cid)


# ---- everywhere a mount shows: cp, export, commit, diff ----------------------------------

def test_cp_through_volumes_binds_and_etc_files(daemon, tmp_path):
    name = _name()
    bind = tmp_path / "bindsrc"
    bind.mkdir()
    (bind / "b.txt").write_text("from bind\n")
    (tmp_path / "in.txt").write_text("copied in\n")
    cid = daemon.out("run", "-d", "--hostname", "webhost", "-v", f"{name}:/data", "-v",
                     f"{bind}:/bind", "-v", f"{_name()}:/ro:ro", "busybox", "sleep", "300")
    try:
        # running: into the volume, out of the bind mount and of the daemon's /etc files
        daemon.out("cp", str(tmp_path / "in.txt"), f"{cid}:/data/in.txt")
        assert daemon.out("exec", cid, "cat", "/data/in.txt") == "copied in"
        daemon.out("cp", f"{cid}:/bind/b.txt", str(tmp_path / "b.out"))
        assert (tmp_path / "b.out").read_text() == "from bind\n"
        daemon.out("cp", f"{cid}:/etc/hostname", str(tmp_path / "hostname"))
        assert (tmp_path / "hostname").read_text() == "webhost\n"
        r = daemon.docker("cp", str(tmp_path / "in.txt"), f"{cid}:/ro/", check=False)
        assert r.returncode != 0 and "read-only" in r.stderr
        # stopped: the volume's content is still reachable
        daemon.out("stop", "-t", "0", cid)
        daemon.out("cp", f"{cid}:/data/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "copied in\n"
        daemon.out("cp", str(tmp_path / "in.txt"), f"{cid}:/data/second.txt")
        assert daemon.out("run", "--rm", "-v", f"{name}:/v", "busybox", "cat",
                          "/v/second.txt") == "copied in"
        # the bare rootfs has none of it: export, diff and commit leave volume content out
        exported = subprocess.run(["/usr/local/bin/docker", "export", cid], env=daemon.env,
                                  capture_output=True, check=True).stdout
        import io
        import tarfile

        names = tarfile.open(fileobj=io.BytesIO(exported)).getnames()
        assert not any(n.startswith(("data/", "bind/")) for n in names), names
        diff = daemon.out("diff", cid)
        assert "in.txt" not in diff and "second.txt" not in diff and "b.txt" not in diff
        img = _name("commit")
        daemon.out("commit", cid, img)
        assert daemon.out("run", "--rm", img, "ls", "/data") == ""
        # no copy view is left mounted
        assert not any("cp-" in line for line in open("/proc/self/mountinfo"))
    finally:
        daemon.docker("rm", "-fv", cid, check=False)


def test_cp_into_and_out_of_tmpfs_mounts_of_a_running_container(daemon, tmp_path):
    """dockerd copies in the container's mount namespace: its tmpfs mounts are reached."""
    name = _name()
    (tmp_path / "in.txt").write_text("into tmpfs\n")
    cid = daemon.out("run", "-d", "--tmpfs", "/t", "--mount", "type=tmpfs,target=/m",
                     "-v", f"{name}:/data", "busybox", "sh", "-c",
                     "echo made > /t/inside; sleep 300")
    try:
        for _ in range(50):
            if daemon.docker("exec", cid, "test", "-f", "/t/inside", check=False).returncode == 0:
                break
            time.sleep(0.1)
        daemon.out("cp", f"{cid}:/t/inside", str(tmp_path / "out.txt"))
        assert (tmp_path / "out.txt").read_text() == "made\n"
        for dest in ("/t/", "/m/", "/data/"):
            daemon.out("cp", str(tmp_path / "in.txt"), f"{cid}:{dest}")
            assert daemon.out("exec", cid, "cat", dest + "in.txt") == "into tmpfs"
        # nothing of it reached the rootfs below the tmpfs mounts
        daemon.out("stop", "-t", "0", cid)
        r = daemon.docker("cp", f"{cid}:/t/inside", str(tmp_path / "gone"), check=False)
        assert r.returncode != 0 and "Could not find the file" in r.stderr, r.stderr
        daemon.out("cp", f"{cid}:/data/in.txt", str(tmp_path / "vol.txt"))   # the volume stays
        assert (tmp_path / "vol.txt").read_text() == "into tmpfs\n"
    finally:
        daemon.docker("rm", "-fv", cid, check=False)
        daemon.docker("volume", "rm", name, check=False)


def test_system_df_volumes_and_containers(fresh_daemon):
    d = fresh_daemon
    used, idle = _name(), _name()
    d.out("run", "--rm", "-v", f"{used}:/d", "busybox", "sh", "-c",
          "dd if=/dev/zero of=/d/blob bs=1024 count=300 2>/dev/null")
    d.out("volume", "create", idle)
    cid = d.out("run", "-d", "-v", f"{used}:/d", "busybox", "sh", "-c",
                "dd if=/dev/zero of=/big bs=1024 count=100 2>/dev/null; sleep 300")
    time.sleep(0.5)
    du = d.client().df()
    vols = {v["Name"]: v for v in du["Volumes"]}
    assert vols[used]["UsageData"] == {"Size": 300 * 1024, "RefCount": 1}
    assert vols[idle]["UsageData"] == {"Size": 0, "RefCount": 0}
    ctrs = {c["Id"]: c for c in du["Containers"]}
    assert ctrs[cid]["SizeRw"] >= 100 * 1024 and ctrs[cid]["State"] == "running"
    # the docker CLI's table: volumes 2 total / 1 active, containers 1 / 1 active
    rows = {ln.split("  ")[0]: ln.split() for ln in d.out("system", "df").splitlines()[1:]}
    assert rows["Local Volumes"][2:4] == ["2", "1"], rows
    assert rows["Containers"][1:3] == ["1", "1"], rows
    verbose = d.out("system", "df", "-v")
    assert used in verbose and cid[:12] in verbose
    mine = _dockyard(d, "system", "df").stdout
    assert [ln.split()[2:4] for ln in mine.splitlines() if ln.startswith("Local Volumes")] \
        == [["2", "1"]], mine
    assert used in _dockyard(d, "system", "df", "-v").stdout
    d.out("rm", "-f", cid)


# ---- docker-compose 1.29 -----------------------------------------------------------------------

COMPOSE = "/usr/bin/docker-compose"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(COMPOSE), reason="docker-compose 1.29 is not installed "
                    "(scripts/install-deps installs it)")
def test_docker_compose_named_volumes_and_down_v(daemon, tmp_path):
    project = _name("proj")
    (tmp_path / "docker-compose.yml").write_text(f"""
version: "3.8"
services:
  writer:
    image: busybox
    network_mode: none
    command: ["sh", "-c", "echo composed > /data/f; sleep 300"]
    volumes:
      - data:/data
      - /scratch
volumes:
  data:
    labels:
      purpose: test
""")
    env = {**daemon.env, "COMPOSE_PROJECT_NAME": project}

    def compose(*args):
        r = subprocess.run([COMPOSE, *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, (args, r.stdout, r.stderr, daemon.log_text())
        return r.stdout

    compose("up", "-d")
    vol = f"{project}_data"
    try:
        v = json.loads(daemon.out("volume", "inspect", vol))[0]
        assert v["Labels"]["purpose"] == "test"
        assert v["Labels"]["com.docker.compose.project"] == project
        deadline = time.time() + 10
        while time.time() < deadline:
            r = daemon.docker("run", "--rm", "-v", f"{vol}:/d", "busybox", "cat", "/d/f",
                              check=False)
            if r.stdout.strip() == "composed":
                break
            time.sleep(0.2)
        assert r.stdout.strip() == "composed"
        compose("stop", "-t", "0")
        compose("up", "-d")     # the same container again, the same volume
        compose("down", "-t", "0")
        assert vol in daemon.out("volume", "ls", "-q").split()   # down keeps volumes
        compose("up", "-d")
        compose("down", "-v", "-t", "0")
        assert vol not in daemon.out("volume", "ls", "-q").split()
    finally:
        subprocess.run([COMPOSE, "down", "-v", "-t", "0"], cwd=tmp_path, env=env, capture_output=True,
                       timeout=120)


def test_dockyard_run_volume_flags(daemon, tmp_path):
    name = _name()
    holder = _name("holder")
    out = _dockyard(daemon, "run", "--name", holder, "-v", f"{name}:/n", "-v", "/anon",
                    "--mount", "type=tmpfs,target=/t,tmpfs-mode=1777,tmpfs-size=1m",
                    "--mount", f"type=volume,source={name},target=/m2,readonly",
                    "busybox", "sh", "-c", "mkdir -p /n/d; echo x > /n/d/f; stat -c %a /t").stdout
    assert out.strip() == "1777"
    mounts = {m["Destination"]: m for m in json.loads(daemon.out("inspect", holder))[0]["Mounts"]}
    assert mounts["/n"]["Name"] == name and mounts["/anon"]["Type"] == "volume"
    assert mounts["/m2"]["RW"] is False
    out = _dockyard(daemon, "run", "--rm", "--volumes-from", f"{holder}:ro", "--mount",
                    f"type=volume,source={name},target=/s,volume-subpath=d", "busybox", "sh",
                    "-c", "cat /s/f; ls -d /anon").stdout
    assert out.split() == ["x", "/anon"]
    r = _dockyard(daemon, "run", "--rm", "--mount", "type=volume,target=/x,bogus=1", "busybox",
                  "true", check=False)
    assert r.returncode != 0 and "unexpected key 'bogus'" in r.stderr
    r = _dockyard(daemon, "run", "--rm", "--volume-driver", "nfsplugin", "-v", "zz:/z",
                  "busybox", "true", check=False)
    assert r.returncode != 0 and 'plugin "nfsplugin" not found' in r.stderr
    daemon.out("rm", "-v", holder)
    daemon.out("volume", "rm", name)


def test_build_steps_on_an_image_with_volumes_leave_no_volume(daemon, tmp_path):
    img = _image_with_volume(daemon)
    (tmp_path / "Dockerfile").write_text(
        f"FROM {img}\nRUN echo lost > /data/lost && echo kept > /kept\n")
    before = set(daemon.out("volume", "ls", "-q").split())
    tag = _name("built")
    daemon.docker("build", "-q", "-t", tag, str(tmp_path), env={"DOCKER_BUILDKIT": "0"})
    assert set(daemon.out("volume", "ls", "-q").split()) == before
    # as with dockerd's classic builder: a RUN's writes under a VOLUME are not kept
    assert daemon.out("run", "--rm", tag, "sh", "-c", "cat /kept; ls /data") == "kept\nsub"


def test_volume_data_survives_supervisor_kill9(fresh_daemon):
    import signal

    d = fresh_daemon
    name = _name()
    cid = d.out("run", "-d", "-v", f"{name}:/d", "busybox", "sh", "-c",
                "echo kept > /d/f; sleep 300")
    time.sleep(0.3)
    os.kill(d.supervisor_pid(), signal.SIGKILL)
    time.sleep(1)
    r = d.docker("volume", "rm", name, check=False)
    assert "volume is in use" in r.stderr          # still referenced by the container
    d.out("rm", "-f", cid)
    assert d.out("run", "--rm", "-v", f"{name}:/d", "busybox", "cat", "/d/f") == "kept"
    d.out("volume", "rm", name)
    assert not (d.data / "volumes" / name).exists()


def test_copy_view_left_by_a_crash_is_swept_and_data_kept(fresh_daemon):
    """A daemon killed mid-copy leaves its view (a mount of the rootfs with the volume on
    it): the next daemon detaches it before anything could delete below it."""
    from dockyard.containers import copyview
    from dockyard.snapshots.mount import mounts_under

    d = fresh_daemon
    name = _name()
    cid = d.out("run", "-d", "-v", f"{name}:/d", "busybox", "sh", "-c",
                "echo precious > /d/f; sleep 300")
    time.sleep(0.3)
    views = d.data / copyview.DIR
    views.mkdir(mode=0o700, exist_ok=True)
    copyview.make(str(d.data / "containers" / cid / "rootfs"), str(views / "cp-crashed"),
                  [("/d", str(d.data / "volumes" / name / "_data"), True)])
    assert mounts_under(views)
    d.kill9()
    d.start()
    assert not mounts_under(views) and not (views / "cp-crashed").exists()
    d.out("rm", "-f", cid)
    assert d.out("run", "--rm", "-v", f"{name}:/d", "busybox", "cat", "/d/f") == "precious"
