"""/etc/hosts, /etc/resolv.conf, /etc/hostname as Docker writes them (pure)."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidParameter
from dockyard.network.files import hostname_file, hosts_file, parse_resolv_conf, resolv_conf

HOST = parse_resolv_conf(
    "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example lab\noptions edns0 trust-ad\n"
)


def test_default_bridge_drops_loopback_servers():
    r = resolv_conf(HOST, "default")
    lines = [l for l in r.text.splitlines() if l and not l.startswith("#")]
    assert lines == ["nameserver 10.0.0.2", "search corp.example lab", "options edns0 trust-ad"]


def test_default_bridge_falls_back_to_google_only_when_nothing_is_left():
    only_loopback = parse_resolv_conf("nameserver 127.0.0.53\n")
    r = resolv_conf(only_loopback, "default")
    assert [l for l in r.text.splitlines() if l.startswith("nameserver")] == [
        "nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    assert "8.8.8.8" not in resolv_conf(HOST, "default").text


def test_user_network_uses_embedded_dns():
    r = resolv_conf(HOST, "user")
    lines = [l for l in r.text.splitlines() if l and not l.startswith("#")]
    assert lines == ["nameserver 127.0.0.11", "search corp.example lab", "options edns0 trust-ad ndots:0"]
    assert r.upstreams == ["127.0.0.53", "10.0.0.2"]  # forwarded from the host namespace
    r = resolv_conf(HOST, "user", dns=["1.1.1.1"], dns_search=["x.test"], dns_options=["ndots:2"])
    lines = [l for l in r.text.splitlines() if l and not l.startswith("#")]
    assert lines == ["nameserver 127.0.0.11", "search x.test", "options ndots:2"]
    assert r.upstreams == ["1.1.1.1"]


def test_dns_flags_override_on_default_bridge():
    r = resolv_conf(HOST, "default", dns=["9.9.9.9", "1.1.1.1"], dns_search=["."])
    lines = [l for l in r.text.splitlines() if l and not l.startswith("#")]
    assert lines == ["nameserver 9.9.9.9", "nameserver 1.1.1.1", "options edns0 trust-ad"]


def test_hosts_file():
    text = hosts_file("abc123def456", ["172.30.0.2"], extra_hosts=["db:10.0.0.5", "gw:host-gateway"],
                      host_gateway="172.30.0.1")
    assert text == (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        "10.0.0.5\tdb\n"
        "172.30.0.1\tgw\n"
        "172.30.0.2\tabc123def456\n"
    )
    assert hosts_file("h", ["10.0.0.9"], domainname="example.org").endswith("10.0.0.9\th.example.org h\n")
    # legacy links: after the --add-host lines, before the container's own (dockerd's order)
    text = hosts_file("h", ["10.0.0.9"], extra_hosts=["db:10.0.0.5"],
                      links=[("10.0.0.7", ["MyAlias", "0123456789ab", "web"])])
    assert text.endswith("10.0.0.5\tdb\n10.0.0.7\tMyAlias 0123456789ab web\n10.0.0.9\th\n")
    assert "\th\n" not in hosts_file("h", [], network_mode="none")
    with pytest.raises(InvalidParameter, match="bad format for add-host"):
        hosts_file("h", [], extra_hosts=["nohost"])
    with pytest.raises(InvalidParameter, match="invalid IP address"):
        hosts_file("h", [], extra_hosts=["x:999.1.1.1"])
    assert hostname_file("abc123def456") == "abc123def456\n"
