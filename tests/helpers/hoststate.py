"""The host's network state that tests must leave as they found it.

    before = snapshot()
    ...                         # the test session
    changed = compare(before, snapshot())   # [] when nothing of the host's changed

A snapshot holds the host's interfaces (name, kind, MAC address), addresses, routes (every
table, IPv4 and IPv6) and iptables/ip6tables rules and chains (every table), minus what
our own test daemons make and remove (see OURS): their bridges (d<4 hex>0, d<4 hex>-<n>, the
default daemon's dy*, the CRI tests' dykcri*), container veths, their chains (DY<5 hex>*,
DOCKYARD*, CNI-*) and every rule naming one of those chains or interfaces or carrying our
``dockyard:`` comment. Everything else, the host's docker0 and its DOCKER chains included,
must be exactly as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

OUR_IFACE = re.compile(r"d[0-9a-f]{4}0|d[0-9a-f]{4}-[0-9a-f]+|dy[a-z0-9-]*|veth[0-9a-zA-Z]+")
OUR_CHAIN = r"DY[0-9A-F]{5}[A-Z0-9-]*|DOCKYARD[A-Z0-9-]*|CNI-[A-Za-z0-9_-]+"
_RULE_OURS = re.compile(rf"(?<![\w-])({OUR_CHAIN})(?![\w-])|dockyard:|"
                        rf"(?<![\w-])({OUR_IFACE.pattern})(?![\w.-])|dyk-")


def _ours_iface(name: str) -> bool:
    return bool(OUR_IFACE.fullmatch(name.split("@")[0]))


def _ip_json(*args: str) -> list[dict]:
    r = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return []
    try:
        return json.loads(r.stdout or "[]")
    except ValueError:
        return []


def _interfaces() -> set[str]:
    out = set()
    for link in _ip_json("link", "show"):
        name = link.get("ifname", "")
        if _ours_iface(name):
            continue
        kind = (link.get("linkinfo") or {}).get("info_kind", link.get("link_type", ""))
        out.add(f"{name} {kind} {link.get('address', '')}")
    return out


def _addresses() -> set[str]:
    out = set()
    for link in _ip_json("addr", "show"):
        name = link.get("ifname", "")
        if _ours_iface(name):
            continue
        for a in link.get("addr_info") or []:
            out.add(f"{name} {a.get('family')} {a.get('local')}/{a.get('prefixlen')}")
    return out


def _routes() -> set[str]:
    out = set()
    for fam in ("-4", "-6"):
        for r in _ip_json(fam, "route", "show", "table", "all"):
            dev = r.get("dev", "")
            if dev and _ours_iface(dev):
                continue
            keys = ("type", "dst", "gateway", "dev", "table", "protocol", "scope", "prefsrc",
                    "metric")
            out.add(fam + " " + " ".join(f"{k}={r[k]}" for k in keys if r.get(k) is not None))
    return out


def _rules() -> set[str]:
    out = set()
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "raw", "mangle"):
            r = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True,
                               timeout=30)
            if r.returncode != 0:
                continue
            for line in r.stdout.splitlines():
                if _RULE_OURS.search(line):
                    continue
                out.add(f"{tool} {table} {line}")
    return out


def snapshot() -> dict[str, set[str]]:
    return {"interfaces": _interfaces(), "addresses": _addresses(), "routes": _routes(),
            "rules": _rules()}


def compare(before: dict[str, set[str]], after: dict[str, set[str]]) -> list[str]:
    """Human-readable differences ("interfaces: gone: docker0 bridge 02:42:..."), [] if none."""
    out = []
    for key in before:
        gone = sorted(before[key] - after.get(key, set()))
        new = sorted(after.get(key, set()) - before[key])
        out += [f"{key}: gone: {x}" for x in gone]
        out += [f"{key}: new: {x}" for x in new]
    return out
