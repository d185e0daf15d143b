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
            elif tid := re.match(r"\tcount: \d+\s+tid: (\d+)", line):
                current.setdefault("template", int(tid.group(1)))
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


#: Fields of YAF's records that the flow table does not carry (written as zeros).
NOT_CARRIED = {
    "flowAttributes", "reverseFlowAttributes", "reverseFlowDeltaMilliseconds",
    "_alienInformationElement", "tcpSequenceNumber", "initialTCPFlags", "unionTCPFlags",
    "reverseInitialTCPFlags", "reverseUnionTCPFlags", "reverseTcpSequenceNumber", "vlanId",
    "reverseVlanId", "ipClassOfService", "reverseIpClassOfService", "tcpUrgTotalCount",
    "reverseTcpUrgTotalCount", "flowStartMicroseconds", "flowEndMicroseconds",
}  # fmt: skip


def test_rewriting_yaf_output_reproduces_it(samples, tmp_path):
    """YAF's records decoded and written again get YAF's templates and every carried value."""
    source = samples / "yaf-2.16.4-local/iot_sentinel_setup_subset.yaf"
    path = tmp_path / "again.yaf"
    w.write_yaf_file(path, decode_file(source, strict=True), export_time=0)
    theirs = [r for r in ipfixdump(source) if "flowStartMilliseconds" in r]
    ours = ipfixdump(path)
    assert len(ours) == len(theirs) == 250
    for mine, yaf in zip(ours, theirs):
        assert mine["template"] == yaf["template"]
        assert {k: v for k, v in mine.items() if k not in NOT_CARRIED} == {
            k: v for k, v in yaf.items() if k not in NOT_CARRIED
        }


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
    assert decoder.counters.get("records_lost", 0) == 0


def test_without_stats_omits_the_statistics_sub_record(tmp_path):
    """with_stats=False writes no 0xC005/0xC015 entry, so statistics decode as zeros."""
    flows = make_flows(30)
    path = tmp_path / "plain.yaf"
    w.write_yaf_file(path, flows, with_stats=False)
    dumped = ipfixdump(path)
    assert not any("dataByteCount" in r or "reverseDataByteCount" in r for r in dumped)
    back = decode_file(path)
    assert not back["dataByteCount"].any() and np.array_equal(
        back["octetTotalCount"], flows["octetTotalCount"]
    )


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


WHEN = datetime(2019, 6, 25, 8, 36, 47, 96123, UTC)
#: (name, length, value, abstract type): one field per registered data type and form.
EVERY_TYPE = [
    ("sourceIPv4Address", 4, "10.1.2.3", "ipv4Address"),
    ("destinationIPv6Address", 16, "2001:db8::42", "ipv6Address"),
    ("sourceTransportPort", 2, 49152, "unsigned16"),
    ("protocolIdentifier", 1, 17, "unsigned8"),
    ("ingressInterface", 4, 4_000_000_000, "unsigned32"),
    ("octetDeltaCount", 8, 2**63 + 5, "unsigned64"),
    ("packetDeltaCount", 4, 70_000, "unsigned64"),  # reduced length
    ("postOctetDeltaCount", 1, 200, "unsigned64"),  # reduced length
    ("mibObjectValueInteger", 4, -123_456, "signed32"),
    ("samplingProbability", 8, 0.1, "float64"),
    ("absoluteError", 4, 0.25, "float64"),  # reduced to float32
    ("dataRecordsReliability", 1, True, "boolean"),
    ("dot1qDEI", 1, False, "boolean"),
    ("sourceMacAddress", 6, "20:f8:5e:ca:91:52", "macAddress"),
    ("flowStartSeconds", 4, WHEN.replace(microsecond=0), "dateTimeSeconds"),
    ("flowStartMilliseconds", 8, WHEN.replace(microsecond=96000), "dateTimeMilliseconds"),
    ("flowStartMicroseconds", 8, WHEN, "dateTimeMicroseconds"),
    ("flowStartNanoseconds", 8, WHEN, "dateTimeNanoseconds"),
    ("mplsTopLabelStackSection", 3, b"\x01\x02\x03", "octetArray"),
    ("interfaceName", w.VARLEN, "eth0-é", "string"),  # short varlen form
    ("interfaceDescription", w.VARLEN, "x" * 300, "string"),  # long varlen form
    ("applicationName", w.VARLEN, "", "string"),  # empty varlen
    ("dataByteCount", 8, 123_456, "unsigned64"),  # CERT enterprise element
    ("reverseDataByteCount", 8, 654_321, "unsigned64"),  # CERT reverse, 0x4000 bit
    ("reverseOctetTotalCount", 4, 777, "unsigned64"),  # RFC 5103 PEN 29305, reduced
]


def _field_octets(name: str, length: int, value, dtype: str) -> bytes:
    raw = w.encode_value(dtype, value, length)
    if length != w.VARLEN:
        return raw
    return w.varlen(raw, long_form=name == "applicationName")


def _every_type_message() -> bytes:
    fields = [(name, length) for name, length, _, _ in EVERY_TYPE]
    fields += [(0, 291, w.VARLEN), (0, 291, w.VARLEN), (0, 292, w.VARLEN), (0, 293, w.VARLEN)]
    fields += [(99999, 7, 3)]
    record = b"".join(_field_octets(*spec) for spec in EVERY_TYPE)
    egress = w.basic_list(3, (0, 14, 4), [w.encode_value("unsigned32", v) for v in (1, 2, 3)])
    names = w.basic_list(1, (0, 84, w.VARLEN), [w.varlen(b"a"), w.varlen(b"bb", True)])
    stl = w.sub_template_list(4, 300, [struct.pack("!HH", 10, 11), struct.pack("!HH", 20, 21)])
    stml = w.sub_template_multi_list(3, [
        (301, [b"\x40"]),
        (302, [struct.pack("!II", 5, 6)]),
    ])  # fmt: skip
    record += b"".join(w.varlen(x, long_form=True) for x in (egress, names, stl, stml))
    record += b"\xaa\xbb\xcc"
    templates = w.template_set([
        w.template_record(300, [("vlanId", 2), ("postVlanId", 2)]),
        w.template_record(301, [("mplsTopLabelTTL", 1)]),
        w.template_record(302, [("smallPacketCount", 4), ("reverseSmallPacketCount", 4)]),
        w.template_record(400, fields),
    ])  # fmt: skip
    options = w.template_set(
        [w.template_record(401, [("exportingProcessId", 4), ("exportedFlowRecordTotalCount", 8)],
                           scope_count=1)],
        options=True,
    )  # fmt: skip
    data = w.encode_set(400, [record], padding=3)
    option_data = w.encode_set(401, [struct.pack("!IQ", 77, 123)])
    return w.encode_message([templates, options, data, option_data], domain=5, sequence=9)


def test_every_data_type_round_trips_through_the_decoder():
    """Every registered abstract type, length form, list kind and options record decodes back."""
    decoder = Decoder()
    result = decoder.decode_message(_every_type_message(), "session", records=True)
    assert result.error is None and result.domain == 5 and result.sequence == 9
    (record,) = result.records
    for name, _, value, dtype in EVERY_TYPE:
        got = record[name]
        if dtype.startswith("ipv6"):
            got, value = ipaddress.ip_address(got), ipaddress.ip_address(value)
        assert got == value, name
    assert record["egressInterface"] == [1, 2, 3]
    assert record["samplerName"] == ["a", "bb"]
    assert record["vlanId"] == [10, 20] and record["postVlanId"] == [11, 21]
    assert record["mplsTopLabelTTL"] == 0x40
    assert record["smallPacketCount"] == 5 and record["reverseSmallPacketCount"] == 6
    assert record["e99999id7"] == b"\xaa\xbb\xcc"
    assert result.options == [{"exportingProcessId": 77, "exportedFlowRecordTotalCount": 123}]


@pytest.mark.parametrize(
    ("dtype", "length", "value"),
    [
        ("unsigned8", 1, 255), ("unsigned16", 2, 65535), ("unsigned32", 4, 2**32 - 1),
        ("unsigned64", 8, 2**64 - 1), ("unsigned64", 3, 2**24 - 1), ("signed8", 1, -128),
        ("signed16", 2, -32768), ("signed32", 4, -(2**31)), ("signed64", 8, -(2**63)),
        ("signed64", 2, -300), ("float32", 4, -1.5), ("float64", 8, 1e300),
        ("float64", 4, 0.125), ("boolean", 1, True), ("boolean", 1, False),
        ("macAddress", 6, "00:17:88:24:76:ff"), ("string", None, "ünïcode"),
        ("octetArray", None, b"\x00\xff"), ("ipv4Address", 4, "192.0.2.1"),
        ("ipv6Address", 16, "2001:db8::1"),
        ("dateTimeSeconds", 4, WHEN.replace(microsecond=0)),
        ("dateTimeMilliseconds", 8, WHEN.replace(microsecond=96000)),
        ("dateTimeMicroseconds", 8, WHEN), ("dateTimeNanoseconds", 8, WHEN),
    ],
)  # fmt: skip
def test_encode_value_inverts_the_decoders_value_reading(dtype, length, value):
    """encode_value and the decoder's decode_value are inverses for every RFC 7011 type."""
    from agent.ipfix.values import decode_value

    raw = w.encode_value(dtype, value, length)
    assert length is None or len(raw) == length
    assert decode_value(dtype, raw) == value


def test_varlen_uses_both_length_forms():
    """Short payloads get one length octet, long ones (or long_form) 255 plus two octets."""
    assert w.varlen(b"abc") == b"\x03abc"
    assert w.varlen(b"abc", long_form=True) == b"\xff\x00\x03abc"
    assert w.varlen(bytes(300))[:3] == b"\xff\x01\x2c"
    with pytest.raises(ValueError, match="too long"):
        w.varlen(bytes(70000))


def test_domain_none_splits_by_observation_domain():
    """domain=None sends each record in its own observation domain, each counted apart."""
    flows = make_flows(90, seed=4)
    flows["observationDomainId"] = np.arange(90) % 3 + 1
    decoder = Decoder()
    seen = {}
    for message in w.yaf_messages(flows, domain=None, mtu=1400):
        result = decoder.decode_message(message, "s")
        assert result.error is None
        assert result.sequence == seen.get(result.domain, 0)
        seen[result.domain] = result.sequence + len(result.flows)
        assert (result.flows["observationDomainId"] == result.domain).all()
    assert seen == {1: 30, 2: 30, 3: 30}
    assert decoder.counters.get("records_lost", 0) == 0
