"""DNS messages, sans-IO: parse a query, build an answer (RFC 1035).

Only what the embedded resolver needs: one question per query, A/AAAA/PTR
answers, and error replies. Anything else is forwarded as raw bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_PTR = 12
TYPE_MX = 15
TYPE_AAAA = 28
CLASS_IN = 1

RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5

UDP_MAX = 512  # without EDNS0

_HDR = struct.Struct("!HHHHHH")


class FormatError(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int
    wire: bytes  # the question section exactly as received
    asked: str = ""  # the name in the case it was sent, no trailing dot


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    question: Question

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)


def _read_name(data: bytes, off: int) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    hops = 0
    while True:
        if off >= len(data):
            raise FormatError("name runs past the message")
        n = data[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(data):
                raise FormatError("truncated pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            hops += 1
            if hops > 32:
                raise FormatError("pointer loop")
            continue
        if n & 0xC0:
            raise FormatError("bad label type")
        off += 1
        if n == 0:
            break
        if off + n > len(data):
            raise FormatError("label runs past the message")
        labels.append(data[off : off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if end is not None else off)


def parse_query(data: bytes) -> Query:
    if len(data) < _HDR.size:
        raise FormatError("short header")
    qid, flags, qd, _an, _ns, _ar = _HDR.unpack_from(data)
    if qd != 1:
        raise FormatError(f"{qd} questions")
    name, off = _read_name(data, _HDR.size)
    if off + 4 > len(data):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, off)
    wire = encode_name(name) + data[off : off + 4]
    asked = name.rstrip(".")
    return Query(qid, flags, Question(asked.lower(), qtype, qclass, wire, asked))


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        b = label.encode("ascii")
        if not 0 < len(b) < 64:
            raise FormatError(f"bad label in {name!r}")
        out.append(len(b))
        out += b
    out.append(0)
    return bytes(out)


def build_response(
    q: Query,
    answers: list[tuple[int, bytes]] = (),  # (rtype, rdata)
    rcode: int = RCODE_NOERROR,
    ttl: int = 600,
) -> bytes:
    flags = 0x8000 | (q.opcode << 11) | (q.flags & 0x0100) | 0x0080 | (rcode & 0xF)
    out = bytearray(_HDR.pack(q.id, flags, 1, len(answers), 0, 0))
    out += q.question.wire
    for rtype, rdata in answers:
        out += struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(rdata))
        out += rdata
    return bytes(out)


def error_response(data: bytes, rcode: int) -> bytes | None:
    """An error reply to a message we could not (or would not) answer."""
    try:
        return build_response(parse_query(data), rcode=rcode)
    except FormatError:
        if len(data) < 4:
            return None
        qid, flags = struct.unpack_from("!HH", data)
        return _HDR.pack(qid, 0x8000 | (flags & 0x7900) | 0x0080 | rcode, 0, 0, 0, 0)


def truncated(response: bytes) -> bytes:
    """The header and question of a response, TC set, no answers: the client
    retries over TCP."""
    qid, flags, qd, _an, _ns, _ar = _HDR.unpack_from(response)
    _, off = _read_name(response, _HDR.size)
    return _HDR.pack(qid, flags | 0x0200, qd, 0, 0, 0) + response[_HDR.size : off + 4]


def a_rdata(ip: str) -> bytes:
    return ipaddress.IPv4Address(ip).packed


def aaaa_rdata(ip: str) -> bytes:
    return ipaddress.IPv6Address(ip).packed


def ptr_rdata(name: str) -> bytes:
    return encode_name(name)


def ptr_to_ip(name: str) -> str | None:
    """'2.0.17.172.in-addr.arpa' -> '172.17.0.2'; a 32-nibble '....ip6.arpa' name ->
    its IPv6 address (compressed)."""
    suffix = ".in-addr.arpa"
    if name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32 or any(len(x) != 1 for x in nibbles):
            return None
        try:
            return str(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
        except ValueError:
            return None
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


def build_query(name: str, qtype: int = TYPE_A, qid: int = 0x1234) -> bytes:
    """A recursive query (for tests and health checks)."""
    return _HDR.pack(qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def parse_answers(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(rcode, [(rtype, rdata)]) of a response; for tests and tooling."""
    qid, flags, qd, an, _ns, _ar = _HDR.unpack_from(data)
    off = _HDR.size
    for _ in range(qd):
        _, off = _read_name(data, off)
        off += 4
    out = []
    for _ in range(an):
        _, off = _read_name(data, off)
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10
        out.append((rtype, data[off : off + rdlen]))
        off += rdlen
    return flags & 0xF, out
