"""Bad input: every malformed message is rejected with a counted reason, never raised."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ipfix_decode import (
    FLOW_TID,
    STATS_TID,
    data_set,
    message,
    stml,
    template_set,
    varlen,
    yaf_record,
    yaf_templates,
)

from agent.errors import DecodeError
from agent.ipfix import Decoder

GOOD = message(yaf_templates(), data_set(FLOW_TID, b"".join(yaf_record(i) for i in range(4))))


def decode_fresh(buf: bytes):
    """Decode ``buf`` with a fresh decoder that already knows the YAF-like templates."""
    decoder = Decoder()
    decoder.decode_message(message(yaf_templates()), "s")
    return decoder, decoder.decode_message(buf, "s", records=True)


def with_length(msg: bytes, length: int) -> bytes:
    """The message with its header length field replaced."""
    return msg[:2] + struct.pack("!H", length) + msg[4:]


CASES = {
    "truncated message": (GOOD[:40], "bad_header"),
    "length past the buffer": (with_length(GOOD, len(GOOD) + 100), "bad_header"),
    "version 9": (b"\x00\x09" + GOOD[2:], "bad_header"),
    "shorter than a header": (GOOD[:10], "bad_header"),
    "zero-length set": (message(struct.pack("!HH", 256, 0) + b"\x00" * 8), "bad_set"),
    "set past message end": (message(struct.pack("!HH", FLOW_TID, 400) + b"\x00" * 8), "bad_set"),
    "reserved set id": (message(struct.pack("!HH", 7, 8) + bytes(4)), "reserved_set_id"),
    "template with zero-length records": (
        message(template_set(300, [(8, 0), (12, 0)])),
        "bad_template",
    ),
    "too many fields": (
        message(struct.pack("!HHHH", 2, 8 + 4 * 600, 300, 600) + b"\x00\x08\x00\x04" * 600),
        "bad_template",
    ),
    "field count past the set": (
        message(struct.pack("!HHHH", 2, 12, 300, 5) + b"\x00\x08\x00\x04"),
        "bad_template",
    ),
    "template id below 256": (message(template_set(100, [(8, 4)])), "bad_template"),
    "options scope count 0": (
        message(struct.pack("!HHHHH", 3, 14, 300, 1, 0) + b"\x00\x08\x00\x04"),
        "bad_template",
    ),
    "record cut short": (
        message(template_set(300, [(82, 0xFFFF), (8, 4)]), data_set(300, b"\x03abc\x00")),
        "bad_data_set",
    ),
    "varlen past the end": (
        message(data_set(FLOW_TID, yaf_record(1)[:62] + b"\xff\x10\x00" + bytes(10))),
        "varlen_past_end",
    ),
    "unknown list semantic": (
        message(data_set(FLOW_TID, yaf_record(1)[:62] + varlen(stml([], semantic=9)))),
        "unknown_list_semantic",
    ),
    "list entry length out of bounds": (
        message(
            data_set(FLOW_TID, yaf_record(1)[:62] + varlen(b"\x03" + struct.pack("!HH", 1, 99)))
        ),
        "bad_list",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_is_rejected_with_a_reason(name):
    """Each kind of malformed message gives an error and bumps its named counter."""
    buf, code = CASES[name]
    decoder, result = decode_fresh(buf)
    assert isinstance(result.error, DecodeError), name
    assert result.error.code == code
    assert decoder.counters["error_" + code] >= 1
    assert str(result.error)


def test_recursion_in_structured_data_is_capped():
    """A subTemplateList that names its own template stops at the depth cap."""
    tid = 900
    decoder = Decoder()
    decoder.decode_message(message(template_set(tid, [(292, 0xFFFF)])), "s")
    inner = b""
    for _ in range(20):
        inner = varlen(bytes([3]) + struct.pack("!H", tid) + inner, long=True)
    result = decoder.decode_message(message(data_set(tid, inner)), "s", records=True)
    assert result.error is not None and result.error.code == "nesting_too_deep"


def test_a_bad_set_keeps_the_good_sets_of_the_message():
    """Records of good sets in the same message are still returned."""
    good = data_set(FLOW_TID, yaf_record(1))
    bad = data_set(FLOW_TID, yaf_record(2)[:62] + varlen(stml([], semantic=9)))
    _decoder, result = decode_fresh(message(good, bad))
    assert len(result.flows) == 1 and result.error.code == "unknown_list_semantic"


def test_padding_after_records_is_not_an_error():
    """Zero padding shorter than a record at the end of a set is ignored."""
    tpl = template_set(300, [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1)])
    rec = bytes(13)
    decoder = Decoder()
    result = decoder.decode_message(message(tpl, data_set(300, rec * 2 + bytes(3))), "s")
    assert result.error is None and len(result.flows) == 2


def test_non_zero_remainder_of_a_set_is_counted():
    """Octets after the last fixed-length record that are not zero padding are counted."""
    tpl = template_set(300, [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1)])
    decoder = Decoder()
    result = decoder.decode_message(message(tpl, data_set(300, bytes(13) + b"\x01\x02")), "s")
    assert len(result.flows) == 1
    assert decoder.counters["set_length_mismatch"] == 1


def test_sub_record_shorter_than_its_template_is_not_read():
    """A statistics entry too short for its template leaves the stats at zero."""
    short = varlen(stml([(STATS_TID, b"\x00" * 5)]))
    _decoder, result = decode_fresh(message(data_set(FLOW_TID, yaf_record(1)[:62] + short)))
    assert len(result.flows) == 1 and result.flows["dataByteCount"][0] == 0


@st.composite
def mutated(draw):
    """A valid message with bit flips, a truncation, or a rewritten length field."""
    buf = bytearray(GOOD)
    kind = draw(st.sampled_from(["flip", "truncate", "length", "setlength", "splice"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(buf) - 1))
            buf[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        buf = buf[: draw(st.integers(0, len(buf) - 1))]
    elif kind == "length":
        buf[2:4] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    elif kind == "setlength":
        pos = draw(st.sampled_from([18, 16 + struct.unpack_from("!H", GOOD, 18)[0] + 2]))
        buf[pos : pos + 2] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    else:
        pos = draw(st.integers(16, len(buf) - 1))
        buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        buf[2:4] = struct.pack("!H", min(len(buf), 0xFFFF))
    return bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_messages_never_raise(buf):
    """decode_message returns for any mutation, with flows of the right dtype."""
    decoder = Decoder(max_templates_per_session=16)
    result = decoder.decode_message(buf, "s", records=True)
    assert result.flows.dtype.names[0] == "flowStartMilliseconds"
    assert "error_internal_error" not in decoder.counters
    again = decoder.decode_message(buf, "s", records=True)
    assert len(again.flows) == len(result.flows)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_never_raise(buf):
    """Arbitrary octets, with or without a valid header, never raise."""
    decoder = Decoder()
    body = message(buf) if buf[:1] == b"\x01" else buf
    result = decoder.decode_message(body, ("udp", "x", 1), records=True, now=0.0)
    assert "error_internal_error" not in decoder.counters
    assert result.flows is not None


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_random_data_sets_match_between_paths(payload):
    """For any data set body, the native and numpy paths agree or both reject it."""
    from agent.ipfix import flowplan

    if flowplan._native is None:
        pytest.skip("agent.ipfix._native not built")
    decoder, _ = decode_fresh(message(data_set(FLOW_TID, yaf_record(1))))
    plan = decoder.plan_for("s", 1, decoder.templates.get("s", 1, FLOW_TID, 0))
    outcomes = []
    for use_native in (True, False):
        try:
            outcomes.append(("ok", flowplan.decode_flows(payload, plan, use_native=use_native)))
        except ValueError as exc:
            outcomes.append((str(exc), exc.rows))
    assert outcomes[0][0] == outcomes[1][0]
    assert outcomes[0][1].tobytes() == outcomes[1][1].tobytes()


def test_odd_field_lengths_are_skipped_not_misread():
    """A time or counter field longer than 8 octets is not put in the flow table."""
    from agent.ipfix import flowplan

    tpl = template_set(300, [(8, 4), (152, 12), (86, 9), (7, 2)])
    rec = bytes([10, 0, 0, 1]) + bytes(range(1, 13)) + bytes(range(9)) + b"\x00\x35"
    rows = []
    for native in (True, False):
        if native and flowplan._native is None:
            continue
        decoder = Decoder()
        saved = flowplan._native
        flowplan._native = flowplan._native if native else None
        try:
            result = decoder.decode_message(message(tpl, data_set(300, rec)), "s")
        finally:
            flowplan._native = saved
        assert result.error is None and "error_internal_error" not in decoder.counters
        assert result.flows["flowStartMilliseconds"][0] == 0
        assert result.flows["sourceTransportPort"][0] == 53
        rows.append(result.flows.tobytes())
    assert len(set(rows)) == 1
