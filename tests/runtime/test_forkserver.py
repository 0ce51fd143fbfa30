"""The runtime's fork server: the same commands as `dockyard-runc`, without the interpreter start.

A real server process (started as the supervisor starts it) on a real
SOCK_SEQPACKET socket; requests carry real stdio descriptors.
"""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import tempfile

import pytest

from runtime_helpers import RUNC, reap
from dockyard.runtime.forkserver import decode, encode_request, server_argv


class Server:
    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(server_argv(), pass_fds=(theirs.fileno(),),
                                     env={**os.environ,
                                          "DOCKYARD_FORKSERVER_FD": str(theirs.fileno())})
        theirs.close()
        self.n = 0
        self.ready = False

    def run(self, *args: str, cwd: str = "/", timeout: float = 60) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of `dockyard-runc ARGS` run by a worker."""
        self.n += 1
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
                open(os.devnull) as devnull:
            self.sock.sendmsg([encode_request(self.n, ["dockyard-runc", *args], cwd)],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [devnull.fileno(), out.fileno(), err.fileno()]))])
            self.sock.settimeout(timeout)
            reply = decode(self.sock.recv(65536))
            if reply["id"] == 0:     # the server's one "ready" message
                assert reply == {"id": 0, "ready": True} and not self.ready
                self.ready = True
                reply = decode(self.sock.recv(65536))
            assert reply["id"] == self.n
            out.seek(0)
            err.seek(0)
            return os.waitstatus_to_exitcode(reply["status"]), out.read(), err.read()

    def close(self) -> int:
        self.sock.close()
        return self.proc.wait(timeout=30)


@pytest.fixture
def server():
    s = Server()
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.sock.close()
            try:
                s.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()


def test_answers_like_the_command(server, runc):
    code, out, err = server.run("--version")
    want = subprocess.run([*RUNC, "--version"], capture_output=True, text=True)
    assert (code, out) == (0, want.stdout)
    assert server.ready
    code, out, err = server.run("--root", str(runc.root), "state", "nosuch")
    want = subprocess.run([*RUNC, "--root", str(runc.root), "state", "nosuch"],
                          capture_output=True, text=True)
    assert code == want.returncode != 0
    assert err == want.stderr
    code, out, err = server.run("frobnicate")
    assert code != 0 and "no such command" in err


def test_container_lifecycle_through_the_server(server, runc, busybox_rootfs):
    bundle = runc.bundle(busybox_rootfs, ["sh", "-c", "echo hi from $(hostname); sleep 30"])
    cid = runc.new_id()
    code, out, err = server.run("--root", str(runc.root), "create", "--bundle", str(bundle), cid,
                                cwd=str(bundle))
    assert code == 0, err
    pid = runc.state(cid)["pid"]
    # the worker that created it is gone: init went to the nearest subreaper
    # (this test process), never to the fork server
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid == os.getpid() and ppid != server.proc.pid
    assert server.run("--root", str(runc.root), "start", cid)[0] == 0
    assert runc.state(cid)["status"] == "running"
    code, out, _ = server.run("--root", str(runc.root), "ps", "--format", "json", cid)
    assert code == 0 and pid in json.loads(out)
    assert server.run("--root", str(runc.root), "kill", cid, "KILL")[0] == 0
    assert reap(pid) == -9
    code, _, err = server.run("--root", str(runc.root), "delete", cid)
    assert code == 0, err
    assert not (runc.root / cid).exists()


def test_run_reports_the_containers_exit_code(server, runc, busybox_rootfs):
    bundle = runc.bundle(busybox_rootfs, ["sh", "-c", "echo out; echo err >&2; exit 7"])
    code, out, err = server.run("--root", str(runc.root), "run", "--bundle", str(bundle),
                                runc.new_id())
    assert (code, out, err) == (7, "out\n", "err\n")


def test_end_of_file_stops_the_server_and_garbage_is_ignored(server):
    server.sock.send(b"not json")
    server.sock.send(json.dumps({"no": "id"}).encode())
    assert server.run("--version")[0] == 0
    assert server.close() == 0
