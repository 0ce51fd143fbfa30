"""The real docker CLI gives the same output and exit status against `dockyard daemon` as
against Debian's dockerd, for the same archive loaded into both."""

from __future__ import annotations

import pytest

from helpers.daemon import running_daemon
from helpers.dockerd import running_dockerd

pytestmark = [pytest.mark.slow, pytest.mark.dockerd]


def _rows_sorted(text: str) -> list[str]:
    """Header first, then rows in sorted order (the tag order within an image is the
    only difference left: dockerd sorts RepoTags, see the report)."""
    lines = text.splitlines()
    if lines and lines[0].startswith("{"):
        return sorted(lines)
    return lines[:1] + sorted(lines[1:])


def test_image_commands_match_dockerd(tmp_path, saved_busybox):
    path, image_id = saved_busybox
    short = image_id[7:19]
    exact = [
        ("load", "-i", str(path)),
        ("images", "-q"),
        ("tag", "am/busybox:v1", "am/other:x"),
        ("history", "am/busybox:v1"),
        ("history", "--no-trunc", "am/busybox:v1"),
        ("history", "-H=false", "am/busybox"),
        ("history", "-q", "am/busybox"),
        ("inspect", "--format", "{{.Id}} {{len .RepoTags}} {{.Config.Cmd}} {{.Size}} "
                                "{{.Config.Labels}} {{.Created}} {{.Config.Env}} {{.Os}}",
         "am/busybox:v1"),
        ("image", "inspect", "--format", "{{json .RootFS}} {{.Architecture}}", short),
        ("rmi", "am/other:x"),
        ("rmi", short),
        ("rmi", "nope"),
        ("inspect", "nope"),
        ("history", "nope"),
        ("tag", "nope", "x"),
        ("tag", "am/busybox", "Bad/Name"),
        ("system", "df"),
        ("image", "prune", "-f"),
        ("images", "--filter", "dangling=true"),
        ("images", "--filter", "label=org.dockyard.test=yes", "-q"),
        ("images", "--filter", "before=am/busybox:v1"),
    ]
    unordered = [
        ("images",),
        ("images", "--digests"),
        ("images", "--no-trunc"),
        ("images", "--format", "{{json .}}"),
        ("images", "--filter", "reference=am/*"),
        ("rmi", "-f", short),
        ("load", "-i", str(path)),
        ("image", "prune", "-a", "-f"),
        ("images", "-a"),
    ]
    with running_dockerd(tmp_path / "dockerd") as dd, running_daemon(tmp_path) as dy:
        for args in exact:
            a = dd.docker(*args, check=False, text=True)
            b = dy.docker(*args)
            assert (b.returncode, b.stdout, b.stderr) == (a.returncode, a.stdout, a.stderr), \
                args
        for args in unordered:
            a = dd.docker(*args, check=False, text=True)
            b = dy.docker(*args)
            assert b.returncode == a.returncode and b.stderr == a.stderr, args
            if args[0] == "images":
                assert _rows_sorted(b.stdout) == _rows_sorted(a.stdout), args
            else:
                assert sorted(b.stdout.splitlines()) == sorted(a.stdout.splitlines()), args
            assert b.stdout.count("\n") == a.stdout.count("\n")
