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


def sweep() -> list[str]:
    removed: list[str] = []
    for table in ("filter", "nat", "raw"):
        out = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            if (line.startswith("-A ") and not re.match(rf"-A {CHAIN}", line)
                    and re.search(rf"-j {CHAIN}\b", line)):
                subprocess.run(["iptables", "-t", table, "-D"] + shlex.split(line)[1:],
                               capture_output=True)
        chains = [ln.split()[1] for ln in out.splitlines() if ln.startswith("-N ")
                  and re.fullmatch(CHAIN + r"(-[A-Z0-9-]+)?", ln.split()[1])]
        for c in chains:
            subprocess.run(["iptables", "-t", table, "-F", c], capture_output=True)
        for c in chains:
            subprocess.run(["iptables", "-t", table, "-X", c], capture_output=True)
            removed.append(f"{table}/{c}")
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    for ln in links.splitlines():
        name = ln.split()[0].split("@")[0]
        if re.fullmatch(BRIDGE, name):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
            removed.append(name)
    return removed
