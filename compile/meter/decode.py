"""One packet's flow key and sizes, decoded the way YAF's decoder does (Python fallback).

Ethernet with any number of 802.1Q tags (0x8100; the innermost VLAN id, 12 bits, joins
the key; like YAF, no other tag type is unwrapped), then IPv4 or IPv6 (IPv6 hop-by-hop,
routing and destination options headers skipped), then TCP, UDP, ICMP/ICMPv6 (type and
code in the destination port, source port 0) or any other protocol with ports 0. The
capture length is first cut to the IP total length, so Ethernet padding never counts.
``datalen`` is YAF's payload: IP total length minus the IP headers and the transport
header.

A packet that cannot be decoded gives one of ``DROP_REASONS`` (its index) instead; the
C decoder in ``_meter_decode.c`` uses the same numbering. IPv4 fragments are decoded for
reassembly (``fragments.py``); IPv6 fragments are skipped: the YAF decoder's published
source marks every IPv6 fragment as followed by more, so YAF never completes one either.
"""

import struct

#: Why a packet was skipped; index 0 is "metered". Same order as the C decoder's codes.
DROP_REASONS = (
    "metered",
    "truncated_l2",
    "truncated_ip",
    "truncated_transport",
    "malformed_ip",
    "not_ip",
    "ipv6_fragment",
    "unsupported_linktype",
    "ipv6_no_next_header",
)
TRUNCATED_L2, TRUNCATED_IP, TRUNCATED_L4, MALFORMED_IP = 1, 2, 3, 4
NOT_IP, IPV6_FRAGMENT_SKIPPED, UNSUPPORTED_LINKTYPE, NO_NEXT_HEADER = 5, 6, 7, 8

LINKTYPE_ETHERNET = 1
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMP6 = 6, 17, 1, 58
IPV6_EXTENSIONS = (0, 43, 60)
IPV6_FRAGMENT = 44
IPV6_NO_NEXT = 59
V4_MAPPED = bytes(10) + b"\xff\xff"

_U16 = struct.Struct(">H")


def decode(buf, off: int, caplen: int, linktype: int):
    """``(version, proto, sp, dp, vlan, src, dst, iplen, datalen, tcpflags, smac, dmac,
    frag)`` for a meterable packet, else the index of its drop reason. ``frag`` is None,
    or for an IPv4 fragment ``(ipid, offset, more, ip header length, transport header
    length)`` (no transport header is decoded past the first fragment)."""
    if linktype != LINKTYPE_ETHERNET:
        return UNSUPPORTED_LINKTYPE
    if caplen < 14:
        return TRUNCATED_L2
    end = off + caplen
    dmac = int.from_bytes(buf[off : off + 6], "big")
    smac = int.from_bytes(buf[off + 6 : off + 12], "big")
    ethertype = _U16.unpack_from(buf, off + 12)[0]
    pos, vlan = off + 14, 0
    while ethertype == ETHERTYPE_VLAN:
        if pos + 4 > end:
            return TRUNCATED_L2
        vlan = _U16.unpack_from(buf, pos)[0] & 0x0FFF
        ethertype = _U16.unpack_from(buf, pos + 2)[0]
        pos += 4

    ip_start, frag = pos, None
    if ethertype == ETHERTYPE_IPV4:
        if pos + 20 > end:
            return TRUNCATED_IP
        first = buf[pos]
        header = (first & 0x0F) * 4
        if first >> 4 != 4 or header < 20:
            return MALFORMED_IP
        if pos + header > end:
            return TRUNCATED_IP
        iplen, ipid, fragment = struct.unpack_from(">HHH", buf, pos + 2)
        if iplen < header:
            return MALFORMED_IP
        if fragment & 0x3FFF:
            frag = (ipid, (fragment & 0x1FFF) * 8, bool(fragment & 0x2000), header)
        proto = buf[pos + 9]
        src = V4_MAPPED + bytes(buf[pos + 12 : pos + 16])
        dst = V4_MAPPED + bytes(buf[pos + 16 : pos + 20])
        version, end = 4, min(end, pos + iplen)
        pos += header
    elif ethertype == ETHERTYPE_IPV6:
        if pos + 40 > end:
            return TRUNCATED_IP
        if buf[pos] >> 4 != 6:
            return MALFORMED_IP
        iplen = _U16.unpack_from(buf, pos + 4)[0] + 40
        proto = buf[pos + 6]
        src, dst = bytes(buf[pos + 8 : pos + 24]), bytes(buf[pos + 24 : pos + 40])
        version, end = 6, min(end, pos + iplen)
        pos += 40
        while proto in IPV6_EXTENSIONS:
            if pos + 2 > end:
                return TRUNCATED_IP
            length = buf[pos + 1] * 8 + 8
            if pos + length > end:
                return TRUNCATED_IP
            proto = buf[pos]
            pos += length
        if proto == IPV6_FRAGMENT:
            return IPV6_FRAGMENT_SKIPPED
        if proto == IPV6_NO_NEXT:
            return NO_NEXT_HEADER
    else:
        return NOT_IP

    sp = dp = flags = 0
    if frag is not None and frag[1]:
        return (version, proto, 0, 0, vlan, src, dst, iplen, 0, 0, smac, dmac, frag + (0,))
    l4_start = pos
    if proto == PROTO_TCP:
        if pos + 20 > end:
            return TRUNCATED_L4
        header = (buf[pos + 12] >> 4) * 4
        if header < 20:
            return TRUNCATED_L4
        if pos + header > end:
            return TRUNCATED_L4
        sp, dp = struct.unpack_from(">HH", buf, pos)
        flags = buf[pos + 13]
        pos += header
    elif proto == PROTO_UDP:
        if pos + 8 > end:
            return TRUNCATED_L4
        sp, dp = struct.unpack_from(">HH", buf, pos)
        pos += 8
    elif proto in (PROTO_ICMP, PROTO_ICMP6):
        if pos + 8 > end:
            return TRUNCATED_L4
        dp = (buf[pos] << 8) | buf[pos + 1]
        pos += 8

    datalen = iplen - (pos - ip_start)
    if frag is not None:
        frag += (pos - l4_start,)
    return (version, proto, sp, dp, vlan, src, dst, iplen, datalen, flags, smac, dmac, frag)
