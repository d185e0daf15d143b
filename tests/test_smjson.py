"""Super Mediator JSON lines: the documented quirks, round trips, and errors by line."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import DecodeError
from agent.flows import FLOW_DTYPE, mac_to_int, pack_address
from agent.ipfix.smjson import iter_smjson_records, read_smjson, write_smjson
from tests.test_ipfix_writer import make_flows

SNIPPET = """\
{"flows": {"flowStartMilliseconds": "2019-06-25 08:36:47.096", \
"flowEndMilliseconds": "2019-06-25 08:36:48.196", "flowDurationMilliseconds": 1.100, \
"reverseFlowDeltaMilliseconds": 0.012, "protocolIdentifier": 6, \
"sourceIPv4Address": "192.168.1.23", "sourceTransportPort": 49152, \
"packetTotalCount": 12, "octetTotalCount": 1532, "sourceMacAddress": "20:f8:5e:ca:91:52:", \
"destinationIPv4Address": "52.1.2.3", "destinationTransportPort": 443, \
"reversePacketTotalCount": 10, "reverseOctetTotalCount": 8211, \
"destinationMacAddress": "14:cc:20:51:33:ea:", "initialTCPFlags": "0x02", \
"unionTCPFlags": "0x1b", "tcpSequenceNumber": "0x7995b946", \
"reverseTcpSequenceNumber": "0x6eaf3a53", "flowEndReason": 3, "smallPacketCount": 3, \
"nonEmptyPacketCount": 7, "dataByteCount": 1100, "averageInterarrivalTime": 91, \
"firstNonEmptyPacketSize": 117, "largePacketCount": 1, "maxPacketSize": 583, \
"firstEightNonEmptyPacketDirections": "0xaa", "standardDeviationPayloadLength": 56, \
"standardDeviationInterarrivalTime": 120, "reverseSmallPacketCount": 2, \
"reverseDataByteCount": 7700, "reverseLargePacketCount": 5, "observationDomainId": 0}}
{"stats": {"exportedFlowRecordTotalCount": 2, "packetTotalCount": 23}}
{"tombstone": {"tombstoneId": 1, "observationTimeSeconds": "2019-06-25 08:40:00"}}

{"flows": {"flowStartMilliseconds": "2019-06-25 08:37:00.001", \
"flowEndMilliseconds": "2019-06-25 08:37:00.001", "protocolIdentifier": 17, \
"sourceIPv6Address": "fe80::1", "sourceTransportPort": 5353, "packetTotalCount": 1, \
"octetTotalCount": 90, "sourceMacAddress": "00:17:88:24:76:ff:", \
"destinationIPv6Address": "ff02::fb", "destinationTransportPort": 5353, \
"destinationMacAddress": "33:33:00:00:00:fb:", "flowEndReason": "idle", \
"dataByteCount": 42, "smallPacketCount": 1, "nonEmptyPacketCount": 1}}
"""


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000 + 0.5)


def test_read_snippet_with_every_quirk(tmp_path):
    """A hand-made file in the documented format reads to the values it states."""
    path = tmp_path / "sm.json"
    path.write_text(SNIPPET)
    counters = {}
    flows = read_smjson(path, counters=counters)
    assert counters == {"flows": 2, "stats": 1, "tombstone": 1}
    assert flows.dtype == FLOW_DTYPE and len(flows) == 2
    first, second = flows
    assert first["flowStartMilliseconds"] == _ms("2019-06-25 08:36:47.096")
    assert first["flowEndMilliseconds"] - first["flowStartMilliseconds"] == 1100
    assert first["ipVersion"] == 4 and second["ipVersion"] == 6
    assert bytes(first["sourceAddress"]) == pack_address("192.168.1.23").tobytes()
    assert bytes(second["destinationAddress"]) == pack_address("ff02::fb").tobytes()
    assert first["sourceMacAddress"] == mac_to_int("20:f8:5e:ca:91:52")
    assert first["firstEightNonEmptyPacketDirections"] == 0xAA
    assert first["reverseLargePacketCount"] == 5 and first["reverseDataByteCount"] == 7700
    assert first["standardDeviationPayloadLength"] == 56 and first["flowEndReason"] == 3
    assert second["flowEndReason"] == 1
    assert second["reversePacketTotalCount"] == 0 and second["reverseDataByteCount"] == 0


def test_records_are_keyed_like_the_decoder(tmp_path):
    """Dicts carry element names, ints for hex text, UTC datetimes, MACs without the colon."""
    path = tmp_path / "sm.json"
    path.write_text(SNIPPET)
    counters = {}
    records = list(iter_smjson_records(path, counters=counters))
    assert len(records) == 2 and counters["stats"] == 1 and counters["tombstone"] == 1
    first, second = records
    assert first["unionTCPFlags"] == 0x1B and first["tcpSequenceNumber"] == 0x7995B946
    assert first["sourceMacAddress"] == "20:f8:5e:ca:91:52"
    assert first["flowStartMilliseconds"] == datetime(2019, 6, 25, 8, 36, 47, 96000, UTC)
    assert first["reverseOctetTotalCount"] == 8211
    assert not any(key.startswith("reverse") for key in second)


def test_write_then_read_is_lossless(tmp_path):
    """write_smjson then read_smjson gives back every column of a mixed table."""
    flows = make_flows(400, seed=21)
    flows["observationDomainId"] = 3
    path = tmp_path / "out.json"
    assert write_smjson(path, flows) == len(flows)
    back = read_smjson(path)
    for name in FLOW_DTYPE.names:
        assert np.array_equal(back[name], flows[name]), name


def test_written_lines_follow_the_format(tmp_path):
    """Written lines use space-separated UTC times, colon-ended MACs, no reverse for uniflows."""
    flows = make_flows(50, seed=2)
    path = tmp_path / "out.json"
    write_smjson(path, flows)
    lines = path.read_text().splitlines()
    records = list(iter_smjson_records(path))
    assert len(lines) == len(records) == 50
    for line, row in zip(lines, flows):
        assert '"flowStartMilliseconds": "20' in line and "." in line.split('"')[5]
        assert line.count("MacAddress") == 2 and '"sourceMacAddress": "' in line
        mac = line.split('"sourceMacAddress": "')[1].split('"')[0]
        assert mac.endswith(":") and len(mac) == 18
        assert ("reversePacketTotalCount" in line) == bool(row["reversePacketTotalCount"])


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"flows": {"flowStartMilliseconds": ', "line 3"),
        ('["flows"]', "line 3"),
        ('{"flows": 7}', "line 3"),
        (SNIPPET.splitlines()[0].replace("192.168.1.23", "not-an-address"), "line 3"),
        (SNIPPET.splitlines()[0].replace('"octetTotalCount": 1532', '"octetTotalCount": []'),
         "octetTotalCount"),
    ],
)  # fmt: skip
def test_malformed_line_names_its_number(tmp_path, bad, reason):
    """A malformed line raises DecodeError naming it, or is counted and skipped when lax."""
    lines = SNIPPET.splitlines()
    path = tmp_path / "bad.json"
    path.write_text("\n".join(lines[:2] + [bad] + lines[2:]) + "\n")
    with pytest.raises(DecodeError, match=reason):
        read_smjson(path)
    counters = {}
    flows = read_smjson(path, strict=False, counters=counters)
    assert counters["malformed"] == 1 and len(flows) == 2


def test_bad_timestamp_names_its_line(tmp_path):
    """A timestamp that is not a time is reported with the number of its line."""
    lines = SNIPPET.splitlines()
    lines[0] = lines[0].replace("2019-06-25 08:36:47.096", "yesterday")
    path = tmp_path / "bad.json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DecodeError, match="line 1"):
        read_smjson(path)


def test_lax_reading_drops_only_the_bad_timestamp_line(tmp_path):
    """Without strict, a line with a bad timestamp is counted and the others are kept."""
    lines = SNIPPET.splitlines()
    lines[0] = lines[0].replace("2019-06-25 08:36:48.196", "2019-13-45 99:99:99.999")
    path = tmp_path / "bad.json"
    path.write_text("\n".join(lines) + "\n")
    counters = {}
    flows = read_smjson(path, strict=False, counters=counters)
    assert counters["malformed"] == 1 and len(flows) == 1 and flows[0]["ipVersion"] == 6


def test_unknown_line_kinds_are_counted_with_bounded_keys(tmp_path):
    """Many distinct line kinds are counted, and beyond a cap they share one 'other' key."""
    path = tmp_path / "kinds.json"
    path.write_text("".join(f'{{"kind{i}": {{}}}}\n' for i in range(100)) + SNIPPET)
    counters = {}
    flows = read_smjson(path, counters=counters)
    assert len(flows) == 2 and len(counters) <= 40
    assert sum(v for k, v in counters.items() if k != "flows") == 102


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(["octetTotalCount", "sourceIPv4Address", "flowStartMilliseconds",
                           "sourceMacAddress", "flowEndReason", "reverseDataByteCount"]),
    value=_JSON,
)  # fmt: skip
def test_any_field_value_is_read_or_refused_cleanly(tmp_path, field, value):
    """Whatever JSON a known field holds, reading yields rows or a DecodeError, never a crash."""
    body = json.loads(SNIPPET.splitlines()[0])["flows"]
    body[field] = value
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps({"flows": body}) + "\n" + SNIPPET)
    try:
        flows = read_smjson(path)
    except DecodeError as exc:
        assert "line 1" in str(exc)
    else:
        assert len(flows) == 3
    counters = {}
    assert len(read_smjson(path, strict=False, counters=counters)) == 3 - counters.get(
        "malformed", 0
    )
    assert len(list(iter_smjson_records(path, strict=False))) >= 2
