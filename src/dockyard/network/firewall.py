"""Firewall rules for bridge networks (iptables; this host's is iptables-nft).

Design: all rules live in chains of our own, named from an instance prefix
(``DOCKYARD`` by default; tests use ``DYT<random>``), reached from the builtin
chains by exactly one jump rule each. The *complete* content of our chains is
planned from plain data (``plan()`` is pure) and applied in one atomic
``iptables-restore --noflush`` transaction that re-declares (flushes) our
chains and writes every rule. So:

* adding or removing a network or a published port rewrites our chains as a
  whole: what is there afterwards is exactly what the state says, nothing
  half-applied (the kernel applies the transaction or none of it);
* after a daemon restart the same call re-adopts whatever is there;
* ``teardown()`` removes the jumps and our chains when the last bridge network
  goes away. Every rule, including the jumps, carries the comment
  ``dockyard:<prefix>`` so an audit (``our_rules()``) finds only ours.

Chains (P = prefix), mirroring Docker's:

filter  FORWARD -> P-FORWARD: isolation first, then per bridge: established
        traffic in, published ports (P), outbound (not --internal), ICC.
        P-ISOLATION-1 / P-ISOLATION-2: drop traffic between two of our bridges;
        --internal: drop anything to/from outside the subnet.
        P: accept forwarded traffic to a published container port.
nat     PREROUTING (dst local) -> P;  OUTPUT (dst local, loopback included) -> P
        P: DNAT host ip:port -> container ip:port (traffic from our bridges
        returns, reaching published ports through the userland proxy, as
        Docker does with its proxy enabled).
        POSTROUTING -> P-POSTROUTING: MASQUERADE the subnet leaving through
        other interfaces (not --internal); hairpin MASQUERADE per port;
        MASQUERADE 127.0.0.0/8 sources leaving through our bridges.
raw     PREROUTING -> P-RAW: drop packets for 127.0.0.0/8 arriving on our
        bridges, and packets for a loopback-published TCP port arriving on
        anything but lo (as Docker's filterPortMappedOnLoopback).

IPv6 (``Firewall(prefix, v6=True)``, ip6tables): the same filter chains for
the bridges of --ipv6 networks and their IPv6 subnets (isolation, ICC,
outbound, established traffic in) and no nat or raw chains: as dockerd 20.10,
there is no NAT66 and published ports are reached over IPv4 (or the proxy).

Published TCP ports are DNATed for host-local traffic to loopback too (what
Docker does with ``--userland-proxy=false``): the connection goes from the
host's socket straight to the container through the kernel, with no copy in
a proxy. That needs ``route_localnet`` on our bridges (bridge.py sets it),
the MASQUERADE of 127/8 sources above (the container answers the gateway
address, as it does for proxied connections) and the raw DROP rules (so the
sysctl does not open the host's loopback to the containers). The userland
proxy still holds every published port and serves UDP on loopback (a UDP
flow's conntrack entry would outlive a port's re-mapping).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from dockyard.errors import SystemError_

IPTABLES = "iptables"
IPTABLES_RESTORE = "iptables-restore"
IPTABLES_SAVE = "iptables-save"
IP6TABLES = "ip6tables"
IP6TABLES_RESTORE = "ip6tables-restore"
IP6TABLES_SAVE = "ip6tables-save"


class FirewallError(SystemError_):
    pass


@dataclass(frozen=True)
class BridgeFw:
    bridge: str
    subnet: str
    internal: bool = False
    icc: bool = True  # com.docker.network.bridge.enable_icc
    masquerade: bool = True  # com.docker.network.bridge.enable_ip_masquerade


@dataclass(frozen=True)
class PortFw:
    bridge: str
    container_ip: str
    container_port: int
    proto: str
    host_ip: str  # "" or 0.0.0.0 for all
    host_port: int


class Chains:
    def __init__(self, prefix: str, v6: bool = False) -> None:
        if not prefix or len(prefix) > 14 or not prefix.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"bad chain prefix {prefix!r}")
        self.prefix = prefix
        self.marker = f"dockyard:{prefix}"
        self.forward = f"{prefix}-FORWARD"
        self.iso1 = f"{prefix}-ISOLATION-1"
        self.iso2 = f"{prefix}-ISOLATION-2"
        self.published = prefix  # filter: accept published ports
        self.nat = prefix  # nat: DNAT
        self.postrouting = f"{prefix}-POSTROUTING"
        self.raw = f"{prefix}-RAW"
        self.v6 = v6

    @property
    def filter_chains(self) -> list[str]:
        return [self.forward, self.iso1, self.iso2, self.published]

    @property
    def nat_chains(self) -> list[str]:
        return [self.nat, self.postrouting]

    @property
    def raw_chains(self) -> list[str]:
        return [self.raw]

    def tables(self) -> dict[str, list[str]]:
        if self.v6:
            return {"filter": self.filter_chains}
        return {"filter": self.filter_chains, "nat": self.nat_chains, "raw": self.raw_chains}

    def jumps(self) -> list[tuple[str, str, list[str]]]:
        """(table, builtin chain, rule args) for the jump rules."""
        c = ["-m", "comment", "--comment", self.marker]
        if self.v6:
            return [("filter", "FORWARD", ["-j", self.forward] + c)]
        return [
            ("filter", "FORWARD", ["-j", self.forward] + c),
            ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", self.nat] + c),
            ("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", self.nat] + c),
            ("nat", "POSTROUTING", ["-j", self.postrouting] + c),
            ("raw", "PREROUTING", ["-j", self.raw] + c),
        ]

    def legacy_jumps(self) -> list[tuple[str, str, list[str]]]:
        """Jumps earlier versions added (removed by teardown and on sync)."""
        if self.v6:
            return []
        c = ["-m", "comment", "--comment", self.marker]
        return [
            ("nat", "OUTPUT", ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL",
                               "-j", self.nat] + c),
        ]


def is_loopback(ip: str) -> bool:
    return ip.startswith("127.")


def plan(ch: Chains, bridges: list[BridgeFw], ports: list[PortFw]) -> dict[str, list[str]]:
    """The complete content of our chains, per table, as iptables-restore lines
    (chain declarations first). Pure."""
    m = f'-m comment --comment "{ch.marker}"'
    f: list[str] = [f":{c} - [0:0]" for c in ch.filter_chains]
    n: list[str] = [f":{c} - [0:0]" for c in ch.nat_chains]
    r: list[str] = [f":{c} - [0:0]" for c in ch.raw_chains]

    f.append(f"-A {ch.forward} -j {ch.iso1} {m}")
    for b in bridges:
        f.append(f"-A {ch.forward} -o {b.bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT {m}")
        f.append(f"-A {ch.forward} -o {b.bridge} -j {ch.published} {m}")
        if not b.internal:
            f.append(f"-A {ch.forward} -i {b.bridge} ! -o {b.bridge} -j ACCEPT {m}")
        verdict = "ACCEPT" if b.icc else "DROP"
        f.append(f"-A {ch.forward} -i {b.bridge} -o {b.bridge} -j {verdict} {m}")
    for b in bridges:
        if b.internal:
            f.append(f"-A {ch.iso1} -i {b.bridge} ! -d {b.subnet} -j DROP {m}")
            f.append(f"-A {ch.iso1} ! -s {b.subnet} -o {b.bridge} -j DROP {m}")
        else:
            f.append(f"-A {ch.iso1} -i {b.bridge} ! -o {b.bridge} -j {ch.iso2} {m}")
    f.append(f"-A {ch.iso1} -j RETURN {m}")
    for b in bridges:
        f.append(f"-A {ch.iso2} -o {b.bridge} -j DROP {m}")
    f.append(f"-A {ch.iso2} -j RETURN {m}")

    if ch.v6:  # filter only: no NAT66, ports published over IPv4
        return {"filter": f}
    for b in bridges:
        n.append(f"-A {ch.nat} -i {b.bridge} -j RETURN {m}")
        if not b.internal and b.masquerade:
            n.append(f"-A {ch.postrouting} -s {b.subnet} ! -o {b.bridge} -j MASQUERADE {m}")
        n.append(f"-A {ch.postrouting} -s 127.0.0.0/8 -o {b.bridge} -j MASQUERADE {m}")
        r.append(f"-A {ch.raw} -d 127.0.0.0/8 -i {b.bridge} -j DROP {m}")
    for p in ports:
        proto = f"-p {p.proto} -m {p.proto}"
        cip = f"{p.container_ip}/32"
        f.append(
            f"-A {ch.published} -d {cip} ! -i {p.bridge} -o {p.bridge} {proto} "
            f"--dport {p.container_port} -j ACCEPT {m}"
        )
        specific = bool(p.host_ip) and p.host_ip != "0.0.0.0"
        if p.proto != "tcp" and specific and is_loopback(p.host_ip):
            dst = None  # UDP on loopback: the userland proxy
        elif p.proto != "tcp" and not specific:
            dst = "! -d 127.0.0.0/8 "
        else:
            dst = f"-d {p.host_ip}/32 " if specific else ""
        if dst is not None:
            n.append(
                f"-A {ch.nat} {dst}! -i {p.bridge} {proto} --dport {p.host_port} "
                f"-j DNAT --to-destination {p.container_ip}:{p.container_port} {m}"
            )
        if p.proto == "tcp" and specific and is_loopback(p.host_ip):
            r.append(f"-A {ch.raw} -d {p.host_ip}/32 ! -i lo {proto} --dport {p.host_port} "
                     f"-j DROP {m}")
        n.append(
            f"-A {ch.postrouting} -s {cip} -d {cip} {proto} --dport {p.container_port} "
            f"-j MASQUERADE {m}"
        )
    return {"filter": f, "nat": n, "raw": r}


def render(tables: dict[str, list[str]]) -> str:
    out = []
    for table, lines in tables.items():
        out.append(f"*{table}")
        out.extend(lines)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _run(args: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(args, input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise FirewallError(
            f"{shlex.join(args)} failed: {(p.stderr or p.stdout).strip()}"
        )
    return p


class Firewall:
    """Applies ``plan()`` for one instance prefix (``v6``: with ip6tables)."""

    def __init__(self, prefix: str = "DOCKYARD", v6: bool = False) -> None:
        self.chains = Chains(prefix, v6)
        self._jumps_ok = False
        self._clean = False  # known to hold nothing of ours
        self.iptables, self.restore, self.save = (
            (IP6TABLES, IP6TABLES_RESTORE, IP6TABLES_SAVE) if v6
            else (IPTABLES, IPTABLES_RESTORE, IPTABLES_SAVE))

    def sync(self, bridges: list[BridgeFw], ports: list[PortFw]) -> None:
        """Make our chains hold exactly what ``bridges``/``ports`` need. With no
        bridge network left, everything of ours is removed."""
        if not bridges:
            if not self._clean:  # once per process, then only after something was applied
                self.teardown()
            return
        self._clean = False
        _run([self.restore, "-w", "--noflush"],
             input=render(plan(self.chains, bridges, ports)))
        if not self._jumps_ok:
            self._ensure_jumps()
            self._jumps_ok = True

    def _ensure_jumps(self) -> None:
        for table, chain, rule in self.chains.legacy_jumps():
            while _run([self.iptables, "-w", "-t", table, "-D", chain] + rule,
                       check=False).returncode == 0:
                pass
        for table, chain, rule in self.chains.jumps():
            if _run([self.iptables, "-w", "-t", table, "-C", chain] + rule,
                    check=False).returncode != 0:
                op = ["-I", chain, "1"] if chain == "FORWARD" else ["-A", chain]
                _run([self.iptables, "-w", "-t", table] + op + rule)

    def teardown(self) -> None:
        """Remove the jumps and our chains (idempotent)."""
        for table, chain, rule in self.chains.jumps() + self.chains.legacy_jumps():
            for _ in range(16):  # duplicates, if anyone added some
                if _run([self.iptables, "-w", "-t", table, "-D", chain] + rule,
                        check=False).returncode:
                    break
        self._jumps_ok = False
        existing = self.existing_chains()
        for table, chains in self.chains.tables().items():
            mine = [c for c in chains if c in existing.get(table, set())]
            if not mine:
                continue
            lines = [f"-F {c}" for c in mine] + [f"-X {c}" for c in mine]
            _run([self.restore, "-w", "--noflush"], input=render({table: lines}))
        self._clean = True

    # -- audit ------------------------------------------------------------
    def _save(self, table: str) -> list[str]:
        return _run([self.save, "-t", table]).stdout.splitlines()

    def existing_chains(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for table, chains in self.chains.tables().items():
            out[table] = {
                l[1:].split()[0] for l in self._save(table) if l.startswith(":")
            } & set(chains)
        return out

    def our_rules(self) -> list[str]:
        """Every rule carrying our marker, as ``table: rule`` lines."""
        out = []
        for table in self.chains.tables():
            for l in self._save(table):
                if l.startswith("-A ") and _has_marker(l, self.chains.marker):
                    out.append(f"{table}: {l}")
        return out


def _has_marker(line: str, marker: str) -> bool:
    try:
        words = shlex.split(line)
    except ValueError:
        return False
    return any(
        words[i] == "--comment" and words[i + 1] == marker for i in range(len(words) - 1)
    )
