"""runtime/fastos.py gives the same answers as os / posixpath for what the runtime uses."""

from __future__ import annotations

import os
import posixpath

import pytest

from dockyard.runtime import fastos

PATHS = ["", ".", "..", "/", "//", "///", "a", "a/", "/a", "//a", "///a", "a//b", "a/./b",
         "a/../b", "../a", "../../a/b", "/..", "/../a", "/a/..", "/a/../..", "a/b/../../..",
         "./", ".//.", "/a/b/c/", "/a/b/./c/../d", "//a/../b", "a/.../b", "/tmp/x y/z",
         "/é/ü", "a/b/", "/a///b////c"]


@pytest.mark.parametrize("p", PATHS)
def test_pure_path_functions_match_posixpath(p):
    for name in ("normpath", "dirname", "basename", "isabs"):
        assert getattr(fastos.path, name)(p) == getattr(posixpath, name)(p), (name, p)
    assert fastos.path.abspath(p) == posixpath.abspath(p)
    if p:
        for start in ("/", "/a", "/a/b/c", ".", "a/b", "/tmp"):
            assert fastos.path.relpath(p, start) == posixpath.relpath(p, start), (p, start)
        assert fastos.path.relpath(p) == posixpath.relpath(p)
    for rest in ([], ["b"], ["/b"], ["b", "c/"], ["", "x"], ["b", "/c", "d"]):
        assert fastos.path.join(p, *rest) == posixpath.join(p, *rest), (p, rest)


def test_relpath_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        fastos.path.relpath("")


def test_bytes_paths_go_to_posixpath():
    assert fastos.path.join(b"/a", b"b") == b"/a/b"
    assert fastos.path.normpath(b"/a/../b") == b"/b"
    assert fastos.path.dirname(b"/a/b") == b"/a"


def test_file_tests_match_os(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to("f")
    (tmp_path / "dl").symlink_to("d")
    (tmp_path / "broken").symlink_to("missing")
    for name in ("d", "f", "l", "dl", "broken", "missing", "f/x"):
        p = str(tmp_path / name)
        for fn in ("exists", "lexists", "isdir", "isfile", "islink"):
            assert getattr(fastos.path, fn)(p) == getattr(os.path, fn)(p), (fn, name)
    assert fastos.path.exists("bad\0path") is False
    assert fastos.path.realpath(str(tmp_path / "l")) == os.path.realpath(tmp_path / "l")


def test_makedirs(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    fastos.makedirs(str(target), mode=0o700)
    assert target.is_dir() and (target.stat().st_mode & 0o777) == 0o700
    umask = os.umask(0)
    os.umask(umask)
    # the parents get the default mode, as with os.makedirs
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o777 & ~umask
    fastos.makedirs(str(target), exist_ok=True)
    with pytest.raises(FileExistsError):
        fastos.makedirs(str(target))
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        fastos.makedirs(str(tmp_path / "file"), exist_ok=True)
    with pytest.raises(NotADirectoryError):
        fastos.makedirs(str(tmp_path / "file" / "sub"), exist_ok=True)


def test_walk_matches_os_walk(tmp_path):
    for d in ("a/b/c", "a/d", "e"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "a" / "f").write_text("")
    (tmp_path / "a" / "link").symlink_to(tmp_path / "e")   # not followed
    ours = sorted((top, sorted(ds), sorted(fs)) for top, ds, fs in fastos.walk(str(tmp_path)))
    real = sorted((top, sorted(ds), sorted(fs)) for top, ds, fs in os.walk(str(tmp_path)))
    assert ours == real
    assert any("link" in ds for _, ds, _ in ours)     # listed, not descended into
    assert list(fastos.walk(str(tmp_path / "missing"))) == []


def test_environ_follows_os_environ(monkeypatch):
    assert fastos.environ.get("PATH") == os.environ.get("PATH")
    monkeypatch.setenv("DOCKYARD_FASTOS_PROBE", "1")
    assert fastos.environ["DOCKYARD_FASTOS_PROBE"] == "1" and "DOCKYARD_FASTOS_PROBE" in fastos.environ
    monkeypatch.delenv("DOCKYARD_FASTOS_PROBE")
    assert fastos.environ.get("DOCKYARD_FASTOS_PROBE", "gone") == "gone"


def test_environ_without_os_is_the_start_environment():
    # a process that never loads os (the runtime's command) reads its own environment
    import subprocess
    import sys
    code = ("import sys; sys.path.insert(0, %r); from dockyard.runtime import fastos; "
            "print(fastos.environ.get('PROBE_X'), 'os' in sys.modules)"
            % os.path.dirname(os.path.dirname(os.path.dirname(fastos.__file__))))
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                       env={"PROBE_X": "é-1"}, check=True)
    assert r.stdout.split() == ["é-1", "False"]


def test_encoding_and_system_calls_are_posix():
    assert fastos.fsencode("é") == os.fsencode("é")
    assert fastos.fsdecode(b"\xff") == os.fsdecode(b"\xff")
    assert fastos.open is os.open and fastos._exit is os._exit and fastos.fork is os.fork
    assert (fastos.SEEK_SET, fastos.SEEK_CUR, fastos.SEEK_END) == (os.SEEK_SET, os.SEEK_CUR,
                                                                   os.SEEK_END)
