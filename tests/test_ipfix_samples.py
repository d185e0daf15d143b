"""Real exporters' output, decoded and compared with independent decoders.

libfixbuf's ``ipfixDump --yaf`` checks every field of every record of the sample files;
tshark checks flow keys and counters of the same messages wrapped as UDP datagrams in
a pcap. The flow table from the vectorized path is checked against the record dicts.
"""

import ipaddress
import re
import socket
import struct
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool

from agent.flows import mac_to_int, pack_address, unpack_address
from agent.ipfix import Decoder, decode_file, flowplan, iter_messages
from agent.ipfix.elements import lookup
from agent.ipfix.flowplan import COLUMN_SOURCES

YAF_FILES = [
    "yaf-2.16.4-local/yaf_flowstats_biflow.yaf",
    "yaf-2.16.4-local/yaf_flowstats_silk_mac_milli.yaf",
    "yaf-2.16.4-local/iot_sentinel_setup_subset.yaf",
    "ipfixcol2/example_flows.ipfix",
]
LS = "logstash-codec-netflow/"
#: UDP exports kept as separate files: feed them in this order in one session.
GROUPS = {
    "yaf_bench": ["bench_yaf_tpl.bin", "bench_yaf_data.bin"],
    "yaf_udp": [
        "ipfix_test_yaf_tpls_option_tpl.dat", "ipfix_test_yaf_tpl45841.dat",
        "ipfix_test_yaf_data45841.dat", "ipfix_test_yaf_data45873.dat",
        "ipfix_test_yaf_data53248.dat",
    ],
    "softflowd": ["ipfix_softflowd.dat"],
    "ixia": ["ipfix_test_ixia_tpldata256.dat"],
    "juniper": [
        "ipfix_test_juniper_mx240_junos151r6s3_opttpl512.dat",
        "ipfix_test_juniper_mx240_junos151r6s3_data512.dat",
    ],
    "mikrotik": ["ipfix_test_mikrotik_tpl.dat", "ipfix_test_mikrotik_data258.dat"],
    "netscaler": ["ipfix_test_netscaler_tpl.dat", "ipfix_test_netscaler_data.dat"],
    "openbsd": ["ipfix_test_openbsd_pflow_tpl.dat", "ipfix_test_openbsd_pflow_data.dat"],
}  # fmt: skip
#: Errors the exporters' own files contain (ipfixDump reports the same).
EXPECTED_ERRORS = {"netscaler": {"missing_template": 1}}


def group_bytes(samples: Path, name: str) -> bytes:
    """The group's files back to back, as one stream."""
    return b"".join((samples / LS / f).read_bytes() for f in GROUPS[name])


def decode_all(data: bytes, session="s"):
    """(decoder, flows, records, options) of a stream decoded in one session."""
    decoder = Decoder()
    flows, records, options = [], [], []
    for _, msg in iter_messages(data):
        result = decoder.decode_message(msg, session, records=True, now=0.0)
        flows.append(result.flows)
        records.extend(result.records)
        options.extend(result.options)
    return decoder, np.concatenate(flows), records, options


def error_counts(decoder: Decoder) -> dict:
    """The decoder's error counters, without the ``error_`` prefix."""
    return {k[6:]: v for k, v in decoder.counters.items() if k.startswith("error_")}


# --- ipfixDump -----------------------------------------------------------------------------

_FIELD = re.compile(r"^\t*\((?:(\d+)/)?(\d+)\)(?: \(S\))?\s*(\S+) : ?(.*)$")
_TOP_TID = re.compile(r"^\tcount:\s+\d+\s+tid:\s+(\d+)")
_TPL_TID = re.compile(r"^\ttid:\s+(\d+)")


def ipfixdump(path: Path) -> tuple[list[list], list[list]]:
    """ipfixDump's records of a file: (plain records, options records), fields in order."""
    tool = require_tool("ipfixDump")
    text = subprocess.run(
        [tool, "--yaf", "--hexdump=65535", "--in", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    options_tids, records, in_options = set(), [], False
    for line in text.splitlines():
        if line.startswith("--- options template record"):
            in_options = True
        elif in_options and (m := _TPL_TID.match(line)):
            options_tids.add(int(m.group(1)))
            in_options = False
        elif line.startswith("--- data record"):
            records.append([None, []])
        elif records and records[-1][0] is None and (m := _TOP_TID.match(line)):
            records[-1][0] = int(m.group(1))
        elif records and (m := _FIELD.match(line)):
            pen, eid, _, value = m.groups()
            records[-1][1].append((int(pen or 0), int(eid), value))
    plain = [fields for tid, fields in records if tid not in options_tids]
    options = [fields for tid, fields in records if tid in options_tids]
    return plain, options


def same_value(element, ours, text: str) -> bool:
    """True when our decoded value prints as ipfixDump's text."""
    if m := re.fullmatch(r"\(len: (\d+)\)(?: 0x([0-9a-f]*))?", text):
        return len(ours) == int(m.group(1)) and (m.group(2) is None or ours.hex() == m.group(2))
    if m := re.fullmatch(r"\(len: (\d+)\) (.*)", text):
        return isinstance(ours, str) and len(ours.encode()) == int(m.group(1)) and ours == m[2]
    if isinstance(ours, datetime):
        stamp = ours.strftime("%Y-%m-%d %H:%M:%S")
        if element.type == "dateTimeMilliseconds":
            stamp += f".{ours.microsecond // 1000:03d}"
        return text == stamp if element.type != "dateTimeMicroseconds" else text[:19] == stamp
    if isinstance(ours, bytes):
        return int.from_bytes(ours, "little") == int(text)
    if isinstance(ours, float):
        return abs(float(text) - ours) <= 1e-6 * max(1.0, abs(ours))
    if isinstance(ours, int):
        return int(text) == ours
    if element.type == "ipv6Address":
        return ipaddress.IPv6Address(text) == ipaddress.IPv6Address(ours)
    return str(ours) == text


def compare_record(dumped: list, ours: dict) -> int:
    """Assert every field ipfixDump printed has our same value; returns fields checked."""
    by_name: dict[str, list] = {}
    elements = {}
    for pen, eid, text in dumped:
        element = lookup(pen, eid)
        if element.name == "paddingOctets" or text == "" or element.type == "basicList":
            continue
        by_name.setdefault(element.name, []).append(text)
        elements[element.name] = element
    for name, texts in by_name.items():
        assert name in ours, f"{name} missing from {sorted(ours)}"
        value = ours[name]
        values = list(value) if getattr(value, "repeated", False) else [value]
        assert len(values) == len(texts), name
        for got, text in zip(values, texts):
            assert same_value(elements[name], got, text), f"{name}: {got!r} != {text!r}"
    return len(by_name)


def check_against_ipfixdump(path: Path, records: list, options: list) -> None:
    """Every record and options record matches ipfixDump's decode field by field."""
    plain, dumped_options = ipfixdump(path)
    assert len(plain) == len(records)
    assert len(dumped_options) == len(options)
    checked = sum(compare_record(d, r) for d, r in zip(plain, records))
    checked += sum(compare_record(d, r) for d, r in zip(dumped_options, options))
    assert checked > 0


def check_flows_match_records(flows: np.ndarray, records: list) -> None:
    """The vectorized flow table holds the same values as the per-record decode."""
    flow_records = [r for r in records if _is_flow(r)]
    assert len(flows) == len(flow_records)
    for row, record in zip(flows, flow_records):
        for column, names in COLUMN_SOURCES.items():
            name = next((n for n in names if n in record), None)
            if name is None or "SysUpTime" in name or "Duration" in name:
                continue
            value = record[name]
            if getattr(value, "repeated", False):
                value = value[0]
            if isinstance(value, datetime):
                value = round(value.timestamp() * 1000)
                assert abs(int(row[column]) - value) <= 1, column
            elif name.endswith("Address") and "Mac" not in name:
                assert unpack_address(row[column], int(row["ipVersion"])) == value, column
                assert (row[column] == pack_address(value)).all()
            elif "MacAddress" in name:
                assert int(row[column]) == mac_to_int(value), column
            else:
                assert int(row[column]) == value, column


def _is_flow(record: dict) -> bool:
    keys = (
        "sourceIPv4Address",
        "destinationIPv4Address",
        "sourceIPv6Address",
        "destinationIPv6Address",
        "sourceTransportPort",
        "destinationTransportPort",
    )
    return any(k in record for k in keys)


@pytest.mark.parametrize("name", YAF_FILES)
def test_files_match_ipfixdump(samples, name):
    """YAF's and ipfixcol2's files decode without errors and as ipfixDump decodes them."""
    path = samples / name
    decoder, flows, records, options = decode_all(path.read_bytes(), session=str(path))
    assert error_counts(decoder) == {}
    assert len(flows) > 0
    check_against_ipfixdump(path, records, options)
    check_flows_match_records(flows, records)
    assert len(decode_file(path, strict=True)) == len(flows)


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_udp_exports_match_ipfixdump(samples, tmp_path, name):
    """Each exporter's templates then data, in one session, decode as ipfixDump does."""
    data = group_bytes(samples, name)
    decoder, flows, records, options = decode_all(data, session=("udp", name, 4739))
    assert error_counts(decoder) == EXPECTED_ERRORS.get(name, {})
    path = tmp_path / f"{name}.ipfix"
    path.write_bytes(data)
    check_against_ipfixdump(path, records, options)
    check_flows_match_records(flows, records)


def test_documented_udp_flow_values(samples):
    """The README's expected values for the UDP flow of yaf_flowstats_biflow.yaf."""
    flows = decode_file(samples / YAF_FILES[0], strict=True)
    udp = flows[flows["protocolIdentifier"] == 17]
    assert len(udp) == 1
    row = udp[0]
    assert row["smallPacketCount"] == 1
    assert row["dataByteCount"] == 500
    assert row["averageInterarrivalTime"] == 50
    assert row["standardDeviationPayloadLength"] == 56
    assert row["reverseLargePacketCount"] == 5
    assert row["firstEightNonEmptyPacketDirections"] == 0xAA


def test_mac_sub_records_reach_the_flow_table(samples):
    """yaf --mac puts MACs in a sub-record; they land in the flow table."""
    flows = decode_file(samples / YAF_FILES[2], strict=True)
    macs = set(flows["sourceMacAddress"].tolist())
    assert mac_to_int("20:f8:5e:ca:91:52") in macs or mac_to_int("00:17:88:24:76:ff") in macs


# --- tshark over UDP -----------------------------------------------------------------------


def write_pcap(path: Path, messages: list[bytes], port: int = 4739) -> None:
    """A pcap with each message in one UDP datagram from 127.0.0.1 to ``port``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, msg in enumerate(messages):
        udp = struct.pack("!HHHH", 40000, port, 8 + len(msg), 0) + msg
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
            b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x01",
        ) + udp  # fmt: skip
        frame = bytes(12) + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


TSHARK_FIELDS = ["cflow.srcaddr", "cflow.dstaddr", "cflow.srcport", "cflow.dstport",
                 "cflow.protocol", "cflow.srcaddrv6", "cflow.permanent_packets"]  # fmt: skip


def tshark_values(pcap: Path) -> dict[str, list[str]]:
    """Each field's values over the whole capture, in record order."""
    tool = require_tool("tshark")
    cmd = [tool, "-r", str(pcap), "-d", "udp.port==4739,cflow", "-T", "fields", "-E",
           "aggregator=,"]  # fmt: skip
    for name in TSHARK_FIELDS:
        cmd += ["-e", name]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    out = {name: [] for name in TSHARK_FIELDS}
    for line in text.splitlines():
        for name, cell in zip(TSHARK_FIELDS, line.split("\t")):
            out[name] += [v for v in cell.split(",") if v]
    return out


@pytest.mark.parametrize("name", [YAF_FILES[0], YAF_FILES[2], "yaf_bench", "openbsd"])
def test_udp_capture_matches_tshark(samples, tmp_path, name):
    """Flow keys and packet counters agree with tshark's cflow dissector."""
    data = group_bytes(samples, name) if name in GROUPS else (samples / name).read_bytes()
    messages = [m for _, m in iter_messages(data)]
    pcap = tmp_path / "x.pcap"
    write_pcap(pcap, messages)
    seen = tshark_values(pcap)
    decoder = Decoder()
    results = [decoder.decode_message(m, ("udp", "127.0.0.1", 40000), now=0.0) for m in messages]
    flows = np.concatenate([r.flows for r in results])
    v4 = flows[flows["ipVersion"] == 4]
    v6 = flows[flows["ipVersion"] == 6]
    assert seen["cflow.srcaddr"] == [unpack_address(a, 4) for a in v4["sourceAddress"]]
    assert seen["cflow.dstaddr"] == [unpack_address(a, 4) for a in v4["destinationAddress"]]
    assert seen["cflow.srcaddrv6"] == [unpack_address(a, 6) for a in v6["sourceAddress"]]
    ports = [str(p) for p in flows["sourceTransportPort"]]
    assert [p for p in seen["cflow.srcport"]] == ports
    assert seen["cflow.protocol"] == [str(p) for p in flows["protocolIdentifier"]]
    if name in (YAF_FILES[0], YAF_FILES[2]):
        reverse = flows["reversePacketTotalCount"]
        counts = flows["packetTotalCount"].tolist() + reverse[reverse > 0].tolist()
        counts += [o["packetTotalCount"] for r in results for o in r.options if o.get(
            "packetTotalCount") is not None]  # fmt: skip
        assert Counter(seen["cflow.permanent_packets"]) == Counter(str(v) for v in counts)


# --- softflowd, run here on the sample pcap ------------------------------------------------


def run_softflowd(pcap: Path) -> list[bytes]:
    """The IPFIX datagrams softflowd (``-v 10``) exports for a pcap, received over UDP."""
    tool = require_tool("softflowd")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    port = sock.getsockname()[1]
    with sock:
        subprocess.run(
            [tool, "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", "10", "-d"],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        datagrams = []
        try:
            while True:
                datagrams.append(sock.recv(65535))
        except TimeoutError:
            pass
    return datagrams


def test_softflowd_export_matches_ipfixdump_and_yaf(samples, tmp_path):
    """softflowd's IPFIX of the sample pcap decodes as ipfixDump does, with YAF's times."""
    pcap = samples / "yaf-2.16.4-local/input_loopback_http_udp.pcap"
    datagrams = run_softflowd(pcap)
    assert datagrams
    decoder, flows, records, options = decode_all(b"".join(datagrams), ("udp", "sfd", 1))
    assert error_counts(decoder) == {}
    path = tmp_path / "softflowd.ipfix"
    path.write_bytes(b"".join(datagrams))
    check_against_ipfixdump(path, records, options)
    check_flows_match_records(flows, records)

    yaf = decode_file(samples / YAF_FILES[0], strict=True)
    for row in yaf:
        same = flows[
            (flows["sourceTransportPort"] == row["sourceTransportPort"])
            & (flows["destinationTransportPort"] == row["destinationTransportPort"])
        ]
        assert len(same) == 1
        start = int(same["flowStartMilliseconds"][0])
        assert abs(start - int(row["flowStartMilliseconds"])) <= 1, "exporters round apart"
        assert same["packetTotalCount"][0] == row["packetTotalCount"]


@pytest.mark.parametrize("name", YAF_FILES)
def test_native_and_numpy_paths_agree_on_real_files(samples, monkeypatch, name):
    """The compiled helper and its numpy twin give identical flow tables on real files."""
    if flowplan._native is None:
        pytest.skip("agent.ipfix._native not built")
    native = decode_file(samples / name, strict=True)
    monkeypatch.setattr(flowplan, "_native", None)
    fallback = decode_file(samples / name, strict=True)
    assert len(native) > 0
    assert native.tobytes() == fallback.tobytes()
