"""containers/mounts.py: -v, --mount, Config.Volumes and --volumes-from parsed into mount
points with dockerd's precedence and errors (pure functions)."""

import pytest

from dockyard import errors
from dockyard.containers import mounts


def test_bind_volume_and_anonymous_specs():
    b = mounts.parse_bind("/host/dir:/ctr:ro,rshared")
    assert (b["Type"], b["Source"], b["Destination"], b["RW"], b["Propagation"],
            b["Mode"], b["ReadOnlyRecursive"]) == ("bind", "/host/dir", "/ctr", False, "rshared",
                                                   "ro,rshared", True)
    v = mounts.parse_bind("data:/var/lib/x:nocopy")
    assert (v["Type"], v["Name"], v["CopyData"], v["RW"], v["Mode"]) == \
        ("volume", "data", False, True, "nocopy")
    assert mounts.parse_bind("data:/d")["Mode"] == "z"
    a = mounts.parse_bind("/only/dest")
    assert a["Type"] == "volume" and a["Anonymous"] and a["Name"] == "" and a["CopyData"]


@pytest.mark.parametrize("spec, words", [
    ("data:rel", "mount path must be absolute"),
    ("data:/", "destination can't be '/'"),
    ("data:/x:bogus", "invalid mode: bogus"),
    ("data:/x:ro,rw", "invalid mode: ro,rw"),
    ("../etc:/x", "includes invalid characters for a local volume name"),
    ("a:/x", "includes invalid characters"),
    ("data:/x:rshared", "field BindOptions must not be specified"),
    ("/h:/x:nocopy", "field VolumeOptions must not be specified"),
    ("a:b:c:d", "invalid volume specification"),
])
def test_bad_bind_specs(spec, words):
    with pytest.raises(errors.InvalidParameter) as e:
        mounts.parse_bind(spec)
    assert words in str(e.value)


def test_mount_entries(tmp_path):
    m = mounts.parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/b",
                            "ReadOnly": True, "BindOptions": {"NonRecursive": True,
                                                              "Propagation": "rslave"}})
    assert (m["Recursive"], m["RW"], m["Propagation"]) == (False, False, "rslave")
    assert mounts.oci_mount(m, str(tmp_path))["options"] == ["bind", "ro", "rslave"]
    m = mounts.parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/b",
                            "ReadOnly": True})
    assert mounts.oci_mount(m, str(tmp_path))["options"] == ["rbind", "rro", "rprivate"]
    t = mounts.parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {
        "SizeBytes": 1 << 20, "Mode": 0o1777, "Options": [["exec"]]}})
    assert mounts.oci_mount(t, "")["options"] == ["nosuid", "nodev", "size=1048576", "mode=1777"]
    v = mounts.parse_mount({"Type": "volume", "Source": "named", "Target": "/v", "VolumeOptions": {
        "Subpath": "a/b", "NoCopy": True, "Labels": {"k": "v"},
        "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}})
    assert v["Subpath"] == "a/b" and not v["CopyData"] and not v["Anonymous"]
    assert v["VolumeOptions"] == {"Labels": {"k": "v"},
                                  "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}}


@pytest.mark.parametrize("m, words", [
    ({"Type": "weird", "Target": "/x"}, "mount type unknown"),
    ({"Type": "image", "Source": "busybox", "Target": "/x"},
     'invalid mount config for type "image": image mounts are not supported'),
    ({"Type": "volume"}, "field Target must not be empty"),
    ({"Type": "bind", "Target": "/x"}, "field Source must not be empty"),
    ({"Type": "bind", "Source": "/no/such/dir/x", "Target": "/x"},
     "bind source path does not exist: /no/such/dir/x"),
    ({"Type": "tmpfs", "Source": "x", "Target": "/x"}, "field Source must not be specified"),
    ({"Type": "volume", "Target": "/x", "BindOptions": {"Propagation": "shared"}},
     "field BindOptions must not be specified"),
    ({"Type": "volume", "Source": "v1", "Target": "/x", "VolumeOptions": {"Subpath": "../up"}},
     "subpath must be a relative path within the volume"),
    ({"Type": "volume", "Source": "v1", "Target": "/x", "VolumeOptions": {"Subpath": "a/../../b"}},
     "subpath must be a relative path within the volume"),
    ({"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "a"}},
     "must not set Subpath when using anonymous volumes"),
    ({"Type": "bind", "Source": "/", "Target": "/x", "BindOptions": {"Propagation": "odd"}},
     "invalid propagation mode: odd"),
    ({"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"Options": [["bogus"]]}},
     "invalid tmpfs option"),
])
def test_bad_mount_entries(m, words):
    with pytest.raises(errors.InvalidParameter) as e:
        mounts.parse_mount(m)
    assert words in str(e.value)


def test_read_only_binds_of_old_clients_stay_non_recursive(tmp_path):
    """dockerd keeps API < 1.44 clients' read-only binds non-recursively read-only."""
    old = mounts.parse_all({"Binds": [f"{tmp_path}:/a:ro"], "Mounts": [
        {"Type": "bind", "Source": str(tmp_path), "Target": "/b", "ReadOnly": True}]}, {}, {},
        ro_non_recursive=True)
    assert [mounts.oci_mount(p, str(tmp_path))["options"][1] for p in old] == ["ro", "ro"]
    new = mounts.parse_all({"Binds": [f"{tmp_path}:/a:ro"]}, {}, {})
    assert mounts.oci_mount(new[0], str(tmp_path))["options"][1] == "rro"
    assert mounts.parse_mount({"Type": "volume", "Source": "v1", "Target": "/x", "VolumeOptions": {
        "Subpath": "a/../b"}})["Subpath"] == "b"          # lexically inside: Go's IsLocal


def test_precedence_and_duplicates():
    other = {"MountPoints": [mounts.parse_bind("shared:/s") | {"Name": "shared"},
                             mounts.parse_bind("old:/over")]}
    pts = mounts.parse_all({"VolumesFrom": ["src:ro"], "Binds": ["new:/over"],
                            "Mounts": [{"Type": "tmpfs", "Target": "/t"}]},
                           {"Volumes": {"/over": {}, "/img": {}, "/t": {}}}, {"src": other})
    by = {p["Destination"]: p for p in pts}
    assert by["/s"]["RW"] is False and by["/s"]["CopyData"] is False   # from --volumes-from :ro
    assert by["/over"]["Name"] == "new"          # -v replaces --volumes-from
    assert by["/img"]["Anonymous"]               # image VOLUME: an anonymous volume
    assert by["/t"]["Type"] == "tmpfs"           # --mount wins over the image's VOLUME
    for host in ({"Binds": ["a1:/x", "b1:/x"]},
                 {"Binds": ["a1:/x"], "Mounts": [{"Type": "tmpfs", "Target": "/x"}]},
                 {"Binds": ["a1:/x"], "Tmpfs": {"/x": ""}}):
        with pytest.raises(errors.InvalidParameter, match="Duplicate mount point: /x"):
            mounts.parse_all(host, {}, {})
    with pytest.raises(errors.NotFound, match='plugin "nfs" not found'):
        mounts.parse_all({"VolumeDriver": "nfs"}, {}, {})
    assert mounts.root_propagation(pts) == ""
    assert mounts.root_propagation([mounts.parse_bind("/h:/x:rslave")]) == "rslave"
    assert mounts.root_propagation([mounts.parse_bind("/h:/x:shared")]) == "rshared"
