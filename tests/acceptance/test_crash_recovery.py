"""Crash consistency (issue 16): kill -9 of the daemon at every step of create, start,
stop, restart, remove, exec and commit (``DOCKYARD_TEST_CRASH_AT``, dockyard/crashpoints.py)
and at random moments under a parallel workload, kill -9 of the supervisor with
running, logging and exiting containers; after each, what the API shows must match the
host (processes, mounts, cgroups, runtime state, files) and nothing may be left of
removed containers."""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from acceptance.harness import DOCKER, Daemon, running, warm_ids

pytestmark = pytest.mark.slow


# ---- invariants --------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def check_invariants(d: Daemon) -> dict:
    """Every container the API shows matches the host; nothing else of ours is there.
    Returns {name: status}."""
    from dockyard.snapshots.mount import mounts_under

    ids = d.out("ps", "-aq", "--no-trunc", timeout=30).split()
    recs = json.loads(d.out("inspect", *ids)) if ids else []
    warm = set(warm_ids(d))
    mounts = mounts_under(d.data)
    runtime_states = {n for n in (os.listdir(d.data / "runtime") if (d.data / "runtime").exists()
                                  else []) if len(n) == 64}   # not its seccomp cache
    cdirs = set(os.listdir(d.data / "containers")) - warm
    cgroups = {os.path.basename(p) for p in glob.glob(f"/sys/fs/cgroup/*{d.cgroup_parent}/*")
               if os.path.isdir(p)} - warm
    problems = []
    running_ids = set()
    for r in recs:
        cid, s = r["Id"], r["State"]
        rootfs = str(d.data / "containers" / cid / "rootfs")
        if s["Status"] in ("running", "paused"):
            running_ids.add(cid)
            if not (s["Pid"] and _alive(s["Pid"])):
                problems.append(f"{r['Name']}: {s['Status']} with a dead pid {s['Pid']}")
            if rootfs not in mounts:
                problems.append(f"{r['Name']}: running without its rootfs mounted")
        else:
            if s["Pid"]:
                problems.append(f"{r['Name']}: {s['Status']} with pid {s['Pid']}")
            if s["Status"] == "created" and s["StartedAt"] == "0001-01-01T00:00:00Z" \
                    and s["FinishedAt"] != "0001-01-01T00:00:00Z":
                problems.append(f"{r['Name']}: created but finished")
            if any(m == rootfs or m.startswith(rootfs + "/") for m in mounts):
                problems.append(f"{r['Name']}: {s['Status']} with its rootfs mounted")
            if cid in runtime_states:
                problems.append(f"{r['Name']}: {s['Status']} with runtime state")
            if cid in cgroups:
                problems.append(f"{r['Name']}: {s['Status']} with a cgroup")
    known = {r["Id"] for r in recs}
    for c in cdirs - known:
        problems.append(f"containers/{c[:12]}: a directory with no container")
    for c in (runtime_states - running_ids) - known - warm:
        problems.append(f"runtime/{c[:12]}: runtime state with no container")
    for c in cgroups - running_ids:
        problems.append(f"cgroup {c[:12]} of no running container")
    for m in mounts:
        if "/containers/" in m and not any(c in m for c in running_ids | warm):
            problems.append(f"mount {m} of no running container")
    assert not problems, "\n".join(problems) + "\n--- daemon log ---\n" + d.log_text()
    return {r["Name"].lstrip("/"): r["State"]["Status"] for r in recs}


def restart_with(d: Daemon, monkeypatch, point: str | None) -> None:
    d.stop()
    if point:
        monkeypatch.setenv("DOCKYARD_TEST_CRASH_AT", point)
    else:
        monkeypatch.delenv("DOCKYARD_TEST_CRASH_AT", raising=False)
    d.start()
    monkeypatch.delenv("DOCKYARD_TEST_CRASH_AT", raising=False)


def crashed(d: Daemon, timeout: float = 30) -> None:
    d.proc.wait(timeout)
    assert d.proc.returncode == -signal.SIGKILL, d.log_text()


@pytest.fixture(scope="module")
def crash_daemon(tmp_path_factory):
    with running(tmp_path_factory.mktemp("crash"), extra_args=("--warm-pool", "0")) as d:
        yield d


# point -> (setup under a normal daemon, the operation that crashes, expected status of "x"
# after recovery: None = gone)
TRAP = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
CASES = {
    "create.dir": (None, ["create", "--name", "cx", "busybox", "true"], None),
    "create.rootfs": (None, ["create", "--name", "cx", "busybox", "true"], None),
    "create.saved": (None, ["create", "--name", "cx", "busybox", "true"], "created"),
    "start.created": (["create", "--name", "cx", "busybox", *TRAP], ["start", "cx"], "created"),
    "start.started": (["create", "--name", "cx", "busybox", *TRAP], ["start", "cx"], "running"),
    "start.saved": (["create", "--name", "cx", "busybox", *TRAP], ["start", "cx"], "running"),
    "start.started:restart": (["run", "-d", "--name", "cx", "busybox", *TRAP],
                              ["restart", "-t", "5", "cx"], "running"),
    "stop.signalled": (["run", "-d", "--name", "cx", "busybox", *TRAP], ["stop", "cx"], "exited"),
    "exit.saved": (["run", "-d", "--name", "cx", "busybox", *TRAP], ["stop", "cx"], "exited"),
    "exit.saved:rm": (None, ["run", "--rm", "--name", "cx", "busybox", "true"], None),
    "exit.forgotten": (None, ["run", "--rm", "--name", "cx", "busybox", "true"], None),
    "remove.marked": (["run", "-d", "--name", "cx", "busybox", *TRAP], ["rm", "-f", "cx"], None),
    "remove.cleaned": (["run", "-d", "--name", "cx", "busybox", *TRAP], ["rm", "-f", "cx"], None),
    "remove.files": (["run", "-d", "--name", "cx", "busybox", *TRAP], ["rm", "-f", "cx"], None),
    "exec.started": (["run", "-d", "--name", "cx", "busybox", *TRAP],
                     ["exec", "-d", "cx", "sleep", "1000"], "running"),
    "commit.paused": (["run", "-d", "--name", "cx", "busybox", *TRAP],
                      ["commit", "cx", "crashimg"], "running"),
    "commit.committed": (["run", "-d", "--name", "cx", "busybox", *TRAP],
                         ["commit", "cx", "crashimg"], "running"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kill9_of_the_daemon_at_a_step(crash_daemon, monkeypatch, case):
    d = crash_daemon
    point = case.split(":")[0]
    setup, op, want = CASES[case]
    try:
        if setup:
            d.docker(*setup)
        restart_with(d, monkeypatch, point)
        r = d.docker(*op, check=False, timeout=60)
        crashed(d)
        assert r.returncode != 0 or op[0] in ("run",), r   # the client saw the daemon go
        restart_with(d, monkeypatch, None)
        if want == "exited":
            # signalled before the crash, the container ends on its own: its shell runs
            # the TERM trap once the current `sleep 1` is over, which may be after the
            # restart; its exit must then be seen (bounded)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and json.loads(d.out("inspect", "cx"))[0][
                    "State"]["Status"] != "exited":
                time.sleep(0.2)
        states = check_invariants(d)
        assert states.get("cx") == want, (states, d.log_text())
        if want == "running":
            # the container works and stops normally afterwards (its exit is seen)
            t0 = time.monotonic()
            d.docker("stop", "-t", "5", "cx", timeout=30)
            assert time.monotonic() - t0 < 10
            assert json.loads(d.out("inspect", "cx"))[0]["State"]["Status"] == "exited"
            if point.startswith("commit"):
                # not left frozen: it answered the stop signal at once
                assert time.monotonic() - t0 < 5
        check_invariants(d)
    finally:
        if d.proc.poll() is not None:
            restart_with(d, monkeypatch, None)
        d.docker("rm", "-f", "cx", check=False)
        d.docker("rmi", "crashimg", check=False)


def test_kill9_after_a_create_made_its_volumes_removes_only_its_anonymous_ones(
        crash_daemon, monkeypatch):
    """A create killed after its volumes were made and before its record was stored:
    recovery removes the anonymous volume it made, and keeps the named volume it made,
    the anonymous volume of a container that exists, and the dangling anonymous volume
    of a container removed without -v."""
    d = crash_daemon

    def vols() -> set[str]:
        return set(d.out("volume", "ls", "-q").split())

    before_all = vols()
    try:
        d.docker("create", "--name", "cv-other", "-v", "/o", "busybox", "true")
        d.docker("create", "--name", "cv-gone", "-v", "/g", "busybox", "true")
        dangling = {m["Name"] for m in json.loads(d.out("inspect", "cv-gone"))[0]["Mounts"]}
        d.docker("rm", "cv-gone")
        before = vols()
        assert dangling <= before
        restart_with(d, monkeypatch, "create.volumes")
        r = d.docker("create", "--name", "cx", "-v", "/data", "-v", "cv-named:/named",
                     "busybox", "true", check=False, timeout=60)
        crashed(d)
        assert r.returncode != 0, r
        made = {n for n in os.listdir(d.data / "volumes")} - before - {"cv-named"}
        assert len(made) == 1, made   # the anonymous volume of the killed create
        restart_with(d, monkeypatch, None)
        states = check_invariants(d)
        assert "cx" not in states, states
        assert vols() == before | {"cv-named"}, (before, vols(), d.log_text())
        assert not (made & set(os.listdir(d.data / "volumes")))
    finally:
        if d.proc.poll() is not None:
            restart_with(d, monkeypatch, None)
        for c in ("cx", "cv-other", "cv-gone"):
            d.docker("rm", "-fv", c, check=False)
        for v in vols() - before_all:
            d.docker("volume", "rm", v, check=False)


def test_kill9_at_random_moments_under_a_parallel_workload(tmp_path):
    """4 clients: run --rm, run -d + rm -f, create + start + stop + rm; the daemon is
    killed three times at random moments; after each restart the API matches the host,
    --rm containers are gone, and every client call returned within its timeout."""
    with running(tmp_path) as d:
        rng = random.Random(16)
        stop = threading.Event()
        timeouts = []

        def call(*args):
            try:
                return subprocess.run([DOCKER, *args], env=d.env, capture_output=True,
                                      text=True, timeout=60)
            except subprocess.TimeoutExpired:
                timeouts.append(args)
                return None

        def worker(k: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                name = f"w{k}-{i}"
                kind = (k + i) % 3
                if kind == 0:
                    call("run", "--rm", "--name", name, "busybox", "true")
                elif kind == 1:
                    if call("run", "-d", "--name", name, "busybox", "sleep", "1000"):
                        call("rm", "-f", name)
                else:
                    if call("create", "--name", name, "busybox", *TRAP):
                        call("start", name)
                        call("stop", "-t", "2", name)
                        call("rm", name)
                time.sleep(0.01)

        for round_ in range(3):
            stop.clear()
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            time.sleep(2 + rng.random() * 3)
            d.kill9()
            stop.set()
            for t in threads:
                t.join(90)
            assert not any(t.is_alive() for t in threads), "a client call hung"
            d.start()
            time.sleep(1)
            # what the clients left (they were cut off): removable, then nothing remains
            check_invariants(d)
            ids = d.out("ps", "-aq").split()
            if ids:
                d.docker("rm", "-f", *ids, timeout=120)
            check_invariants(d)
            assert d.out("ps", "-aq") == ""
        assert not timeouts, timeouts


# ---- the supervisor ------------------------------------------------------------------------
LOGGER = "i=0; while true; do i=$((i+1)); echo seq $i; usleep 5000; done"


def _seqs(d: Daemon, name: str) -> list[int]:
    return [int(line.split()[1]) for line in d.out("logs", name).splitlines() if line.startswith("seq ")]


def test_kill9_of_the_supervisor_with_running_logging_and_exiting_containers(fresh_daemon):
    d = fresh_daemon
    for i in range(10):
        d.docker("run", "-d", "--name", f"log{i}", "busybox", "sh", "-c", LOGGER)
    for i in range(3):
        d.docker("run", "-d", "--name", f"exits{i}", "busybox", "sh", "-c", "sleep 3; exit 7")
    d.docker("run", "-d", "--name", "idle", "busybox", *TRAP)
    time.sleep(1)
    old = d.supervisor_pid()
    os.kill(old, signal.SIGKILL)
    time.sleep(1)
    # the daemon notices, starts a new supervisor, which adopts them all
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and d.supervisor_pid() in (None, old):
        time.sleep(0.1)
    assert d.supervisor_pid() not in (None, old)
    time.sleep(4)   # the exiting ones end under the new supervisor
    states = check_invariants(d)
    for i in range(10):
        assert states[f"log{i}"] == "running"
    for i in range(3):
        assert states[f"exits{i}"] == "exited", states   # their exits were seen
        # with their true code (the holder, their parent now, reaped them)
        assert d.out("inspect", "-f", "{{.State.ExitCode}}", f"exits{i}") == "7"
    t0 = time.monotonic()
    r = subprocess.run([DOCKER, "wait", "exits0"], env=d.env, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and time.monotonic() - t0 < 5
    # no line written by a container is missing, and output keeps flowing
    for i in range(10):
        seqs = _seqs(d, f"log{i}")
        assert seqs == list(range(1, len(seqs) + 1)), f"log{i}: lines missing"
        assert len(seqs) > 600   # ~200/s for > 5 s, across the kill
    # stop, kill and rm work and return within their bounds
    t0 = time.monotonic()
    d.docker("stop", "-t", "3", "idle", timeout=30)
    assert time.monotonic() - t0 < 8
    d.docker("kill", "log0", timeout=30)
    assert json.loads(d.out("inspect", "log0"))[0]["State"]["Status"] == "exited"
    t0 = time.monotonic()
    d.docker("rm", "-f", *[f"log{i}" for i in range(1, 10)], timeout=60)
    assert time.monotonic() - t0 < 10
    check_invariants(d)
    # a daemon restart keeps it all consistent
    d.stop()
    d.start()
    check_invariants(d)


def test_kill9_of_the_supervisor_then_of_the_daemon(fresh_daemon):
    """Both die; the containers keep running and logging; the next daemon's supervisor
    adopts them with no line lost."""
    d = fresh_daemon
    d.docker("run", "-d", "--name", "lg", "busybox", "sh", "-c", LOGGER)
    time.sleep(0.5)
    d.kill9()
    os.kill(d.supervisor_pid(), signal.SIGKILL)
    time.sleep(1)   # it writes into its FIFO meanwhile (up to the kernel's buffer)
    d.start()
    time.sleep(1)
    states = check_invariants(d)
    assert states["lg"] == "running"
    seqs = _seqs(d, "lg")
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) > 300


# ---- a full disk -----------------------------------------------------------------------------
def _fill(path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_full_disk_fails_fast_frees_on_removal_and_recovers_without_a_restart(tmp_path):
    """A 96 MB tmpfs data root filled to the last byte: every operation fails fast with
    "no space left on device", removal frees space, and once space is back everything
    works again with the same daemon."""
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=0700", "tmpfs", str(data)],
                   check=True)
    try:
        with running(tmp_path) as d:
            d.docker("run", "-d", "--name", "keep", "busybox", "sh", "-c",
                     "while true; do echo line; usleep 20000; done")
            d.docker("create", "--name", "stopped", "busybox", "true")
            filler = data / "filler"
            _fill(filler)
            t0 = time.monotonic()
            for args in (["run", "--rm", "busybox", "true"], ["create", "busybox", "true"],
                         ["start", "stopped"], ["commit", "keep", "full:img"]):
                r = d.docker(*args, check=False, timeout=30)
                assert r.returncode != 0, (args, r.stdout)
                assert "no space left on device" in r.stderr.lower(), (args, r.stderr)
                assert "internal error" not in r.stderr, (args, r.stderr)
            assert time.monotonic() - t0 < 30
            r = d.docker("import", "-", "full:imp", input=b"\0" * 10240, check=False)
            assert r.returncode != 0
            # nothing half-made: no new container, no mounted rootfs for "stopped"
            check_invariants(d)
            assert sorted(d.out("ps", "-a", "--format", "{{.Names}}").split()) == ["keep", "stopped"]
            ingest = data / "content" / "ingest"
            if ingest.exists():
                assert [p for p in ingest.iterdir() if not any(p.iterdir())] == []
            # removal works on the full disk and frees space
            free_before = os.statvfs(data).f_bavail
            d.docker("rm", "-f", "keep", timeout=30)
            assert "keep" not in d.out("ps", "-a", "--format", "{{.Names}}").split()
            assert os.statvfs(data).f_bavail > free_before
            # the supervisor did not log a traceback per chunk it could not write
            sup_log = (data / "supervisor" / "supervisor.log").read_text(errors="replace")
            assert sup_log.count("Traceback") == 0, sup_log[-3000:]
            # space back: everything works again without a restart
            filler.unlink()
            for _ in range(3):
                r = d.docker("run", "--rm", "busybox", "echo", "ok")
                assert r.stdout == "ok\n"
            d.docker("start", "stopped")
            d.docker("create", "--name", "again", "busybox", "true")
            d.docker("run", "-d", "--name", "c2", "busybox", "sleep", "100")
            d.docker("commit", "c2", "full:img")
            from acceptance.harness import import_busybox

            import_busybox(d, "full:imp")
            check_invariants(d)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


# ---- clients at shutdown -------------------------------------------------------------------
def test_sigterm_ends_logs_follow_and_attach_at_once(fresh_daemon):
    d = fresh_daemon
    d.docker("run", "-d", "--name", "lg", "busybox", "sh", "-c", LOGGER)
    d.docker("run", "-d", "-t", "--name", "tt", "busybox", "sh", "-c", LOGGER)
    follow = subprocess.Popen([DOCKER, "logs", "-f", "lg"], env=d.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    attach = subprocess.Popen([DOCKER, "attach", "--no-stdin", "lg"], env=d.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    t0 = time.monotonic()
    d.proc.terminate()
    out, err = follow.communicate(timeout=30)
    t_follow = time.monotonic() - t0
    aout, aerr = attach.communicate(timeout=30)
    t_attach = time.monotonic() - t0
    d.proc.wait(30)
    t_daemon = time.monotonic() - t0
    assert "unexpected EOF" not in err, (err, t_follow, t_attach, t_daemon, d.log_text())
    assert follow.returncode == 0, err
    assert "unexpected EOF" not in aerr, (aerr, attach.returncode, t_attach)
    assert t_follow < 2 and t_attach < 2, (t_follow, t_attach)
    assert t_daemon < 5, t_daemon
    # what it followed is whole lines, in order, up to the end
    seqs = [int(x.split()[1]) for x in out.splitlines() if x.startswith("seq ")]
    assert seqs == list(range(1, len(seqs) + 1))
    d.start()
    assert check_invariants(d)["lg"] == "running"
