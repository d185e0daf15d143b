"""Flow meter against YAF 2.16.4's own output, both engines, pcapng, damaged captures, CLI."""

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool

from agent.flows import FLOW_DTYPE, mac_to_int, pack_address
from benchmarks.bench_meter import make_capture
from compile.meter import meter_pcap, native
from compile.meter.cli import main
from compile.meter.decode import DROP_REASONS
from compile.meter.records import RAW_DTYPE

YAF_CASES = [
    ("input_loopback_http_udp.pcap", "yaf_flowstats_biflow.ipfixDump.txt"),
    ("iot_sentinel_setup_subset.pcap", "iot_sentinel_setup_subset.ipfixDump.txt"),
]
_FIELD = re.compile(r"^\t+\((?:\d+/)?\d+\)\s*(\w+) : ?(.*)$")
_HEADER = re.compile(r"^\tcount: +\d+ +tid: +\d+ \((0x[0-9a-f]+)\)")


def parse_ipfixdump(path: Path) -> np.ndarray:
    """Flow records of an ``ipfixDump --yaf`` text (sub-records flattened) as FLOW_DTYPE."""
    records, current = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("--- data record"):
            current = {}
            records.append(current)
        elif current is not None and "tid" not in current and (m := _HEADER.match(line)):
            current["tid"] = int(m.group(1), 16)
        elif current is not None and (m := _FIELD.match(line)):
            current.setdefault(m.group(1), m.group(2).strip())
    records = [r for r in records if r.get("tid", 0) & 0xF000 == 0xB000]

    flows = np.zeros(len(records), FLOW_DTYPE)
    for row, record in zip(flows, records):
        for name in ("flowStartMilliseconds", "flowEndMilliseconds"):
            when = datetime.strptime(record[name], "%Y-%m-%d %H:%M:%S.%f")
            row[name] = round(when.replace(tzinfo=UTC).timestamp() * 1000)
        version = 4 if "sourceIPv4Address" in record else 6
        row["ipVersion"] = version
        row["sourceAddress"] = pack_address(record[f"sourceIPv{version}Address"])
        row["destinationAddress"] = pack_address(record[f"destinationIPv{version}Address"])
        for name in FLOW_DTYPE.names:
            if name in record and name not in ("flowStartMilliseconds", "flowEndMilliseconds"):
                value = record[name]
                row[name] = mac_to_int(value) if "MacAddress" in name else int(value)
    return flows


def by_key(flows: np.ndarray) -> dict:
    """Flows keyed by 5-tuple and start time."""
    return {
        (
            bytes(f["sourceAddress"]),
            bytes(f["destinationAddress"]),
            int(f["sourceTransportPort"]),
            int(f["destinationTransportPort"]),
            int(f["protocolIdentifier"]),
            int(f["flowStartMilliseconds"]),
        ): f
        for f in flows
    }


def assert_same_flows(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Same flows, every FLOW_DTYPE field equal, named on mismatch."""
    mine, yaf = by_key(ours), by_key(theirs)
    assert len(mine) == len(ours) and len(yaf) == len(theirs)
    assert set(mine) == set(yaf)
    wrong = [
        (key[2:], name, yaf[key][name], mine[key][name])
        for key in yaf
        for name in FLOW_DTYPE.names
        if not np.array_equal(yaf[key][name], mine[key][name])
    ]
    assert not wrong, wrong[:10]


ENGINES = [
    "python",
    pytest.param(
        "native",
        marks=pytest.mark.skipif(not native.available(), reason="compiled meter not built"),
    ),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("pcap", "dump"), YAF_CASES)
def test_matches_yaf_field_by_field(samples, pcap, dump, engine):
    """Every record field equals what YAF 2.16.4 wrote for the same capture."""
    folder = samples / "yaf-2.16.4-local"
    flows, counters = meter_pcap(folder / pcap, engine=engine)
    yaf = parse_ipfixdump(folder / dump)
    assert_same_flows(flows, yaf)
    assert counters["flows"] == len(yaf) > 0


def test_yaf_readme_values(samples):
    """The UDP flow of the loopback capture has the values the samples' README lists."""
    flows, _ = meter_pcap(samples / "yaf-2.16.4-local" / "input_loopback_http_udp.pcap")
    udp = flows[flows["protocolIdentifier"] == 17][0]
    assert (udp["smallPacketCount"], udp["dataByteCount"]) == (1, 500)
    assert (udp["averageInterarrivalTime"], udp["standardDeviationPayloadLength"]) == (50, 56)
    assert udp["reverseLargePacketCount"] == 5
    assert udp["firstEightNonEmptyPacketDirections"] == 0xAA


def test_native_layout_matches_raw_dtype():
    """The C record struct and RAW_DTYPE agree on size and every offset."""
    if not native.available():
        pytest.skip("compiled meter not built")
    assert native.ffi.sizeof("struct meter_flow") == RAW_DTYPE.itemsize
    for name in RAW_DTYPE.names:
        assert native.ffi.offsetof("struct meter_flow", name) == RAW_DTYPE.fields[name][1]


def test_engines_identical_on_replicated_capture(samples, tmp_path):
    """C and Python engines give identical records, order and counters on a larger capture."""
    if not native.available():
        pytest.skip("compiled meter not built")
    path = tmp_path / "big.pcap"
    make_capture(path, 12_000, samples / "yaf-2.16.4-local" / "iot_sentinel_setup_subset.pcap")
    fast, fast_counters = meter_pcap(path, engine="native", chunk=5000)
    slow, slow_counters = meter_pcap(path, engine="python", chunk=7000)
    assert len(fast) > 500
    assert np.array_equal(fast, slow) and fast_counters == slow_counters


@pytest.mark.parametrize("engine", ENGINES)
def test_pcapng_same_as_pcap(samples, tmp_path, engine):
    """A pcapng conversion (editcap -F pcapng) of a capture meters to the same records."""
    editcap = require_tool("editcap")
    source = samples / "yaf-2.16.4-local" / "iot_sentinel_setup_subset.pcap"
    converted = tmp_path / "c.pcapng"
    subprocess.run([editcap, "-F", "pcapng", str(source), str(converted)], check=True)
    flows, counters = meter_pcap(converted, engine=engine)
    expected, expected_counters = meter_pcap(source, engine=engine)
    assert np.array_equal(flows, expected)
    assert counters["metered"] == expected_counters["metered"] > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_mutated_captures_never_fatal(samples, tmp_path, engine):
    """Random byte damage inside packets: each record metered or counted once, both engines
    alike, never fatal."""
    source = (samples / "yaf-2.16.4-local" / "iot_sentinel_setup_subset.pcap").read_bytes()
    rng = np.random.default_rng(7)
    for round_ in range(4):
        data = np.frombuffer(source, np.uint8).copy()
        spots = rng.integers(24 + 16, len(data), 400)
        data[spots] = rng.integers(0, 256, len(spots))
        path = tmp_path / f"m{round_}.pcap"
        path.write_bytes(data.tobytes())
        flows, counters = meter_pcap(path, engine=engine)
        per_record = DROP_REASONS + ("out_of_sequence", "fragments", "fragment_out_of_sequence")
        assert sum(counters[name] for name in per_record) == counters["records"]
        assert counters["records"] > 0 and len(flows) == counters["flows"]
        if native.available():
            other, _ = meter_pcap(path, engine="python" if engine == "native" else "native")
            assert np.array_equal(flows, other)


@pytest.mark.parametrize("engine", ENGINES)
def test_truncated_and_corrupt_capture_files(samples, tmp_path, engine):
    """A file cut inside a record, or a record with an absurd length, ends reading there."""
    source = (samples / "yaf-2.16.4-local" / "input_loopback_http_udp.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(source[: len(source) // 2 + 5])
    flows, counters = meter_pcap(cut, engine=engine)
    assert counters["capture_truncated"] == 1 and 0 < counters["records"] < 82
    assert len(flows) > 0

    corrupt = bytearray(source)
    corrupt[24 + 8 : 24 + 12] = (10**7).to_bytes(4, "little")
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(corrupt))
    flows, counters = meter_pcap(bad, engine=engine)
    assert counters["capture_corrupt"] == 1 and counters["records"] == 0 and len(flows) == 0

    editcap = shutil.which("editcap")
    if editcap:
        ng = tmp_path / "c.pcapng"
        subprocess.run(
            [editcap, "-F", "pcapng", str(tmp_path / "cut.pcap"), str(ng)],
            check=True,
            capture_output=True,
        )
        ng.write_bytes(ng.read_bytes()[:-30])
        _, counters = meter_pcap(ng, engine=engine)
        assert counters["capture_truncated"] == 1


def test_cli_writes_yaf_ipfix_that_decodes_back(samples, tmp_path):
    """The command writes YAF-format IPFIX whose decoded records equal the meter's."""
    from agent.ipfix import decode_file

    source = samples / "yaf-2.16.4-local" / "iot_sentinel_setup_subset.pcap"
    out = tmp_path / "out.yaf"
    assert main([str(source), "--out", str(out)]) == 0
    flows, _ = meter_pcap(source)
    assert_same_flows(decode_file(out), flows)


def test_cli_ipfix_read_by_ipfixdump_equals_yaf(samples, tmp_path):
    """libfixbuf's ipfixDump reads the command's file as the same flows YAF wrote."""
    ipfixdump = require_tool("ipfixDump")
    folder = samples / "yaf-2.16.4-local"
    out, text = tmp_path / "out.yaf", tmp_path / "out.txt"
    assert main([str(folder / "iot_sentinel_setup_subset.pcap"), "--out", str(out)]) == 0
    with open(text, "w") as handle:
        subprocess.run([ipfixdump, "--yaf", "--in", str(out)], stdout=handle, check=True)
    assert_same_flows(
        parse_ipfixdump(text), parse_ipfixdump(folder / "iot_sentinel_setup_subset.ipfixDump.txt")
    )


def test_cli_json_and_bad_input(samples, tmp_path, capsys):
    """--json writes Super Mediator JSON lines; a non-capture exits 2 with a message."""
    from agent.ipfix.smjson import read_smjson

    source = samples / "yaf-2.16.4-local" / "input_loopback_http_udp.pcap"
    out = tmp_path / "out.json"
    assert main([str(source), "--out", str(out), "--json"]) == 0
    flows, _ = meter_pcap(source)
    assert_same_flows(read_smjson(out), flows)

    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"\x00" * 100)
    assert main([str(junk), "--out", str(tmp_path / "x.yaf")]) == 2
    assert "not a pcap or pcapng" in capsys.readouterr().err


def test_iter_meter_streams_same_flows(samples, tmp_path):
    """Chunked metering yields the same flows, in order, as one call."""
    from compile.meter import iter_meter

    source = samples / "yaf-2.16.4-local" / "iot_sentinel_setup_subset.pcap"
    counters = {}
    parts = list(iter_meter(source, chunk=300, counters=counters))
    flows, expected_counters = meter_pcap(source)
    assert len(parts) > 3
    assert np.array_equal(np.concatenate(parts), flows) and counters == expected_counters
