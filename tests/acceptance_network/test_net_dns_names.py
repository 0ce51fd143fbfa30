"""The embedded DNS's names, side by side with Debian's dockerd 20.10 (in its own netns):
``<name>.<network>`` for container names, network-scoped aliases, short ids and link
aliases (network names with dots too), which parts match case-sensitively (network names
and link aliases) and which do not (container names, aliases, ids), the one network that
answers a name a container has on two, AAAA for IPv4-only names, and what is forwarded.

Queries are sent from the test process over a UDP socket made inside the querying
container's network namespace, so the raw answers (rcode, records) are compared. Both
sides' containers get ``--dns 127.0.0.1``: what is forwarded goes to a closed loopback
port (SERVFAIL or no answer) and never leaves the machine."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess

import pytest

from acceptance_network.util import uid
from dockyard.network import dnsmsg as m
from dockyard.network.netns import run_in_netns

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("network")]


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    return s


def query(pid: str, names: list[tuple[str, int]]) -> list[tuple]:
    """[(rcode, sorted addresses)] from 127.0.0.11 in the netns of ``pid``; ("fwd",) for a
    name that is not the resolver's own (it went upstream: SERVFAIL, REFUSED or silence)."""
    s = run_in_netns(f"/proc/{pid}/ns/net", _udp)
    out = []
    try:
        for i, (name, qtype) in enumerate(names):
            qid = 0x2000 + i
            s.sendto(m.build_query(name, qtype, qid=qid), ("127.0.0.11", 53))
            try:
                while True:
                    data, _ = s.recvfrom(4096)
                    if int.from_bytes(data[:2], "big") == qid:
                        break
            except socket.timeout:
                out.append(("fwd",))
                continue
            rcode, ans = m.parse_answers(data)
            if rcode in (m.RCODE_SERVFAIL, m.RCODE_REFUSED):
                out.append(("fwd",))
                continue
            out.append((rcode, sorted(str(ipaddress.ip_address(r)) if t != m.TYPE_PTR
                                      else _ptr_names(data) for t, r in ans)))
    finally:
        s.close()
    return out


def _ptr_names(data: bytes) -> str:
    """The names of a response's PTR records (compression pointers followed)."""
    off = 12
    _, off = m._read_name(data, off)
    off += 4
    names = []
    for _ in range(int.from_bytes(data[6:8], "big")):
        _, off = m._read_name(data, off)
        rtype, rdlen = int.from_bytes(data[off:off + 2], "big"), \
            int.from_bytes(data[off + 8:off + 10], "big")
        if rtype == m.TYPE_PTR:
            names.append(m._read_name(data, off + 10)[0])
        off += 10 + rdlen
    return ",".join(names)


def scenario(run, tag: str) -> list:
    """The same commands on one daemon; the answers with addresses replaced by which
    container and network they belong to, and ids by their role."""
    net, dotted = f"Dn{tag}", f"o.x{tag}"   # a capital in one name, a dot in the other
    web, cli = f"Web{tag}", f"cli{tag}"
    run("network", "create", net)
    run("network", "create", dotted)
    try:
        # the first network of each container is the dotted one (connect order is not
        # what picks the network that answers)
        wid = run("run", "-d", "--name", web, "--network", dotted, "--network-alias", "Oth",
                  "busybox", "sleep", "300")
        run("network", "connect", "--alias", "Srv", net, web)
        run("run", "-d", "--name", cli, "--network", dotted, "--dns", "127.0.0.1",
            "busybox", "sleep", "300")
        run("network", "connect", "--link", f"{web}:LinkA", net, cli)
        sym = {}
        for c in (web, cli):
            for n in (net, dotted):
                ip = run("inspect", "-f",
                         f'{{{{(index .NetworkSettings.Networks "{n}").IPAddress}}}}', c)
                sym[ip] = f"{c[:3]}@{n[:2]}"
        pid = run("inspect", "-f", "{{.State.Pid}}", cli)
        short = wid[:12]
        asked = [
            web, web.lower(), web.upper(), "Srv", "srv", "SRV", "Oth", "oth",
            short, short.upper(),
            f"{web}.{net}", f"{web.lower()}.{net}", f"{web}.{net.lower()}", f"{web}.{net}.",
            f"srv.{net}", f"Srv.{net.upper()}", f"{short}.{net}", f"{cli}.{net}",
            f"{web}.{dotted}", f"Oth.{dotted}", f"oth.{dotted}", f"srv.{dotted}",
            f"{web}.o", f"{web}.nonet", f"x.{web}.{net}", f"{web}.{net}.{dotted}",
            "LinkA", "linka", "LINKA", f"LinkA.{net}", f"linka.{net}", f"LinkA.{dotted}",
            f"LinkA.{net.lower()}",
        ]
        qs = [(n, m.TYPE_A) for n in asked] + [(n, m.TYPE_AAAA) for n in
                                               (web, f"{web}.{net}", "LinkA", "nothere")]
        # other types of a name that is ours (15 MX, 16 TXT, 33 SRV, 255 ANY)
        qs += [(web, 15), (web, 16), (web, 33), (web, 255), (f"{web}.{net}", 15)]
        # reverse lookups: the name on that network, as the container's name has it
        qs += [(ipaddress.ip_address(ip).reverse_pointer, m.TYPE_PTR) for ip in sym]
        got = query(pid, qs)

        def role(text: str) -> str:
            text = sym.get(text, text)
            return re.sub(short, "ID", re.sub(tag, "", text, flags=re.I), flags=re.I)

        def asked_as(n: str, t: int) -> str:
            if t == m.TYPE_PTR:   # d.c.b.a.in-addr.arpa -> the address's role
                return "PTR " + sym[".".join(reversed(n.split(".")[:4]))]
            return role(n)

        return [(asked_as(n, t), t, r if r == ("fwd",) else (r[0], [role(a) for a in r[1]]))
                for (n, t), r in zip(qs, got)]
    finally:
        run("rm", "-f", web, cli, check=False)
        run("network", "rm", net, dotted, check=False)


def test_dns_names_beside_dockerd(ndaemon, tmp_path):
    from helpers.dockerd import dockerd_available, running_dockerd
    from helpers.rootfs import build_busybox_rootfs

    if not dockerd_available():
        pytest.skip("dockerd not installed")
    root = tmp_path / "bb"
    build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                         check=True).stdout
    tag = uid("")
    with running_dockerd(tmp_path / "dkd") as theirs:
        theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)

        def ours(*args, check=True):
            return ndaemon.out(*args, check=check)

        def dockerd(*args, check=True):
            return theirs.docker(*args, check=check, text=True).stdout.strip()

        seen = {"ours": scenario(ours, tag), "dockerd": scenario(dockerd, tag)}
    assert len(seen["ours"]) == len(seen["dockerd"])
    diffs = [(a, b) for a, b in zip(seen["ours"], seen["dockerd"]) if a != b]
    assert not diffs, "ours, dockerd's:\n" + "\n".join(map(str, diffs))
    by_name = {(n, t): r for n, t, r in seen["ours"]}
    # what the comparison covers, spelled out
    assert by_name[("Web.Dn", m.TYPE_A)] == (0, ["Web@Dn"])
    assert by_name[("Web", m.TYPE_A)] == (0, ["Web@Dn"])    # one network answers: Dn < o.x
    assert by_name[("Web.dn", m.TYPE_A)] == ("fwd",)        # the network part: exact case
    assert by_name[("linka", m.TYPE_A)] == ("fwd",)         # a link alias: exact case
    assert by_name[("WEB", m.TYPE_A)] == (0, ["Web@Dn"])    # names: any case
    assert by_name[("Web.o.x", m.TYPE_A)] == (0, ["Web@o."])
    assert by_name[("Web", m.TYPE_AAAA)] == (0, [])


def links_scenario(run, tag: str) -> list:
    """/etc/hosts and the link variables of a container on the default bridge with
    --add-host entries around a --link whose alias has capitals; addresses and ids replaced
    by their roles."""
    web = f"Web{tag}"
    wid = run("run", "-d", "--name", web, "busybox", "sleep", "300")
    try:
        cid = run("create", "--add-host", "hx:192.0.2.10", "--link", f"{web}:MyAlias",
                  "--add-host", "hy:192.0.2.11", "busybox", "sh", "-c",
                  "cat /etc/hosts; echo; env | cut -d= -f1 | sort")
        run("start", cid)
        run("wait", cid)
        out = run("logs", cid)
        wip = run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", web)
        # its own line (it has exited: inspect no longer shows its address)
        cip = next(ln.split("\t")[0] for ln in out.splitlines()
                   if ln.endswith(f"\t{cid[:12]}"))
        run("rm", cid)
        for real, role in ((wip, "WEBIP"), (cip, "MYIP"), (wid[:12], "WEBID"),
                           (cid[:12], "MYID"), (tag, "")):
            out = out.replace(real, role)
        return out.splitlines()
    finally:
        run("rm", "-f", web, check=False)


def test_link_hosts_lines_beside_dockerd(ndaemon, tmp_path):
    """On the default bridge: --add-host lines, then the links' (alias with its case,
    id, name), then the container's own line, as dockerd 20.10 writes them; the
    variables' names are the alias in capitals."""
    from helpers.dockerd import dockerd_available, running_dockerd
    from helpers.rootfs import build_busybox_rootfs

    tag = uid("")
    mine = links_scenario(lambda *a, check=True: ndaemon.out(*a, check=check), tag)
    assert mine[6:10] == ["192.0.2.10\thx", "192.0.2.11\thy", "WEBIP\tMyAlias WEBID Web",
                          "MYIP\tMYID"], mine
    assert "MYALIAS_NAME" in mine
    if not dockerd_available():
        pytest.skip("dockerd not installed: ours checked alone")
    root = tmp_path / "bb"
    build_busybox_rootfs(root)
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                         check=True).stdout
    # the default bridge (docker0, inside dockerd's own network namespace)
    with running_dockerd(tmp_path / "dkd", extra_args=("--bridge=",)) as theirs:
        theirs.docker("import", "-c", 'CMD ["sh"]', "-", "busybox", input=tar)
        ref = links_scenario(lambda *a, check=True: theirs.docker(*a, check=check, text=True)
                             .stdout.strip(), tag)
    assert mine == ref
