"""What the CLI loads to start: the heavy stdlib modules stay out of the common paths.

No timing here (that is bench material): the test checks which modules a fresh
interpreter has after importing what `dockyard run` and `dockyard version` import.
"""

from __future__ import annotations

import json
import subprocess
import sys

# each of these cost milliseconds at every start (http.client pulls in all of email)
HEAVY = ["http.client", "email", "ssl", "typing", "dataclasses", "inspect", "urllib.parse",
         "socket", "pathlib", "shutil", "platform", "gettext", "ipaddress", "datetime",
         "importlib.util", "struct", "selectors"]


def _loaded_after(code: str) -> set[str]:
    probe = (f"import sys\n{code}\nimport json\n"
             "print(json.dumps(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                       env={"PYTHONPATH": ":".join(p for p in sys.path if p)}, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


def test_run_path_imports_stay_light():
    mods = _loaded_after(
        "import dockyard.cli.main, dockyard.cli.docker, dockyard.cli.cmd_run, "
        "dockyard.cli.runopts, dockyard.cli.parser, dockyard.client, dockyard.cli.streams, "
        "dockyard.streamframes\n"
        "from dockyard.cli.cmd_run import create_flags_parser\n"
        "from dockyard.cli.runopts import build_create, split_interspersed\n"
        "p = create_flags_parser('run', True)\n"
        "flags, pos = split_interspersed(p, ['--rm', '-e', 'A=1', 'busybox', 'true'])\n"
        "o = p.parse(flags)\n"
        "build_create(p, o, 'busybox', ['true'], (0, 0))\n"
        "from dockyard.client import Client\n"
        "Client('unix:///nonexistent.sock', env={})\n")
    assert "dockyard.client.transport" in mods and "argparse" in mods
    assert sorted(mods.intersection(HEAVY)) == []


def test_version_path_imports_stay_light():
    mods = _loaded_after("import dockyard.cli.docker, dockyard.cli.cmd_system, "
                         "dockyard.client")
    assert sorted(mods.intersection(set(HEAVY) - {"datetime"})) == []


def test_an_unusable_host_is_a_clear_error():
    for host, why in (("tcp://h:abc", "invalid port"), ("ftp://x", "unsupported protocol"),
                      ("tcp://[::1", "invalid IPv6")):
        r = subprocess.run([sys.executable, "-m", "dockyard", "-H", host, "ps"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith("Failed to initialize: unable to resolve docker endpoint")
        assert why in r.stderr
