"""Remove what test daemons may leave on the host: chains DY<5 hex>*, bridges d<4 hex>0/-*.

Daemons on private data roots use these names only (see DaemonConfig.network_settings).
Run at the end of a test session as a safety net; it reports what it removed.
"""

from __future__ import annotations

import re
import shlex
import subprocess

CHAIN = r"DY[0-9A-F]{5}"
BRIDGE = r"d[0-9a-f]{4}0|d[0-9a-f]{4}-[0-9a-f]+"


def _live_daemons() -> tuple[set[str], set[str]]:
    """Chain and bridge prefixes of the Dockyard daemons running now (another test
    session's, say): theirs are not leftovers."""
    import os

    from dockyard.daemon.config import DaemonConfig

    chains, bridges = set(), set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "daemon" not in argv or "--data-root" not in argv or not any("dockyard" in a for a in argv):
            continue
        cfg = DaemonConfig()
        cfg.data_root = argv[argv.index("--data-root") + 1]
        s = cfg.network_settings()
        if s:
            chains.add(s["prefix"])
            bridges.add(s["bridge_prefix"])
    return chains, bridges


def sweep() -> list[str]:
    removed: list[str] = []
    live_chains, live_bridges = _live_daemons()

    def live(name: str, prefixes: set[str]) -> bool:
        return any(name.startswith(p) for p in prefixes)

    for table in ("filter", "nat", "raw"):
        out = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            jump = re.search(rf"-j ({CHAIN})\b", line)
            if (line.startswith("-A ") and not re.match(rf"-A {CHAIN}", line)
                    and jump and not live(jump.group(1), live_chains)):
                subprocess.run(["iptables", "-t", table, "-D"] + shlex.split(line)[1:],
                               capture_output=True)
        chains = [ln.split()[1] for ln in out.splitlines() if ln.startswith("-N ")
                  and re.fullmatch(CHAIN + r"(-[A-Z0-9-]+)?", ln.split()[1])
                  and not live(ln.split()[1], live_chains)]
        for c in chains:
            subprocess.run(["iptables", "-t", table, "-F", c], capture_output=True)
        for c in chains:
            subprocess.run(["iptables", "-t", table, "-X", c], capture_output=True)
            removed.append(f"{table}/{c}")
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    for ln in links.splitlines():
        name = ln.split()[0].split("@")[0]
        if re.fullmatch(BRIDGE, name) and not live(name, live_bridges):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
            removed.append(name)
    return removed
