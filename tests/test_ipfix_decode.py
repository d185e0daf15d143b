"""Decoding of IPFIX data records: data types, reverse elements, lists, the flow table."""

import ipaddress
import struct
from datetime import UTC, datetime

import pytest

from agent.flows import FLOW_DTYPE, pack_address
from agent.ipfix import Decoder, decode_file, flowplan, iter_messages
from agent.ipfix.elements import lookup
from agent.ipfix.values import decode_value

# --- a tiny message builder, shared by the other test_ipfix_* files ---------------------


def spec(eid: int, length: int, pen: int = 0) -> bytes:
    """A field specifier (enterprise bit set when ``pen`` is given)."""
    if pen:
        return struct.pack("!HHI", eid | 0x8000, length, pen)
    return struct.pack("!HH", eid, length)


def template_set(tid: int, fields, scope: int = 0) -> bytes:
    """A template (or, with ``scope``, options template) set holding one record."""
    body = b"".join(spec(*f) for f in fields)
    if scope:
        rec = struct.pack("!HHH", tid, len(fields), scope) + body
        return struct.pack("!HH", 3, 4 + len(rec)) + rec
    rec = struct.pack("!HH", tid, len(fields)) + body
    return struct.pack("!HH", 2, 4 + len(rec)) + rec


def data_set(tid: int, payload: bytes) -> bytes:
    """A data set for template ``tid``."""
    return struct.pack("!HH", tid, 4 + len(payload)) + payload


def message(*sets: bytes, seq: int = 0, domain: int = 1, export_time: int = 1_700_000_000):
    """A complete IPFIX message."""
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_time, seq, domain) + body


def varlen(raw: bytes, long: bool = False) -> bytes:
    """A variable-length field in the short (1 octet) or long (3 octets) length form."""
    if long or len(raw) >= 255:
        return b"\xff" + struct.pack("!H", len(raw)) + raw
    return bytes([len(raw)]) + raw


def stml(entries, semantic: int = 3) -> bytes:
    """subTemplateMultiList content: entries of (template id, records octets)."""
    out = bytes([semantic])
    for tid, payload in entries:
        out += struct.pack("!HH", tid, 4 + len(payload)) + payload
    return out


#: A YAF-like biflow template: times, addresses, ports, counters, flow stats in an STML.
FLOW_TID, STATS_TID = 0xB010, 0xC015
FLOW_FIELDS = [
    (152, 8), (153, 8), (8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (136, 1),
    (86, 8), (85, 8), (86, 8, 29305), (85, 8, 29305), (293, 0xFFFF),
]  # fmt: skip
STATS_FIELDS = [(500, 4, 6871), (502, 8, 6871), (507, 1, 6871), (510, 4, 6871 | 0)]
STATS_FIELDS.append((500 | 0x4000, 4, 6871))


def yaf_templates() -> bytes:
    """Template set with the flow template and the flow-statistics template."""
    return template_set(FLOW_TID, FLOW_FIELDS) + template_set(STATS_TID, STATS_FIELDS)


def yaf_record(i: int, stats: bool = True) -> bytes:
    """One flow record number ``i`` (values derived from ``i``)."""
    head = struct.pack(
        "!QQ4s4sHHBBQQQQ",
        1_700_000_000_000 + i, 1_700_000_000_500 + i,
        ipaddress.IPv4Address(f"10.0.0.{i % 250 + 1}").packed,
        ipaddress.IPv4Address("192.0.2.7").packed,
        40000 + i, 443, 6, 3, 10 + i, 1000 + i, 20 + i, 2000 + i,
    )  # fmt: skip
    entries = []
    if stats:
        entries.append((STATS_TID, struct.pack("!IQBII", i, 500 + i, 0xAA, 7, 3 * i)))
    return head + varlen(stml(entries) if entries else b"")


# --- tests -------------------------------------------------------------------------------


def test_yaf_like_records_fill_the_flow_table():
    """Flow records with a flow-statistics sub-record fill every mapped column."""
    msg = message(yaf_templates(), data_set(FLOW_TID, yaf_record(1) + yaf_record(2)))
    result = Decoder().decode_message(msg, "s")
    assert result.error is None
    flows = result.flows
    assert flows.dtype == FLOW_DTYPE and len(flows) == 2
    assert flows["flowStartMilliseconds"].tolist() == [1_700_000_000_001, 1_700_000_000_002]
    assert flows["packetTotalCount"].tolist() == [11, 12]
    assert flows["reverseOctetTotalCount"].tolist() == [2001, 2002]
    assert flows["dataByteCount"].tolist() == [501, 502]
    assert flows["reverseSmallPacketCount"].tolist() == [3, 6]
    assert flows["firstEightNonEmptyPacketDirections"].tolist() == [0xAA, 0xAA]
    assert (flows["sourceAddress"][0] == pack_address("10.0.0.2")).all()
    assert flows["ipVersion"].tolist() == [4, 4]
    assert flows["observationDomainId"].tolist() == [1, 1]


def test_record_without_stats_keeps_stats_zero():
    """A flow record whose list lacks the statistics sub-record has those fields at 0."""
    msg = message(yaf_templates(), data_set(FLOW_TID, yaf_record(5, stats=False)))
    flows = Decoder().decode_message(msg, "s").flows
    assert len(flows) == 1 and flows["packetTotalCount"][0] == 15
    assert flows["dataByteCount"][0] == 0 and flows["reverseSmallPacketCount"][0] == 0


def test_records_flatten_sub_records_like_super_mediator():
    """records=True gives dicts with sub-record fields flattened and reverse names."""
    msg = message(yaf_templates(), data_set(FLOW_TID, yaf_record(3)))
    record = Decoder().decode_message(msg, "s", records=True).records[0]
    assert record["sourceIPv4Address"] == "10.0.0.4"
    assert record["reversePacketTotalCount"] == 23
    assert record["smallPacketCount"] == 3 and record["reverseSmallPacketCount"] == 9
    assert record["flowStartMilliseconds"] == datetime.fromtimestamp(1_700_000_000.003, UTC)


@pytest.mark.parametrize("use_native", [True, False])
def test_native_and_numpy_paths_agree(use_native):
    """The compiled helper and the numpy fallback produce identical rows."""
    if flowplan._native is None:
        pytest.skip("agent.ipfix._native not built")
    records = b"".join(yaf_record(i, stats=i % 3 != 0) for i in range(40))
    msg = message(yaf_templates(), data_set(FLOW_TID, records))
    decoder = Decoder()
    decoder.decode_message(msg, "s")
    template = decoder.templates.get("s", 1, FLOW_TID, 0)
    plan = decoder.plan_for("s", 1, template)
    body = memoryview(msg)[-(len(records)) :]
    native = flowplan.decode_flows(body, plan, use_native=True)
    fallback = flowplan.decode_flows(body, plan, use_native=False)
    assert len(native) == 40
    assert native.tobytes() == fallback.tobytes()


def test_fixed_length_paths_agree_and_reduced_length():
    """Reduced-length integers and fixed layouts decode the same in both paths."""
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 2), (1, 3), (150, 4), (151, 4)]
    tpl = template_set(300, fields)
    rec = struct.pack("!4s4sHHBH", b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 1, 2, 17, 9)
    rec += (70000).to_bytes(3, "big") + struct.pack("!II", 1_600_000_000, 1_600_000_002)
    decoder = Decoder()
    result = decoder.decode_message(message(tpl, data_set(300, rec * 3)), "s")
    flows = result.flows
    assert flows["packetTotalCount"].tolist() == [9, 9, 9]
    assert flows["octetTotalCount"].tolist() == [70000] * 3
    assert flows["flowEndMilliseconds"].tolist() == [1_600_000_002_000] * 3
    plan = decoder.plan_for("s", 1, decoder.templates.get("s", 1, 300, 0))
    body = (rec * 3)[:]
    if flowplan._native is not None:
        native = flowplan.decode_flows(body, plan, use_native=True)
        assert native.tobytes() == flowplan.decode_flows(body, plan, use_native=False).tobytes()


def test_every_abstract_data_type_decodes():
    """Each RFC 7011 abstract data type comes out as the matching Python value."""
    fields = [
        (4, 1), (32767, 2, 99), (210, 3), (130, 4), (27, 16), (56, 6), (82, 0xFFFF),
        (150, 4), (152, 8), (154, 8), (156, 8), (276, 1), (311, 4), (320, 8),
    ]  # fmt: skip
    values = [
        b"\x06", b"\x01\x02", b"\x00\x00\x00", bytes([192, 0, 2, 1]),
        ipaddress.IPv6Address("2001:db8::1").packed, bytes.fromhex("0a0b0c0d0e0f"),
        varlen("eth0-é".encode()), struct.pack("!I", 1_600_000_000),
        struct.pack("!Q", 1_600_000_000_123),
        struct.pack("!II", 1_600_000_000 + 2208988800, 1 << 31),
        struct.pack("!II", 1_600_000_000 + 2208988800, 0),
        b"\x02", struct.pack("!f", 1.5), struct.pack("!d", -2.25),
    ]  # fmt: skip
    msg = message(template_set(400, fields), data_set(400, b"".join(values)))
    record = Decoder().decode_message(msg, "s", records=True).records[0]
    names = [lookup(f[2] if len(f) > 2 else 0, f[0]).name for f in fields]
    got = dict(zip(names, (record.get(n) for n in names)))
    assert got["protocolIdentifier"] == 6
    assert got["e99id32767"] == b"\x01\x02"
    assert "paddingOctets" not in record
    assert got["exporterIPv4Address"] == "192.0.2.1"
    assert got["sourceIPv6Address"] == "2001:db8::1"
    assert got["sourceMacAddress"] == "0a:0b:0c:0d:0e:0f"
    assert got["interfaceName"] == "eth0-é"
    assert got["flowStartSeconds"] == datetime.fromtimestamp(1_600_000_000, UTC)
    assert got["flowStartMilliseconds"].microsecond == 123_000
    assert got["flowStartMicroseconds"].microsecond == 500_000
    assert got["flowStartNanoseconds"] == datetime.fromtimestamp(1_600_000_000, UTC)
    assert got["dataRecordsReliability"] is False
    assert got["samplingProbability"] == 1.5
    assert got["absoluteError"] == -2.25
    assert decode_value("signed32", b"\xff\xff\xff\xfb") == -5
    assert decode_value("signed64", b"\xfe") == -2


def test_varlen_long_form_and_reverse_elements():
    """A 3-octet varlen length reads, and both RFC 5103 reverse forms are named."""
    fields = [(18, 0xFFFF, 6871), (18 | 0x4000, 0xFFFF, 6871), (86, 4, 29305), (86, 4)]
    payload = varlen(b"x" * 300) + varlen(b"ab", long=True) + struct.pack("!II", 7, 8)
    msg = message(template_set(500, fields), data_set(500, payload))
    record = Decoder().decode_message(msg, "s", records=True).records[0]
    assert record["payload"] == b"x" * 300
    assert record["reversePayload"] == b"ab"
    assert record["reversePacketTotalCount"] == 7 and record["packetTotalCount"] == 8


def test_unknown_elements_are_named_by_pen_and_id():
    """An unregistered element decodes as octets named e<PEN>id<ID>."""
    element = lookup(12345, 77)
    assert element.name == "e12345id77" and element.type == "octetArray"
    assert lookup(0, 1).name == "octetDeltaCount"
    assert lookup(29305, 1).name == "reverseOctetDeltaCount"
    assert lookup(6871, 502 | 0x4000).name == "reverseDataByteCount"


def test_basic_list_and_sub_template_list():
    """basicList values form a list; subTemplateList records flatten into the parent."""
    inner = template_set(600, [(7, 2)])
    blist = bytes([3]) + struct.pack("!HH", 11, 2) + struct.pack("!HHH", 80, 443, 8080)
    stl = bytes([4]) + struct.pack("!H", 600) + struct.pack("!H", 53)
    outer = template_set(601, [(291, 0xFFFF), (292, 0xFFFF), (4, 1)])
    msg = message(inner, outer, data_set(601, varlen(blist) + varlen(stl) + b"\x11"))
    record = Decoder().decode_message(msg, "s", records=True).records[0]
    assert record["destinationTransportPort"] == [80, 443, 8080]
    assert record["sourceTransportPort"] == 53
    assert record["protocolIdentifier"] == 17


def test_duration_and_delta_counters_map_to_the_table():
    """Deltas fill the total columns; a duration gives the end time from the start."""
    fields = [(8, 4), (12, 4), (2, 4), (1, 4), (152, 8), (161, 4)]
    rec = bytes(4) + bytes(4) + struct.pack("!IIQI", 3, 300, 1_000_000, 250)
    flows = Decoder().decode_message(message(template_set(700, fields), data_set(700, rec)), "s")
    row = flows.flows[0]
    assert row["packetTotalCount"] == 3 and row["octetTotalCount"] == 300
    assert row["flowEndMilliseconds"] == 1_000_250


def test_iter_messages_splits_a_stream_and_reports_a_truncated_tail():
    """A stream is cut at message lengths; a cut-short last message names its offset."""
    first = message(yaf_templates())
    second = message(data_set(FLOW_TID, yaf_record(1)))
    got = list(iter_messages(first + second))
    assert [off for off, _ in got] == [0, len(first)]
    with pytest.raises(Exception) as info:
        list(iter_messages(first + second[:-3]))
    assert info.value.offset == len(first)
    assert "truncated" in info.value.reason


def test_decode_file_concatenates_flows(tmp_path):
    """decode_file returns every flow of a file of back-to-back messages."""
    path = tmp_path / "x.ipfix"
    path.write_bytes(
        message(yaf_templates()) + message(data_set(FLOW_TID, yaf_record(1) + yaf_record(2)))
    )
    flows = decode_file(path)
    assert len(flows) == 2 and flows["destinationTransportPort"].tolist() == [443, 443]


def test_sys_up_time_becomes_absolute_with_the_exporter_init_time():
    """flowStartSysUpTime plus an options record's init time gives Unix milliseconds."""
    fields = [(8, 4), (12, 4), (22, 4), (21, 4)]
    options = template_set(800, [(144, 4), (160, 8)], scope=1)
    init = 1_700_000_000_000
    rec = bytes(8) + struct.pack("!II", 5_000, 6_000)
    decoder = Decoder()
    before = decoder.decode_message(message(template_set(801, fields), data_set(801, rec)), "s")
    assert before.flows["flowStartMilliseconds"][0] == 5_000
    assert decoder.counters["flows_relative_time"] == 1
    setup = message(options, data_set(800, struct.pack("!IQ", 1, init)))
    assert decoder.decode_message(setup, "s").options[0]["exportingProcessId"] == 1
    after = decoder.decode_message(message(data_set(801, rec)), "s").flows
    assert after["flowStartMilliseconds"][0] == init + 5_000
    assert after["flowEndMilliseconds"][0] == init + 6_000
