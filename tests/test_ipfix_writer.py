"""The IPFIX writer: YAF's layout checked by libfixbuf's ipfixDump and by our decoder."""

import ipaddress
import os
import re
import struct
import subprocess
from datetime import UTC, datetime

import numpy as np
import pytest

from agent.flows import FLOW_DTYPE, FLOW_STATS_FIELDS, empty, int_to_mac, unpack_address
from agent.ipfix import Decoder, decode_file, iter_messages
from agent.ipfix import writer as w
from tests.conftest import require_tool

STATS = [name for name, _ in FLOW_STATS_FIELDS]
REVERSE_STATS = ["reverse" + n[0].upper() + n[1:] for n in STATS if n != STATS[-4]]


def make_flows(n: int, seed: int = 7) -> np.ndarray:
    """A flow table mixing IPv4/IPv6, TCP/UDP, uniflows/biflows and huge counters."""
    rng = np.random.default_rng(seed)
    flows = empty(n)
    start = 1_561_451_807_096 + rng.integers(0, 10**7, n)
    flows["flowStartMilliseconds"] = start
    flows["flowEndMilliseconds"] = start + rng.integers(0, 10**6, n)
    flows["ipVersion"] = np.where(rng.random(n) < 0.3, 6, 4)
    flows["protocolIdentifier"] = rng.choice([6, 17, 1], n)
    flows["sourceTransportPort"] = rng.integers(0, 65536, n)
    flows["destinationTransportPort"] = rng.integers(0, 65536, n)
    for side in ("sourceAddress", "destinationAddress"):
        flows[side] = rng.integers(0, 256, (n, 16))
        v4 = flows["ipVersion"] == 4
        flows[side][v4, :12] = np.frombuffer(bytes(10) + b"\xff\xff", np.uint8)
    flows["sourceMacAddress"] = rng.integers(0, 1 << 48, n, dtype=np.uint64)
    flows["destinationMacAddress"] = rng.integers(0, 1 << 48, n, dtype=np.uint64)
    flows["flowEndReason"] = rng.integers(1, 5, n)
    flows["firstEightNonEmptyPacketDirections"] = rng.integers(0, 256, n)
    flows["packetTotalCount"] = rng.integers(1, 1000, n)
    flows["octetTotalCount"] = rng.integers(40, 10**6, n)
    flows["octetTotalCount"][::7] = rng.integers(1 << 31, 1 << 40, len(flows[::7]))
    biflow = rng.random(n) < 0.7
    flows["reversePacketTotalCount"] = np.where(biflow, rng.integers(1, 1000, n), 0)
    flows["reverseOctetTotalCount"] = np.where(biflow, rng.integers(40, 10**6, n), 0)
    for name, dtype in FLOW_STATS_FIELDS:
        high = min(np.iinfo(dtype).max, 10**9) + 1
        flows[name] = rng.integers(0, high, n)
        reverse = "reverse" + name[0].upper() + name[1:]
        flows[reverse] = np.where(biflow, rng.integers(0, high, n), 0)
    quiet = ~biflow & (flows["protocolIdentifier"] == 6)
    quiet[::2] = False
    for name in STATS + ["firstEightNonEmptyPacketDirections"]:
        flows[name][quiet] = 0
    flows["packetTotalCount"][quiet] = 1
    return flows


def ipfixdump(path) -> list[dict]:
    """ipfixDump --yaf's text as one dict per top-level data record (sub-records merged)."""
    tool = require_tool("ipfixDump")
    env = dict(os.environ, TZ="UTC")
    text = subprocess.run(
        [tool, "--yaf", "--in", str(path)], capture_output=True, text=True, env=env, check=True
    ).stdout
    records, current = [], None
    for line in text.splitlines():
        if line.startswith("--- data record"):
            current = {}
            records.append(current)
        elif line.startswith("--- "):
            current = None
        elif current is not None:
            match = re.match(r"\s*\(([\d/]+)\)\s*(\w+) : (.*)$", line)
            if match:
                current.setdefault(match.group(2), match.group(3).strip())
    return records


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _check_against_dump(flows: np.ndarray, dumped: list[dict]) -> None:
    assert len(dumped) == len(flows)
    for row, rec in zip(flows, dumped):
        v = 6 if row["ipVersion"] == 6 else 4
        assert rec["flowStartMilliseconds"] == _when(row["flowStartMilliseconds"])
        assert rec["flowEndMilliseconds"] == _when(row["flowEndMilliseconds"])
        for side in ("source", "destination"):
            text = rec[f"{side}IPv{v}Address"]
            want = unpack_address(row[f"{side}Address"], v)
            assert ipaddress.ip_address(text) == ipaddress.ip_address(want)
            assert rec[f"{side}MacAddress"] == int_to_mac(row[f"{side}MacAddress"])
        for name in ("sourceTransportPort", "destinationTransportPort", "protocolIdentifier",
                     "flowEndReason", "packetTotalCount", "octetTotalCount"):  # fmt: skip
            assert int(rec[name]) == row[name], name
        biflow = row["reversePacketTotalCount"] > 0
        assert ("reversePacketTotalCount" in rec) == biflow
        if biflow:
            assert int(rec["reversePacketTotalCount"]) == row["reversePacketTotalCount"]
            assert int(rec["reverseOctetTotalCount"]) == row["reverseOctetTotalCount"]
            for name in REVERSE_STATS:
                assert int(rec[name]) == row[name], name
        if "dataByteCount" in rec:
            for name in STATS:
                assert int(rec[name]) == row[name], name
        else:
            assert not any(row[name] for name in STATS) and row["packetTotalCount"] == 1


def test_ipfixdump_reads_back_every_field(tmp_path):
    """ipfixDump decodes a written file to the table's values, IPv4 and IPv6, uni and bi."""
    flows = make_flows(300)
    path = tmp_path / "flows.yaf"
    w.write_yaf_file(path, flows, export_time=1_700_000_000)
    dumped = ipfixdump(path)
    _check_against_dump(flows, dumped)
    assert {r.get("sourceIPv6Address") is None for r in dumped} == {True, False}


def test_ipfixdump_reads_udp_sized_messages(tmp_path):
    """Small-MTU output repeats templates in every message and still decodes record by record."""
    flows = make_flows(40, seed=3)
    messages = list(w.yaf_messages(flows, mtu=1400, export_time=0))
    assert all(len(m) <= 1400 for m in messages) and len(messages) > 5
    assert all(struct.unpack_from("!H", m, 16)[0] == w.TEMPLATE_SET_ID for m in messages)
    path = tmp_path / "udp.yaf"
    path.write_bytes(b"".join(messages))
    _check_against_dump(flows, ipfixdump(path))


def test_templates_match_yaf_layout(samples, tmp_path):
    """The templates written equal, field for field, those YAF 2.16.4 wrote itself."""
    pattern = re.compile(r"tid: (\d+) \(0x\w+\)\s+field count.*\nfields:\n((?:\tent:.*\n)+)")

    def templates(text):
        return {int(t): re.findall(r"ent:\s+(\d+)\s+id:\s+(\d+).*len:\s+(\d+)", body)
                for t, body in pattern.findall(text)}  # fmt: skip

    yaf = templates((samples / "yaf-2.16.4-local/iot_sentinel_setup_subset.ipfixDump.txt")
                    .read_text())  # fmt: skip
    path = tmp_path / "flows.yaf"
    w.write_yaf_file(path, make_flows(50))
    tool = require_tool("ipfixDump")
    ours = templates(subprocess.run([tool, "--yaf", "--in", str(path)], capture_output=True,
                                    text=True, check=True).stdout)  # fmt: skip
    common = set(ours) & set(yaf)
    assert {0xB000, 0xB010, 0xC003, 0xC004, 0xC005, 0xC013, 0xC015} <= common
    for tid in common:
        assert ours[tid] == yaf[tid], hex(tid)


def test_round_trip_through_our_decoder(tmp_path):
    """Writer then decoder gives back the flow table unchanged, for file and UDP layouts."""
    flows = make_flows(500, seed=11)
    flows["observationDomainId"] = 9
    path = tmp_path / "flows.yaf"
    w.write_yaf_file(path, flows, domain=9)
    back = decode_file(path, strict=True)
    for name in FLOW_DTYPE.names:
        assert np.array_equal(back[name], flows[name]), name

    decoder = Decoder()
    parts = [decoder.decode_message(m, ("udp", "x"), now=0.0)
             for m in w.yaf_messages(flows, domain=9, mtu=1472)]  # fmt: skip
    assert all(p.error is None for p in parts)
    assert np.array_equal(np.concatenate([p.flows for p in parts]), flows)


def test_sequence_numbers_count_data_records():
    """Each message's sequence number is the count of data records sent before it."""
    flows = make_flows(200, seed=5)
    messages = list(w.yaf_messages(flows, mtu=1400, sequence_start=2**32 - 10))
    decoder = Decoder()
    expected = 2**32 - 10
    for message in messages:
        assert struct.unpack_from("!I", message, 8)[0] == expected % 2**32
        expected += len(decoder.decode_message(message, "s").flows)
    assert expected - (2**32 - 10) == len(flows)
    assert decoder.counters.get("sequence_lost", 0) == 0


def test_without_stats_omits_the_statistics_sub_record(tmp_path):
    """with_stats=False writes no 0xC005/0xC015 entry, so statistics decode as zeros."""
    flows = make_flows(30)
    path = tmp_path / "plain.yaf"
    w.write_yaf_file(path, flows, with_stats=False)
    dumped = ipfixdump(path)
    assert not any("dataByteCount" in r or "reverseDataByteCount" in r for r in dumped)
    back = decode_file(path)
    assert not back["dataByteCount"].any() and np.array_equal(back["octetTotalCount"],
                                                              flows["octetTotalCount"])


def test_record_larger_than_mtu_is_refused():
    """An mtu too small for templates and one record raises a clear ValueError."""
    with pytest.raises(ValueError, match="mtu"):
        list(w.yaf_messages(make_flows(3), mtu=200))


def test_file_is_messages_back_to_back(tmp_path):
    """A written file splits into whole messages, templates first, each under 65536 octets."""
    path = tmp_path / "f.yaf"
    size = w.write_yaf_file(path, make_flows(2000, seed=1), export_time=5)
    offsets = [off for off, _ in iter_messages(path.read_bytes())]
    assert size == path.stat().st_size and offsets[0] == 0 and len(offsets) > 2
    first = path.read_bytes()[:20]
    assert struct.unpack("!HHIIIH", first[:18])[5] == w.TEMPLATE_SET_ID
