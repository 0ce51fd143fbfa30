"""DNS wire format and the resolver's local answers (sans-IO)."""

from __future__ import annotations

import asyncio

from dockyard.network import dnsmsg as m
from dockyard.network.dns import Resolver

NAMES = {"alpha": ["10.0.0.2"], "web": ["10.0.0.2", "10.0.0.3"]}


def by_family(table):
    """A Lookup over {name: addresses}: the asked type's family, None for an unknown name."""
    def lookup(name, qtype):
        ips = table.get(name.lower())
        if ips is None:
            return None
        return [ip for ip in ips if (":" in ip) == (qtype == m.TYPE_AAAA)]
    return lookup


def resolver(upstreams=()):
    return Resolver(by_family(NAMES), lambda ip: ["alpha.net"] if ip == "10.0.0.2" else None,
                    lambda: list(upstreams))


def test_query_roundtrip_and_case():
    q = m.parse_query(m.build_query("Alpha.", m.TYPE_A, qid=7))
    assert (q.id, q.question.name, q.question.qtype) == (7, "alpha", m.TYPE_A)
    assert q.question.asked == "Alpha"   # the case as sent, for what dockerd matches exactly


def test_lookup_gets_the_name_as_asked_and_the_type():
    seen = []
    r = Resolver(lambda n, t: seen.append((n, t)), lambda ip: None, lambda: [])
    for qtype in (m.TYPE_A, m.TYPE_AAAA, m.TYPE_MX, 16, 33, 255):
        assert r.answer_local(m.build_query("Web.MyNet.", qtype)) is None
    # MX is asked as A (is the name ours?); TXT, SRV and ANY are forwarded unasked
    assert seen == [("Web.MyNet", m.TYPE_A), ("Web.MyNet", m.TYPE_AAAA), ("Web.MyNet", m.TYPE_A)]


def test_other_types_of_our_names():
    r = resolver()
    assert m.parse_answers(r.answer_local(m.build_query("alpha", m.TYPE_MX))) == (0, [])
    for qtype in (16, 33, 255):   # TXT, SRV, ANY: dockerd forwards them
        assert r.answer_local(m.build_query("alpha", qtype)) is None


def test_local_answers():
    r = resolver()
    rcode, ans = m.parse_answers(r.answer_local(m.build_query("web")))
    assert rcode == 0 and [a[1] for a in ans] == [bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])]
    rcode, ans = m.parse_answers(r.answer_local(m.build_query("alpha", m.TYPE_AAAA)))
    assert rcode == 0 and ans == []  # known name, no IPv6: empty NOERROR
    rcode, ans = m.parse_answers(r.answer_local(m.build_query("2.0.0.10.in-addr.arpa", m.TYPE_PTR)))
    assert ans == [(m.TYPE_PTR, m.encode_name("alpha.net"))]
    assert r.answer_local(m.build_query("unknown.example")) is None  # to be forwarded


def test_no_upstream_gives_servfail_and_garbage_formerr():
    r = resolver()
    out = asyncio.run(r.resolve(m.build_query("unknown.example", qid=99)))
    assert m.parse_answers(out)[0] == m.RCODE_SERVFAIL and out[:2] == b"\x00\x63"
    bad = asyncio.run(r.resolve(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab"))
    assert bad[:2] == b"\x00\x01" and bad[3] & 0xF == m.RCODE_FORMERR


def test_compression_pointer_loop_is_rejected():
    data = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"
    try:
        m.parse_query(data)
    except m.FormatError:
        pass
    else:
        raise AssertionError("pointer loop accepted")


def test_big_udp_answers_are_truncated_for_tcp_retry():
    many = {"lots": [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(60)]}
    r = Resolver(by_family(many), lambda ip: None, lambda: [])
    udp = asyncio.run(r.resolve(m.build_query("lots")))
    assert len(udp) <= m.UDP_MAX and udp[2] & 0x02  # TC
    assert m.parse_answers(udp) == (0, [])
    tcp = asyncio.run(r.resolve(m.build_query("lots"), tcp=True))
    assert len(m.parse_answers(tcp)[1]) == 60


def test_aaaa_and_ip6_ptr():
    import ipaddress

    names = {"dual": ["10.0.0.2", "fd00::2"]}
    r = Resolver(by_family(names), lambda ip: ["dual.net"] if ip == "fd00::2" else None,
                 lambda: [])
    rcode, ans = m.parse_answers(r.answer_local(m.build_query("dual", m.TYPE_AAAA)))
    assert rcode == 0 and ans == [(m.TYPE_AAAA, ipaddress.IPv6Address("fd00::2").packed)]
    rcode, ans = m.parse_answers(r.answer_local(m.build_query("dual", m.TYPE_A)))
    assert ans == [(m.TYPE_A, bytes([10, 0, 0, 2]))]
    ptr = ipaddress.IPv6Address("fd00::2").reverse_pointer
    rcode, ans = m.parse_answers(r.answer_local(m.build_query(ptr, m.TYPE_PTR)))
    assert ans == [(m.TYPE_PTR, m.encode_name("dual.net"))]
    assert m.ptr_to_ip("1.2.ip6.arpa") is None
