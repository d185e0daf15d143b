"""Flow meter rules on synthetic captures: keys, timeouts, TCP ends, statistics, bad input."""

import itertools
import math
import struct

import numpy as np
import pytest

from agent.flows import int_to_mac, pack_address
from compile.meter import meter_pcap, native
from compile.meter.capture import CaptureError

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
S = 1_000_000_000


def eth(frame_l3: bytes, ethertype: int, src=MAC_A, dst=MAC_B, vlans=()) -> bytes:
    head = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
    for vlan in vlans:
        head += struct.pack(">HH", 0x8100, vlan)
    return head + struct.pack(">H", ethertype) + frame_l3


def ipv4(
    src: str, dst: str, proto: int, l4: bytes, options=b"", frag=0, macs=(MAC_A, MAC_B)
) -> bytes:
    ihl = 5 + len(options) // 4
    header = struct.pack(
        ">BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        20 + len(options) + len(l4),
        1,
        frag,
        64,
        proto,
        0,
        pack_address(src)[12:].tobytes(),
        pack_address(dst)[12:].tobytes(),
    )
    return eth(header + options + l4, 0x0800, *macs)


def ipv6(src: str, dst: str, nh: int, l4: bytes, hop_by_hop=False) -> bytes:
    ext = b""
    if hop_by_hop:
        ext, first = bytes([nh, 0]) + bytes(6), 0
    else:
        first = nh
    header = struct.pack(
        ">IHBB16s16s",
        6 << 28,
        len(ext) + len(l4),
        first,
        64,
        pack_address(src).tobytes(),
        pack_address(dst).tobytes(),
    )
    return eth(header + ext + l4, 0x86DD)


def tcp(sp: int, dp: int, flags: int, payload=b"") -> bytes:
    return struct.pack(">HHIIBBHHH", sp, dp, 1, 1, 5 << 4, flags, 1024, 0, 0) + payload


def udp(sp: int, dp: int, payload=b"") -> bytes:
    return struct.pack(">HHHH", sp, dp, 8 + len(payload), 0) + payload


def write_pcap(path, packets, nanos=False, big=False, snaplen=None) -> None:
    """``packets``: (time in ns, Ethernet frame); ``snaplen`` cuts each capture."""
    order = ">" if big else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    with open(path, "wb") as out:
        out.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1))
        for t, frame in packets:
            data = frame[:snaplen] if snaplen else frame
            frac = t % S if nanos else (t % S) // 1000
            out.write(struct.pack(order + "IIII", t // S, frac, len(data), len(frame)))
            out.write(data)


ENGINES = [
    "python",
    pytest.param(
        "native",
        marks=pytest.mark.skipif(not native.available(), reason="compiled meter not built"),
    ),
]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    """Each test runs on both engines."""
    return request.param


def meter(tmp_path, packets, engine, **kw):
    path = tmp_path / "c.pcap"
    write_pcap(path, packets, **{k: kw.pop(k) for k in ("nanos", "big", "snaplen") if k in kw})
    return meter_pcap(path, engine=engine, **kw)


def test_biflow_matching_and_macs(tmp_path, engine):
    """A reply joins its request's flow as the reverse direction; MACs are the first packet's."""
    request = ipv4("10.0.0.1", "8.8.8.8", 17, udp(5000, 53, b"q" * 30))
    reply = ipv4("8.8.8.8", "10.0.0.1", 17, udp(53, 5000, b"r" * 300), macs=(MAC_B, MAC_A))
    flows, counters = meter(tmp_path, [(S, request), (S + 5_000_000, reply)], engine)
    assert len(flows) == 1 and counters["metered"] == 2
    f = flows[0]
    assert (f["packetTotalCount"], f["reversePacketTotalCount"]) == (1, 1)
    assert f["octetTotalCount"] == 20 + 8 + 30 and f["reverseOctetTotalCount"] == 20 + 8 + 300
    assert f["dataByteCount"] == 30 and f["reverseDataByteCount"] == 300
    assert f["smallPacketCount"] == 1 and f["reverseLargePacketCount"] == 1
    assert int_to_mac(f["sourceMacAddress"]) == MAC_A
    assert int_to_mac(f["destinationMacAddress"]) == MAC_B
    assert f["firstEightNonEmptyPacketDirections"] == 0b10
    assert f["flowEndReason"] == 4


def test_ipv6_hop_by_hop_and_vlan_keys(tmp_path, engine):
    """IPv6 extension headers are skipped for the payload; VLANs separate otherwise equal flows."""
    v6 = ipv6("fe80::1", "ff02::fb", 17, udp(5353, 5353, b"m" * 100), hop_by_hop=True)
    base = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"))
    tagged = [eth(base[14:], 0x0800, vlans=(v,)) for v in (10, 20)]
    flows, _ = meter(tmp_path, [(S, v6), (S + 1, tagged[0]), (S + 2, tagged[1])], engine)
    assert len(flows) == 3
    six = flows[flows["ipVersion"] == 6][0]
    assert bytes(six["destinationAddress"]) == pack_address("ff02::fb").tobytes()
    assert six["dataByteCount"] == 100 and six["octetTotalCount"] == 40 + 8 + 8 + 100


def test_icmp_type_code_in_destination_port(tmp_path, engine):
    """ICMP keeps type/code in the destination port, so echo and reply are two flows (as YAF)."""
    echo = ipv4("10.0.0.1", "10.0.0.2", 1, bytes([8, 0]) + bytes(6) + b"p" * 56)
    reply = ipv4("10.0.0.2", "10.0.0.1", 1, bytes([0, 0]) + bytes(6) + b"p" * 56)
    flows, _ = meter(tmp_path, [(S, echo), (S + 1000, reply)], engine)
    assert sorted(flows["destinationTransportPort"].tolist()) == [0, 8 << 8]
    assert (flows["sourceTransportPort"] == 0).all()
    assert (flows["dataByteCount"] == 56).all()


def test_idle_timeout(tmp_path, engine):
    """A packet after more than the idle timeout starts a new flow; the old one ends idle."""
    p = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x" * 10))
    flows, _ = meter(tmp_path, [(S, p), (2 * S, p), (400 * S, p)], engine, idle_timeout=300)
    assert flows["flowEndReason"].tolist() == [1, 4]
    assert flows["packetTotalCount"].tolist() == [2, 1]
    assert flows["flowEndMilliseconds"][0] == 2000


def test_active_timeout_starts_flow_in_packet_direction(tmp_path, engine):
    """Past the active timeout the flow ends (active) and the packet starts a new flow its way."""
    out = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"))
    back = ipv4("10.0.0.2", "10.0.0.1", 17, udp(2, 1, b"y"))
    packets = [(k * 100 * S, back if k % 2 == 0 else out) for k in range(1, 21)]
    flows, _ = meter(tmp_path, packets, engine)
    assert flows["flowEndReason"].tolist() == [2, 4]
    first, second = flows
    assert first["flowEndMilliseconds"] - first["flowStartMilliseconds"] <= 1_800_000
    assert first["packetTotalCount"] + first["reversePacketTotalCount"] == 19
    assert second["sourceTransportPort"] == 2 and second["packetTotalCount"] == 1
    assert second["reversePacketTotalCount"] == 0


def test_tcp_fin_and_rst_end_flows(tmp_path, engine):
    """FIN both ways, each acknowledged, ends a flow; RST too; a later packet starts anew."""
    c, s = ("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1")
    seq = [
        (c, SYN),
        (s, SYN | ACK),
        (c, ACK),
        (c, FIN | ACK),
        (s, FIN | ACK),
        (c, ACK),
        (c, ACK),
        (c, RST),
    ]
    packets = [
        (S + i * 1000, ipv4(*a, 6, tcp(*((40000, 80) if a == c else (80, 40000)), f)))
        for i, (a, f) in enumerate(seq)
    ]
    flows, _ = meter(tmp_path, packets, engine)
    assert flows["flowEndReason"].tolist() == [3, 3]
    assert flows["packetTotalCount"].tolist() == [4, 2]
    assert flows["reversePacketTotalCount"].tolist() == [2, 0]


def _expected_gap_stats(times_ns):
    gaps = [(b - a) // 1_000_000 for a, b in itertools.pairwise(times_ns)]
    average = sum(gaps) // len(gaps)
    kept = gaps[:10]
    return average, math.isqrt(sum((g - average) ** 2 for g in kept) // len(kept))


def test_statistics_by_yaf_definitions(tmp_path, engine):
    """Size classes, truncated millisecond gaps and the std devs over the first ten follow YAF."""
    sizes = [59, 60, 225, 226, 0, 1400, 3, 700, 80, 90, 1000, 5, 17]
    times = [S + i * 1_900_000 + i * i * 7_777_000 for i in range(len(sizes))]
    packets = [
        (t, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"z" * n))) for t, n in zip(times, sizes)
    ]
    flows, _ = meter(tmp_path, packets, engine)
    f = flows[0]
    nonempty = [n for n in sizes if n]
    assert f["smallPacketCount"] == sum(1 for n in nonempty if n < 60)
    assert f["largePacketCount"] == sum(1 for n in nonempty if n > 225)
    assert f["nonEmptyPacketCount"] == len(nonempty)
    assert f["firstNonEmptyPacketSize"] == 59 and f["maxPacketSize"] == 1400
    average, deviation = _expected_gap_stats(times)
    assert f["averageInterarrivalTime"] == average
    assert f["standardDeviationInterarrivalTime"] == deviation
    mean = sum(nonempty) // len(nonempty)
    kept = nonempty[:10]
    assert f["standardDeviationPayloadLength"] == math.isqrt(
        sum((n - mean) ** 2 for n in kept) // len(kept)
    )


def test_no_statistics_without_forward_payload_or_reverse(tmp_path, engine):
    """YAF writes no statistics for a uniflow without payload, so every statistic is 0."""
    syn = ipv4("10.0.0.1", "10.0.0.2", 6, tcp(40000, 80, SYN))
    flows, _ = meter(tmp_path, [(S, syn), (S + 3 * S, syn)], engine)
    assert flows[0]["packetTotalCount"] == 2
    assert flows[0]["averageInterarrivalTime"] == 0


def test_out_of_sequence_packet_skipped(tmp_path, engine):
    """A packet older than the newest seen is counted and skipped, as YAF does."""
    p = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"))
    flows, counters = meter(tmp_path, [(2 * S, p), (S, p), (3 * S, p)], engine)
    assert counters["out_of_sequence"] == 1 and flows["packetTotalCount"].tolist() == [2]


def test_nanosecond_big_endian_pcap(tmp_path, engine):
    """Nanosecond and big-endian pcaps give the same records as the usual format."""
    p = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x" * 70))
    packets = [(S + 123_456_000, p), (S + 987_654_000, p)]
    plain, _ = meter(tmp_path, packets, engine)
    other, _ = meter(tmp_path, packets, engine, nanos=True, big=True)
    gap_ms = (packets[1][0] - packets[0][0]) // 1_000_000
    assert np.array_equal(plain, other) and plain["averageInterarrivalTime"][0] == gap_ms


def test_truncated_and_malformed_packets_counted(tmp_path, engine):
    """Packets cut inside their headers, non-IP and lone fragments are counted, not fatal."""
    good = ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, ACK, b"d" * 100))
    frag = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"f"), frag=0x2000)
    arp = eth(bytes(28), 0x0806)
    bad_ihl = good[:14] + bytes([0x43]) + good[15:]
    packets = [(S + i, p) for i, p in enumerate([good, frag, arp, bad_ihl])]
    _, counters = meter(tmp_path, packets, engine)
    assert counters["metered"] == 1 and counters["fragments"] == 1
    assert counters["fragments_unassembled"] == 1
    assert counters["not_ip"] == 1 and counters["malformed_ip"] == 1
    for snaplen, reason in (
        (10, "truncated_l2"),
        (30, "truncated_ip"),
        (40, "truncated_transport"),
    ):
        flows, counters = meter(tmp_path, [(S, good)], engine, snaplen=snaplen)
        assert counters[reason] == 1 and len(flows) == 0
    flows, _ = meter(tmp_path, [(S, good)], engine, snaplen=54)
    assert flows["dataByteCount"].tolist() == [100]


def test_not_a_capture(tmp_path):
    """A file that is no capture raises CaptureError naming the file."""
    path = tmp_path / "x.pcap"
    path.write_bytes(b"hello, this is not a capture file at all")
    with pytest.raises(CaptureError, match="x.pcap"):
        meter_pcap(path)
    path.write_bytes(b"")
    with pytest.raises(CaptureError, match="too short"):
        meter_pcap(path)


def fragments(src: str, dst: str, datagram: bytes, size: int, ipid: int = 7) -> list[bytes]:
    """An IPv4 UDP datagram (transport header included) cut into ``size``-octet pieces."""
    pieces = []
    for offset in range(0, len(datagram), size):
        more = 0x2000 if offset + size < len(datagram) else 0
        packet = ipv4(src, dst, 17, datagram[offset : offset + size], frag=more | offset // 8)
        pieces.append(packet[:18] + struct.pack(">H", ipid) + packet[20:])
    return pieces


def test_ipv4_fragments_reassembled(tmp_path, engine):
    """Fragments make one datagram, counted with YAF's payload (the completing piece's view)."""
    datagram = udp(5000, 6000, b"v" * 3992)
    in_order = fragments("10.0.0.1", "10.0.0.2", datagram, 1480)
    flows, counters = meter(tmp_path, [(S + i, p) for i, p in enumerate(in_order)], engine)
    assert counters["fragments"] == 3 and counters["reassembled"] == 1
    f = flows[0]
    assert (f["sourceTransportPort"], f["destinationTransportPort"]) == (5000, 6000)
    assert f["octetTotalCount"] == 20 + len(datagram) and f["packetTotalCount"] == 1
    assert f["dataByteCount"] == len(datagram)

    first_last = [in_order[1], in_order[2], in_order[0]]
    flows, _ = meter(tmp_path, [(S + i, p) for i, p in enumerate(first_last)], engine)
    assert flows[0]["dataByteCount"] == len(datagram) - 8


def test_stale_fragments_dropped(tmp_path, engine):
    """A datagram untouched for 30 s is dropped; its late pieces never complete."""
    a = fragments("10.0.0.1", "10.0.0.2", udp(1, 2, b"a" * 2000), 1480, ipid=1)
    b = fragments("10.0.0.3", "10.0.0.4", udp(3, 4, b"b" * 2000), 1480, ipid=2)
    packets = [(S, a[0]), (41 * S, b[0]), (42 * S, a[1])]
    flows, counters = meter(tmp_path, packets, engine)
    assert len(flows) == 0 and counters["reassembled"] == 0
    assert counters["fragments_unassembled"] == 3


def write_pcapng(path, packets, tsresol: int) -> None:
    """A one-interface pcapng (little-endian) with the given if_tsresol option byte."""

    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    units = 10 ** (tsresol & 0x7F) if not tsresol & 0x80 else 2 ** (tsresol & 0x7F)
    with open(path, "wb") as out:
        out.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        option = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
        out.write(block(1, struct.pack("<HHI", 1, 0, 65535) + option))
        for t, frame in packets:
            ts = t * units // S
            head = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
            out.write(block(6, head + frame))


@pytest.mark.parametrize("tsresol", [6, 9, 0x80 | 20])
def test_pcapng_timestamp_resolutions(tmp_path, engine, tsresol):
    """pcapng interfaces in micro-, nano- or binary-fraction seconds give the pcap's records."""
    p = ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x" * 70))
    packets = [(S + 123_456_000, p), (S + 987_654_000, p), (5 * S, p)]
    expected, _ = meter(tmp_path, packets, engine)
    path = tmp_path / "c.pcapng"
    write_pcapng(path, packets, tsresol)
    flows, counters = meter_pcap(path, engine=engine)
    assert counters["metered"] == 3
    assert np.array_equal(flows["flowStartMilliseconds"], expected["flowStartMilliseconds"])
    assert np.array_equal(flows["averageInterarrivalTime"], expected["averageInterarrivalTime"])
