"""Every command README.md shows in a ```sh block is accounted for: run here against a
private daemon (networking on) and registry, with the README's addresses and paths replaced
by private ones, or listed in NOT_RUN with the reason and the test that covers it instead.
A command added to README.md fails this test until it is one or the other."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acceptance.harness import running

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"

# command (as README writes it, comment stripped) -> why it is not run here
NOT_RUN = {
    "./scripts/demo": "installs into /opt/dockyard and starts the system daemon "
                      "(scripts/install: tests/test_install.py)",
    "./scripts/test": "the test suite itself",
    "dockyard daemon": "the system daemon on /run/dockyard.sock and /var/lib/dockyard "
                       "(every test daemon starts the same command with a private data root)",
    "dockyard daemon -H unix:///run/dockyard.sock -H tcp://0.0.0.0:2376 --tlsverify --tlscacert "
    "ca.pem --tlscert cert.pem --tlskey key.pem": "mutual TLS: tests/daemon/test_daemon_framework.py",
    "dockyard daemon --add-runtime runc=/usr/sbin/runc": "tests/containers (runtimes)",
    "docker run --rm -it busybox sh": "needs a terminal: tests/cli/test_cli_tty.py",
    "dockyard exec -it web sh": "needs a terminal: tests/cli/test_cli_tty.py",
    "dockyard ui": "tests/ui (browser tests)",
    "dockyard ui -H unix:///run/dockyard.sock": "tests/ui",
    "dockyard ui --addr 0.0.0.0:9797 --tls-cert cert.pem --tls-key key.pem [--htpasswd FILE]":
        "tests/ui",
    "dockyard registry --addr 0.0.0.0:5000 --root DIR --htpasswd htpasswd --auth token "
    "--tls-cert cert.pem --tls-key key.pem": "tests/registry (token auth over TLS)",
    "mkdir -p bundle/rootfs": "the runtime's walk-through: tests/runtime",
    "cd bundle": "tests/runtime",
    "dockyard-runc spec": "tests/runtime/test_cli.py",
    "dockyard-runc run mycontainer": "needs a terminal (spec's default): tests/runtime",
    "dockyard-runc create --bundle . c1": "tests/runtime",
    "dockyard-runc start c1": "tests/runtime",
    "dockyard-runc state c1": "tests/runtime",
    "dockyard-runc list": "tests/runtime",
    "dockyard-runc exec c1 ps": "tests/runtime",
    "dockyard-runc kill c1 KILL": "tests/runtime",
    "dockyard-runc delete c1": "tests/runtime",
    "dockerd --add-runtime dockyard=$(command -v dockyard-runc)": "tests/runtime/test_dockerd.py",
}


def readme_commands() -> list[str]:
    out, block, inside = [], [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if inside:
                text = "\n".join(block).replace("\\\n", " ")
                for ln in text.splitlines():
                    ln = re.sub(r"\s+#\s.*$", "", ln).strip()
                    for cmd in re.split(r"\s*(?:;|&&)\s*", ln):
                        if cmd:
                            out.append(re.sub(r"\s+", " ", cmd))
                block = []
            inside = line.strip() == "```sh" if not inside else False
            continue
        if inside:
            block.append(line)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_commands(tmp_path):
    cmds = readme_commands()
    assert "dockyard network create mynet" in cmds
    with running(tmp_path / "d", network=True) as d:
        work = tmp_path / "work"
        (work / "site").mkdir(parents=True)
        (work / "site" / "index.html").write_text("hello from the README\n")
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "dockyard").write_text(f'#!/bin/sh\nexec {sys.executable} -m dockyard "$@"\n')
        (bindir / "dockyard").chmod(0o755)
        reg_port, web_port = _free_port(), _free_port()
        subst = {"unix:///run/dockyard.sock": d.host, "127.0.0.1:5000": f"127.0.0.1:{reg_port}",
                 "127.0.0.1:8080": f"127.0.0.1:{web_port}",
                 "/var/lib/dockyard-registry": str(tmp_path / "registry"),
                 "--root DIR": f"--root {tmp_path / 'registry'}"}
        env = {**d.env, "PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
        shell_state = ""    # export/alias lines, kept for the commands after them
        registry = None
        ran, stops = [], []

        def sh(cmd: str, timeout: float = 120, input: str | None = None):
            return subprocess.run(["bash", "-O", "expand_aliases", "-c", shell_state + cmd],
                                  cwd=work, env=env, capture_output=True, text=True,
                                  timeout=timeout, input=input)

        try:
            for readme_cmd in cmds:
                if readme_cmd in NOT_RUN:
                    continue
                cmd = readme_cmd
                for a, b in subst.items():
                    cmd = cmd.replace(a, b)
                if cmd.startswith("dockyard daemon stop"):            # at the end, below
                    stops.append(readme_cmd)
                    continue
                if cmd.startswith(("export ", "alias ")):
                    shell_state += cmd + "\n"
                    ran.append(readme_cmd)
                    continue
                if cmd.startswith("dockyard registry --addr"):       # a server: start it
                    registry = subprocess.Popen(["bash", "-c", "exec " + cmd], cwd=work, env=env,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    deadline = time.monotonic() + 30
                    while True:
                        try:
                            socket.create_connection(("127.0.0.1", reg_port), 1).close()
                            break
                        except OSError:
                            assert registry.poll() is None and time.monotonic() < deadline
                            time.sleep(0.1)
                    ran.append(readme_cmd)
                    continue
                if cmd.startswith("dockyard push "):
                    ref = cmd.split()[2]
                    assert sh(f"dockyard tag busybox {ref}").returncode == 0
                if "logs -f" in cmd:                                   # follows until stopped
                    try:
                        sh(cmd, timeout=3)
                    except subprocess.TimeoutExpired:
                        pass
                    ran.append(readme_cmd)
                    continue
                r = sh(cmd, input="secret\nsecret\n" if "htpasswd" in cmd else None)
                assert r.returncode == 0, (readme_cmd, cmd, r.stdout, r.stderr, d.log_text())
                ran.append(readme_cmd)
                if cmd.startswith("dockyard cp web:/etc/hostname"):
                    cid = sh("dockyard inspect -f '{{.Config.Hostname}}' web").stdout.strip()
                    assert (work / "hostname").read_text().strip() == cid
                if cmd.startswith("dockyard cp ./site"):
                    assert sh("dockyard exec web cat /www/index.html").stdout == \
                        "hello from the README\n"
                if cmd.startswith("dockyard run -d --name web"):
                    time.sleep(0.5)
                    page = subprocess.run(["busybox", "wget", "-q", "-O-",
                                           f"http://127.0.0.1:{web_port}/"],
                                          capture_output=True, timeout=20)
                    assert page.returncode in (0, 1), page   # httpd answers (404 without a page)
                if "htpasswd alice" in cmd:
                    assert (work / "htpasswd").read_text().startswith("alice:$2")
            # the README's stops, aimed at this test's daemon: the daemon alone (the container
            # keeps running: a restarted daemon finds it), then everything
            assert stops == ["dockyard daemon stop", "dockyard daemon stop --all"], stops
            r = sh(f"dockyard daemon stop --data-root {d.data}")
            assert r.returncode == 0 and "stopped dockyard daemon" in r.stdout, r.stderr
            d.start()
            assert sh("dockyard inspect -f '{{.State.Running}}' web").stdout == "true\n"
            r = sh(f"dockyard daemon stop --all -t 1 --data-root {d.data} -H {d.host}")
            assert r.returncode == 0, r.stderr
            assert "stopped container" in r.stdout and "stopped dockyard supervisor" in r.stdout
            ran += stops
        finally:
            if registry is not None:
                registry.terminate()
                registry.wait(10)
        assert sorted(set(ran) | set(NOT_RUN)) == sorted(set(cmds) | set(NOT_RUN)), \
            sorted(set(cmds) - set(ran) - set(NOT_RUN))
        assert not set(NOT_RUN) - set(cmds), ("NOT_RUN names commands README no longer shows",
                                              sorted(set(NOT_RUN) - set(cmds)))
