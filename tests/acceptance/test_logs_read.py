"""`docker logs` of a large json-file log: streamed in bounded memory, --tail from the end,
-t and --details as dockerd prints them."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest

from acceptance.harness import DOCKER

pytestmark = pytest.mark.slow

LINES = 500_000   # 40 bytes each: 20 MB of output, ~47 MB of log


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(key)


def test_a_large_log_is_streamed_in_bounded_memory_and_tailed_from_its_end(daemon):
    name = f"biglog-{uuid.uuid4().hex[:8]}"
    sep = " " + "x" * 31 + "\n"
    daemon.docker("run", "--name", name, "--network", "none", "--log-opt", "max-size=1g",
                  "--log-opt", "max-file=1", "busybox", "seq", "-w", "-s", sep, "1", str(LINES),
                  timeout=300)
    try:
        pid = daemon.proc.pid
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")   # the peak RSS starts again from the current RSS
        rss = _status_kib(pid, "VmRSS")
        p = subprocess.Popen([DOCKER, "logs", name], env=daemon.env, stdout=subprocess.PIPE)
        n, carry, last = 0, b"", b""
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            n += len(parts)
            last = parts[-1] if parts else last
        assert p.wait(timeout=300) == 0
        assert n == LINES and last == b"%d" % LINES and carry == b""
        # all entries of the log at once were ~200 MB; a batch at a time is a few
        grew = _status_kib(pid, "VmHWM") - rss
        assert grew < 40 * 1024, f"the daemon's peak RSS grew by {grew} KiB"
        r = daemon.docker("logs", "--tail", "2", name)
        assert r.stdout == f"{LINES - 1}{sep}{LINES}\n"
        # dockerd: the time with nine digits of fraction; --details: the attrs (none), a space
        ts = daemon.out("logs", "-t", "--tail", "3", name).splitlines()
        assert len(ts) == 3 and all(
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \d+( x+)?", t) for t in ts), ts
        assert daemon.docker("logs", "--details", "--tail", "1", name).stdout == f" {LINES}\n"
    finally:
        daemon.docker("rm", "-f", name, check=False)
