"""`docker run -it` in a real terminal (tmux): the seed's demo, resize and detach keys."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest

from acceptance.harness import DOCKER, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def netdaemon(tmp_path_factory):
    with running(tmp_path_factory.mktemp("dkn"), network=True) as d:
        yield d


class Tmux:
    def __init__(self, env: dict) -> None:
        if not shutil.which("tmux"):
            pytest.skip("tmux is not installed")
        self.name = "dy-" + uuid.uuid4().hex[:8]
        self.sock = f"/tmp/{self.name}.tmux"
        envargs = []
        for k in ("DOCKER_HOST", "DOCKER_CONFIG"):
            envargs += ["-e", f"{k}={env[k]}"]
        self.tm("new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", *envargs, "sh")

    def tm(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True,
                              check=True).stdout

    def send(self, *keys: str) -> None:
        self.tm("send-keys", "-t", self.name, *keys)

    def screen(self) -> str:
        return self.tm("capture-pane", "-p", "-t", self.name)

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(netdaemon):
    t = Tmux(netdaemon.env)
    yield t
    t.close()


def test_seed_demo_run_it(netdaemon, tmux):
    d = netdaemon
    tmux.send(f"{DOCKER} run -it --name demo busybox /bin/sh", "Enter")
    tmux.wait_for("/ #")
    tmux.send("clear; ps", "Enter")
    time.sleep(1)
    screen = tmux.screen()
    procs = [ln.split()[2:] for ln in screen.splitlines()
             if ln.strip() and ln.split()[0].isdigit()]
    # busybox's ash runs ps as a no-exec applet: "{ps} /bin/sh"
    assert len(procs) == 2 and procs[0][-1] == "/bin/sh" and procs[1][0] in ("ps", "{ps}"), screen
    tmux.send("clear; hostname; stty size; ip -4 -o addr", "Enter")
    time.sleep(1)
    screen = tmux.screen()
    cid = json.loads(d.out("inspect", "demo"))[0]["Id"]
    assert cid[:12] in screen
    assert "40 120" in screen  # the client's terminal size reached the pty
    ip = json.loads(d.out("inspect", "demo"))[0]["NetworkSettings"]["IPAddress"]
    assert ip and f"inet {ip}/" in screen, screen
    tmux.send("echo made > /root/note; exit", "Enter")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and json.loads(d.out("inspect", "demo"))[0]["State"]["Running"]:
        time.sleep(0.1)
    status = d.out("ps", "-a", "--filter", "name=demo", "--format", "{{.Status}}")
    assert status.startswith("Exited (0)")
    diff = d.out("diff", "demo").splitlines()
    # (Debian's busybox-static keeps no .ash_history: the file the shell wrote stands in)
    assert "C /root" in diff and "A /root/note" in diff
    d.docker("rm", "demo")


def test_detach_keys_and_reattach(netdaemon, tmux):
    d = netdaemon
    name = "det-" + uuid.uuid4().hex[:6]
    tmux.send(f"{DOCKER} run -it --name {name} busybox /bin/sh; echo detached-rc=$?", "Enter")
    tmux.wait_for("/ #")
    tmux.send("C-p", "C-q")
    tmux.wait_for("detached-rc=0")
    assert json.loads(d.out("inspect", name))[0]["State"]["Running"]
    tmux.send("clear", "Enter")
    tmux.send(f"{DOCKER} attach --detach-keys ctrl-x,x {name}; echo again-rc=$?", "Enter")
    # attached once the container's shell answers an Enter with a fresh prompt
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "/ #" not in tmux.screen():
        tmux.send("Enter")
        time.sleep(0.5)
    tmux.send("echo back-$((40+2))", "Enter")
    tmux.wait_for("back-42")
    tmux.send("C-x", "x")
    tmux.wait_for("again-rc=")  # the CLI says "read escape sequence" and exits 1, as with dockerd
    assert json.loads(d.out("inspect", name))[0]["State"]["Running"]
    # exec -it into it, then the shell exits with a code
    tmux.send("clear", "Enter")
    tmux.send(f"{DOCKER} exec -it {name} sh -c 'stty size; exit 3'; echo rc=$?", "Enter")
    screen = tmux.wait_for("rc=3")
    assert "40 120" in screen
    d.docker("rm", "-f", name)
