#!/usr/bin/env python3
"""Container output logging (json-file), Dockyard against Debian's dockerd, side by side.

    python3 bench/logs_bench.py [--reps 3] [--quick] [--only dockyard|dockerd]
                                [--mb 100] [--parallel 20] [--each-mb 10]

Each engine gets a private daemon (own data root, ``--network none`` containers) and a
busybox image imported from the same tar (Debian's busybox-static). Three cases:

1. one container writing ``--mb`` MB (default 100) of numbered 40-byte lines to stdout,
   no tty (busybox ``seq -w -s ' xxx...\\n' 1 N``: the number, padding, a newline);
2. the same with ``-t`` (a tty: the pty turns each newline into CR LF);
3. ``--parallel`` containers (default 20) started at once, each writing ``--each-mb`` MB.

Every container runs with ``--log-driver json-file --log-opt max-size=1g --log-opt
max-file=1`` on both engines: nothing is rotated away (Dockyard rotates at 10 MB x 3 by
default, dockerd not at all), so the whole output can be checked.

Timed per case, from the first ``docker run -d`` (the CLI's start included):
* **exit**: until ``docker wait`` has returned for every container;
* **last line**: until ``docker logs --tail 1`` shows each container's last line as well
  (polled after the exit, every 50 ms);
* **CPU** (to the exit, and to the last line): user+system seconds the engine's
  long-lived processes used over that window
  (``/proc/<pid>/stat`` utime+stime sampled before and after; children they reaped are
  not counted on either side). Dockyard: daemon, supervisor, its holder and its runtime
  fork server. dockerd: dockerd, its containerd and every containerd-shim of it. A shim
  exits once dockerd deletes its task, possibly before the "after" sample: the bench is
  a child subreaper while dockerd runs, so exited shims stay as its zombie children,
  whose /proc/<pid>/stat still holds their final times; they are read, then reaped.

Then, outside the timed window, the output is checked: ``docker logs <c>`` (stdout of
the CLI) must be byte for byte what ``seq`` wrote (SHA-256, the line count, and every
997th line's number in order). That full read is timed too (**read**, with the engine's
CPU for it). Engines alternate which goes first from rep to rep; every case's
containers are removed and ``sync`` run before the next. Prints each run with the load,
then medians per engine side by side. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(HERE / "src"))

from acceptance.harness import DOCKER, Daemon  # noqa: E402
from helpers.dockerd import running_dockerd  # noqa: E402
from helpers.rootfs import build_busybox_rootfs  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
LINE = 40            # bytes per line (the last one: just the number and a newline)
MB = 1_000_000
LOG_OPTS = ("--log-driver", "json-file", "--log-opt", "max-size=1g", "--log-opt", "max-file=1")
PR_SET_CHILD_SUBREAPER = 36


# ---- /proc ---------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, str, int, float] | None:
    """(comm, state, ppid, utime+stime seconds) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    head, tail = raw.rsplit(")", 1)
    comm = head.split("(", 1)[1]
    fields = tail.split()
    return comm, fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _hwm_kib(pid: int | None) -> int:
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _set_subreaper(on: bool) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(e)}")


def _reap(pids) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


# ---- the engines -----------------------------------------------------------------------
class Side:
    name = ""
    env: dict

    def docker(self, *args: str, check: bool = True, input: bytes | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, *args], env=self.env, capture_output=True, input=input,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args[:3])}...: "
                               f"{r.stderr.decode(errors='replace')[-2000:]}")
        return r

    def cpu(self) -> dict[int, float]:
        raise NotImplementedError

    def after_sample(self, sample: dict[int, float]) -> None:
        pass

    def hwm_kib(self) -> int:
        raise NotImplementedError

    def role(self, pid: int) -> str:
        raise NotImplementedError


class Ours(Side):
    name = "dockyard"

    def __init__(self, d: Daemon) -> None:
        self.d, self.env = d, d.env
        self.sup = d.supervisor_pid()
        self.holder = d.holder_pid()

    def pids(self) -> list[int]:
        ours = [self.d.proc.pid, self.sup, self.holder]
        # the runtime fork server: a python child of the supervisor (container inits are
        # its children too, and are not the engine's)
        ours += [p for p in _all_pids() if (_stat(p) or ("", "", 0, 0))[2] == self.sup
                 and "dockyard" in _cmdline(p)]
        return [p for p in ours if p]

    def cpu(self) -> dict[int, float]:
        return {p: s[3] for p in self.pids() if (s := _stat(p))}

    def hwm_kib(self) -> int:
        return _hwm_kib(self.d.proc.pid)

    def role(self, pid: int) -> str:
        return {self.d.proc.pid: "daemon", self.sup: "supervisor",
                self.holder: "holder"}.get(pid, "fork server")


class Theirs(Side):
    name = "dockerd"

    def __init__(self, dkd) -> None:
        self.dkd, self.env = dkd, dkd.env
        self.key = str(dkd.exec_root)   # containerd and every shim name its sockets
        self.me = os.getpid()

    def cpu(self) -> dict[int, float]:
        out = {}
        for p in _all_pids():
            s = _stat(p)
            if s is None:
                continue
            comm, state, ppid, t = s
            if p == self.dkd.pid or (state != "Z" and self.key in _cmdline(p)):
                out[p] = t
            elif state == "Z" and ppid == self.me and comm.startswith("containerd-shim"):
                out[p] = t      # an exited shim of ours (we are its subreaper)
        return out

    def after_sample(self, sample: dict[int, float]) -> None:
        zombies = [p for p in _all_pids() if (s := _stat(p)) and s[1] == "Z" and s[2] == self.me]
        _reap(zombies)

    def hwm_kib(self) -> int:
        return _hwm_kib(self.dkd.pid)

    def role(self, pid: int) -> str:
        if pid == self.dkd.pid:
            return "dockerd"
        return "shims" if (_stat(pid) or ("",))[0].startswith("containerd-shim") else "containerd"


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(p, 0.0) for p, t in after.items())


def _by_role(side: Side, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p, t in after.items():
        r = side.role(p)
        out[r] = out.get(r, 0.0) + t - before.get(p, 0.0)
    return out


# ---- the workload ----------------------------------------------------------------------
def payload(n: int) -> list[str]:
    """busybox seq writing ``n`` lines of LINE bytes (the last: the number and a newline)."""
    w = len(str(n))
    return ["seq", "-w", "-s", " " + "x" * (LINE - w - 2) + "\n", "1", str(n)]


_EXPECTED: dict = {}


def expected(n: int, tty: bool) -> tuple[str, int, bytes]:
    """(sha256, size, last line) of what ``payload(n)`` writes (through a pty: CR LF)."""
    key = (n, tty)
    if key not in _EXPECTED:
        w = len(str(n))
        nl = "\r\n" if tty else "\n"
        sep = " " + "x" * (LINE - w - 2) + nl
        h = hashlib.sha256()
        size = 0
        step = 100_000
        for lo in range(1, n, step):
            chunk = "".join(f"{i:0{w}d}{sep}" for i in range(lo, min(lo + step, n))).encode()
            h.update(chunk)
            size += len(chunk)
        last = f"{n}{nl}".encode()
        h.update(last)
        _EXPECTED[key] = (h.hexdigest(), size + len(last), last)
    return _EXPECTED[key]


def read_and_check(side: Side, cid: str, n: int, tty: bool) -> str | None:
    """Stream ``docker logs cid``; None when it is exactly the expected output, else why not."""
    want_hash, want_size, _ = expected(n, tty)
    p = subprocess.Popen([DOCKER, "logs", cid], env=side.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    h = hashlib.sha256()
    size = lines = 0
    carry = b""
    disorder = None
    assert p.stdout is not None
    while True:
        chunk = p.stdout.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        size += len(chunk)
        parts = (carry + chunk).split(b"\n")
        carry = parts.pop()
        for k in range(-lines % 997, len(parts), 997):     # every 997th line, in order
            try:
                got = int(parts[k].split(b" ", 1)[0])
            except ValueError:
                got = -1
            if got != lines + k + 1 and disorder is None:
                disorder = f"line {lines + k + 1} reads {parts[k][:20]!r}"
        lines += len(parts)
    err = p.stderr.read() if p.stderr else b""
    rc = p.wait()
    if rc != 0:
        return f"docker logs exited {rc}: {err.decode(errors='replace')[-300:]}"
    if carry:
        return f"output does not end with a newline ({carry[-20:]!r})"
    if disorder:
        return f"out of order: {disorder} ({lines} lines, {size} bytes)"
    if lines != n:
        return f"{lines} lines, {n} expected ({size} bytes)"
    if h.hexdigest() != want_hash or size != want_size:
        return f"{size} bytes, {want_size} expected, or other contents ({lines} lines)"
    if err.strip():
        return f"stderr: {err.decode(errors='replace')[:300]}"
    return None


def run_case(side: Side, count: int, n: int, tty: bool) -> dict:
    cmd = payload(n)
    _, _, last = expected(n, tty)
    opts = ["run", "-d", "--network", "none", *LOG_OPTS, *(["-t"] if tty else []), "busybox",
            *cmd]
    ids: list[str] = []
    try:
        before = side.cpu()
        t0 = time.perf_counter()
        if count == 1:
            ids.append(side.docker(*opts).stdout.decode().strip())
        else:
            with cf.ThreadPoolExecutor(count) as ex:
                futs = [ex.submit(side.docker, *opts) for _ in range(count)]
                cf.wait(futs)
            ids += [f.result().stdout.decode().strip() for f in futs if f.exception() is None]
            for f in futs:
                if f.exception() is not None:
                    raise f.exception()   # the others are removed below
        codes = side.docker("wait", *ids).stdout.decode().split()
        t_exit = time.perf_counter() - t0
        cpu_exit = _delta(before, side.cpu())
        if codes != ["0"] * count:
            raise RuntimeError(f"{side.name}: exit codes {codes}")
        deadline = time.monotonic() + 600
        for cid in ids:
            while side.docker("logs", "--tail", "1", cid).stdout != last:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{side.name}: the last line never showed in {cid[:12]}")
                time.sleep(0.05)
        t_last = time.perf_counter() - t0
        after = side.cpu()
        roles = _by_role(side, before, after)   # before the exited shims are reaped
        side.after_sample(after)
        cpu = _delta(before, after)

        before = side.cpu()
        t1 = time.perf_counter()
        problems = [f"{cid[:12]}: {why}" for cid in ids
                    if (why := read_and_check(side, cid, n, tty)) is not None]
        t_read = time.perf_counter() - t1
        after = side.cpu()
        read_cpu = _delta(before, after)
        return {"exit": t_exit, "cpu_exit": cpu_exit, "last": t_last, "cpu": cpu, "read": t_read,
                "read_cpu": read_cpu, "problems": problems, "roles": roles,
                "read_roles": _by_role(side, before, after)}
    finally:
        if ids:
            side.docker("rm", "-f", *ids, check=False)
        side.after_sample({})
        subprocess.run(["sync"], check=False)


# ---- main --------------------------------------------------------------------------------
def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _roles(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and a == a and b == b else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="10 MB, 20 x 1 MB, one rep (a smoke run of the bench itself)")
    ap.add_argument("--only", choices=("dockyard", "dockerd"))
    ap.add_argument("--mb", type=float, default=100, help="MB one container writes")
    ap.add_argument("--parallel", type=int, default=20, help="containers at once")
    ap.add_argument("--each-mb", type=float, default=10, help="MB each of those writes")
    a = ap.parse_args()
    if a.quick:
        a.mb, a.each_mb, a.reps = a.mb / 10, a.each_mb / 10, 1
    n_one = int(a.mb * MB) // LINE
    n_each = int(a.each_mb * MB) // LINE
    cases = [(f"1 container, {a.mb:g} MB, no tty", 1, n_one, False),
             (f"1 container, {a.mb:g} MB, tty", 1, n_one, True),
             (f"{a.parallel} containers x {a.each_mb:g} MB", a.parallel, n_each, False)]
    for _, _, n, tty in cases:
        expected(n, tty)

    def stop(signum, frame):   # SIGTERM: clean up as on ^C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    base = Path(tempfile.mkdtemp(prefix="logsbench-", dir="/var/tmp"))
    results: dict[tuple[str, str], list[dict]] = {}
    loads: list[float] = []
    problems: list[str] = []
    ours_d = None
    try:
        bb = build_busybox_rootfs(base / "bb")
        tar = subprocess.run(["tar", "-C", str(bb), "-c", "."], capture_output=True,
                             check=True).stdout
        sides: list[Side] = []
        if a.only in (None, "dockyard"):
            # started before the bench becomes a subreaper: nothing of ours is reparented here
            ours_d = Daemon(base / "ours")
            ours_d.start()
            ours = Ours(ours_d)
            ours.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
            sides.append(ours)
        _set_subreaper(True)
        with running_dockerd(base / "dkd") if a.only in (None, "dockerd") else _nothing() as dkd:
            if dkd is not None:
                theirs = Theirs(dkd)
                theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
                sides.append(theirs)
            for s in sides:   # warm: a first container on each engine (not --rm: that would
                # leave Dockyard a warm-pool container, torn down 60 s later, in a window)
                cid = s.docker("run", "-d", "--network", "none", "busybox", "true").stdout
                s.docker("wait", cid.decode().strip())
                s.docker("rm", "-f", cid.decode().strip())
            print(f"logs bench: {len(sides)} engine(s), {a.reps} rep(s), {LINE}-byte lines; "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
            for rep in range(a.reps):
                for label, count, n, tty in cases:
                    order = sides if rep % 2 == 0 else sides[::-1]
                    for s in order:
                        time.sleep(1)
                        la = os.getloadavg()[0]
                        r = run_case(s, count, n, tty)
                        lb = os.getloadavg()[0]
                        loads += [la, lb]
                        results.setdefault((label, s.name), []).append(r)
                        problems += [f"{s.name}, {label}, rep {rep + 1}: {p}"
                                     for p in r["problems"]]
                        print(f"rep {rep + 1} {label:32s} {s.name:9s} exit {r['exit']:7.2f} s "
                              f"(CPU {r['cpu_exit']:6.2f} s)  last line {r['last']:7.2f} s  CPU {r['cpu']:7.2f} s  "
                              f"read {r['read']:6.2f} s (CPU {r['read_cpu']:6.2f} s)  "
                              f"{'ok' if not r['problems'] else 'WRONG'}  "
                              f"load {la:.2f}-{lb:.2f}", flush=True)
                        print(f"      CPU to last line: {_roles(r['roles'])}; read: "
                              f"{_roles(r['read_roles'])}", flush=True)
            hwm = {s.name: s.hwm_kib() for s in sides}
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        try:
            if ours_d is not None:
                ours_d.close()
        finally:
            _set_subreaper(False)
            while True:   # any shim left as our zombie
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            shutil.rmtree(base, ignore_errors=True)

    names = [s.name for s in sides]
    print(f"\nLogs benchmark ({os.cpu_count()} CPUs), json-file, medians of {a.reps} rep(s); "
          f"load {min(loads):.2f}-{max(loads):.2f}; ratio = dockyard / dockerd")
    cols = ("exit", "cpu_exit", "last", "cpu", "read", "read_cpu")
    heads = {"exit": "exit s", "cpu_exit": "CPU to exit s", "last": "last line s",
             "cpu": "CPU to last s", "read": "read s", "read_cpu": "read CPU s"}
    for label, _, n, _ in cases:
        print(f"{label} ({n:,} lines per container):")
        for c in cols:
            meds = {nm: _med([r[c] for r in results.get((label, nm), [])]) for nm in names}
            row = "  ".join(f"{nm} {v:8.2f}" for nm, v in meds.items())
            ratio = (f"  ratio {_ratio(meds['dockyard'], meds['dockerd'])}"
                     if len(names) == 2 else "")
            print(f"  {heads[c]:14s} {row}{ratio}")
    print("daemon peak RSS (VmHWM): " + ", ".join(f"{k} {v / 1024:.0f} MiB"
                                                  for k, v in hwm.items()))
    if problems:
        print("\nWRONG OUTPUT:")
        for p in problems:
            print("  " + p)
        return 1
    print("every docker logs output equal to what seq wrote (bytes, lines, order)")
    return 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
