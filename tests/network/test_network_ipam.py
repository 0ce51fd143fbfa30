"""IPAM: pure address management (no kernel)."""

from __future__ import annotations

import json

import pytest

from dockyard.errors import Forbidden, InvalidParameter, Unavailable
from dockyard.network.ipam import IPAM


def test_default_pool_and_gateway():
    ipam = IPAM("172.30.0.0/16", [("172.31.0.0/16", 24)])
    pool = ipam.request_pool("n0", default=True)
    assert str(pool.subnet) == "172.30.0.0/16"
    assert str(pool.gateway) == "172.30.0.1"
    assert ipam.request_address("n0") == "172.30.0.2"
    assert ipam.request_address("n0") == "172.30.0.3"


def test_user_pools_are_split_and_skip_host_routes():
    ipam = IPAM("172.30.0.0/16", [("172.31.0.0/16", 24)])
    a = ipam.request_pool("a", host_routes=["172.31.0.0/24", "0.0.0.0/0"])
    assert str(a.subnet) == "172.31.1.0/24"  # .0/24 is a host route; default route ignored
    b = ipam.request_pool("b", host_routes=["172.31.0.0/24"])
    assert str(b.subnet) == "172.31.2.0/24"
    ipam.release_pool("a")
    c = ipam.request_pool("c", host_routes=[])
    assert str(c.subnet) == "172.31.0.0/24"


def test_pools_exhausted():
    ipam = IPAM("172.30.0.0/16", [("10.9.0.0/23", 24)])
    ipam.request_pool("a")
    ipam.request_pool("b")
    with pytest.raises(Unavailable, match="fully subnetted"):
        ipam.request_pool("c")


def test_overlapping_subnet():
    ipam = IPAM()
    ipam.request_pool("a", subnet="10.50.0.0/16")
    with pytest.raises(Forbidden, match="^Pool overlaps with other one on this address space$"):
        ipam.request_pool("b", subnet="10.50.3.0/24")
    assert "b" not in ipam.pools
    # auto allocation steps around explicit subnets
    ipam2 = IPAM("172.30.0.0/16", [("10.50.0.0/16", 24)])
    ipam2.request_pool("x", subnet="10.50.0.0/24")
    assert str(ipam2.request_pool("y").subnet) == "10.50.1.0/24"


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"subnet": "10.1.2.3/24"}, "Invalid subnet 10.1.2.3/24 : it should be 10.1.2.0/24"),
        ({"subnet": "nonsense"}, "invalid CIDR address: nonsense"),
        ({"subnet": "10.1.0.0/24", "gateway": "10.2.0.1"}, "no matching subnet for gateway 10.2.0.1"),
        ({"subnet": "10.1.0.0/24", "ip_range": "10.1.1.0/25"}, "no matching subnet for range 10.1.1.0/25"),
        ({"gateway": "10.1.0.1"}, "require a subnet"),
    ],
)
def test_bad_pool_requests(kw, msg):
    ipam = IPAM()
    with pytest.raises(InvalidParameter) as e:
        ipam.request_pool("n", **kw)
    assert msg in str(e.value)
    assert ipam.pools == {}


def test_requested_address_outside_and_in_use():
    ipam = IPAM()
    ipam.request_pool("n", subnet="10.60.0.0/24", ip_range="10.60.0.128/25")
    with pytest.raises(InvalidParameter, match=r"^no configured subnet or ip-range contain the IP address 10\.60\.0\.5$"):
        ipam.request_address("n", "10.60.0.5")
    with pytest.raises(InvalidParameter, match="contain the IP address 10.61.0.5"):
        ipam.request_address("n", "10.61.0.5")
    assert ipam.request_address("n", "10.60.0.200") == "10.60.0.200"
    with pytest.raises(Forbidden, match="^Address already in use$"):
        ipam.request_address("n", "10.60.0.200")
    # automatic allocation stays inside the ip-range
    assert ipam.request_address("n") == "10.60.0.128"


def test_gateway_is_never_leased():
    ipam = IPAM()
    ipam.request_pool("n", subnet="10.61.0.0/29", gateway="10.61.0.3")
    got = [ipam.request_address("n") for _ in range(5)]
    assert got == ["10.61.0.1", "10.61.0.2", "10.61.0.4", "10.61.0.5", "10.61.0.6"]
    with pytest.raises(Forbidden):
        ipam.request_address("n", "10.61.0.3")


def test_exhaustion_and_release():
    ipam = IPAM()
    ipam.request_pool("n", subnet="10.62.0.0/30")  # one usable address besides the gateway
    ip = ipam.request_address("n")
    assert ip == "10.62.0.2"
    with pytest.raises(Unavailable, match="no available IPv4 addresses"):
        ipam.request_address("n")
    ipam.release_address("n", ip)
    assert ipam.request_address("n") == "10.62.0.2"


def test_state_roundtrip_as_json():
    ipam = IPAM("172.30.0.0/16", [("172.31.0.0/16", 24)])
    ipam.request_pool("d", default=True)
    ipam.request_pool("u", subnet="10.63.0.0/24", gateway="10.63.0.254", ip_range="10.63.0.0/25")
    ipam.request_address("d")
    ipam.request_address("u", "10.63.0.7")
    again = IPAM.from_dict(json.loads(json.dumps(ipam.to_dict())),
                           "172.30.0.0/16", [("172.31.0.0/16", 24)])
    assert again.to_dict() == ipam.to_dict()
    with pytest.raises(Forbidden):
        again.request_address("u", "10.63.0.7")
    assert again.request_address("d") == "172.30.0.3"


def test_ipv6_pools_beside_ipv4():
    ipam = IPAM("172.30.0.0/16", [("172.31.0.0/16", 24)])
    ipam.request_pool("n", subnet="10.9.0.0/24")
    p6 = ipam.request_pool("n", subnet="fd00:1::/64", v6=True)
    assert str(p6.gateway) == "fd00:1::1"
    assert ipam.request_address("n") == "10.9.0.2"
    assert ipam.request_address("n", v6=True) == "fd00:1::2"
    assert ipam.request_address("n", "fd00:1::10", v6=True) == "fd00:1::10"
    with pytest.raises(Forbidden, match="Address already in use"):
        ipam.request_address("n", "fd00:1::10", v6=True)
    with pytest.raises(InvalidParameter, match="does not belong to any of this network"):
        ipam.request_address("n", "fd00:2::10", v6=True)
    with pytest.raises(InvalidParameter, match="invalid IPv6 address"):
        ipam.request_address("n", "10.9.0.9", v6=True)
    with pytest.raises(Forbidden, match="overlaps"):
        ipam.request_pool("m", subnet="fd00:1::/80", v6=True)
    with pytest.raises(InvalidParameter, match="IPv6 address pool"):
        ipam.request_pool("m", v6=True)  # dockerd 20.10 has no default v6 pools
    # persisted and reloaded, v6 leases included
    again = IPAM.from_dict(json.loads(json.dumps(ipam.to_dict())))
    assert again.request_address("n", v6=True) == "fd00:1::3"
    again.release_address("n", "fd00:1::2")
    assert again.request_address("n", v6=True) == "fd00:1::2"
    again.release_pool("n")
    assert again.pools == {}


def test_ipv6_firewall_plan_is_filter_only():
    """ip6tables: forwarding and isolation chains of our own, no NAT66 (dockerd 20.10)."""
    from dockyard.network.firewall import BridgeFw, Chains, plan

    ch = Chains("DYTEST", v6=True)
    t = plan(ch, [BridgeFw("br-a", "fd00:1::/64"), BridgeFw("br-b", "fd00:2::/64", internal=True)],
             [])
    assert set(t) == {"filter"} and set(ch.tables()) == {"filter"}
    text = "\n".join(t["filter"])
    assert "-A DYTEST-ISOLATION-2 -o br-a -j DROP" in text
    assert "-A DYTEST-ISOLATION-1 -i br-b ! -d fd00:2::/64 -j DROP" in text
    assert [j[:2] for j in ch.jumps()] == [("filter", "FORWARD")]
