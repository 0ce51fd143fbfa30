"""Helpers for the `docker cp` tests (a module of its own: every test directory has a
conftest, so `from conftest import` would be ambiguous in a full run)."""

from __future__ import annotations


def run_sleeper(d, name: str, *opts: str) -> str:
    """A running busybox container (`sleep 1000`); its id."""
    r = d.docker("run", "-d", "--name", name, *opts, "busybox", "sleep", "1000")
    assert r.returncode == 0, r.stderr + d.logs()[-3000:]
    return r.stdout.strip()


def sh(d, name: str, script: str) -> str:
    r = d.docker("exec", name, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    return r.stdout
