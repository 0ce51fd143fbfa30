import pytest

from dockyard.errors import InvalidParameter
from dockyard.images import reference as r

CASES = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("127.0.0.1:5000/am/busybox:v1", "127.0.0.1:5000/am/busybox:v1", "127.0.0.1:5000/am/busybox:v1"),
    ("example.com/x", "example.com/x:latest", "example.com/x:latest"),
    ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest", "a__b/c-d.e_f:latest"),
    ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64,
     "busybox@sha256:" + "a" * 64),
    ("busybox:v1@sha256:" + "b" * 64, "docker.io/library/busybox:v1@sha256:" + "b" * 64,
     "busybox:v1@sha256:" + "b" * 64),
    ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
]


@pytest.mark.parametrize("inp,full,fam", CASES)
def test_normalize(inp, full, fam):
    assert r.normalize(inp) == full
    assert r.familiar(r.normalize(inp)) == fam


@pytest.mark.parametrize("inp,msg", [
    ("Busybox", "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("docker.io/Foo/bar", "invalid reference format: repository name (Foo/bar) must be lowercase"),
    ("", "invalid reference format"),
    ("busybox:", "invalid reference format"),
    ("busy box", "invalid reference format"),
    ("busybox:tag with space", "invalid reference format"),
    (":tag", "invalid reference format"),
    ("-abc", "invalid reference format"),
    ("a" * 256, "invalid reference format: repository name must not be more than 255 characters"),
    ("x@sha256:abc", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("a" * 64, "invalid repository name (" + "a" * 64 + "), cannot specify 64-byte hexadecimal strings"),
])
def test_invalid(inp, msg):
    with pytest.raises(InvalidParameter) as e:
        r.normalize(inp)
    assert str(e.value) == msg


def test_familiar_match():
    ref = r.parse_normalized("busybox:latest")
    assert r.familiar_match("busy*", ref)
    assert r.familiar_match("busybox:lat*", ref)
    assert not r.familiar_match("*/busybox", ref)
    ref2 = r.parse_normalized("localhost:5000/a/b:v1")
    assert r.familiar_match("localhost:5000/a/*", ref2)
    assert not r.familiar_match("localhost:5000/*", ref2)   # * does not cross /
