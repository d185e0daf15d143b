"""Tests of the summaries' wire format (docs/interfaces.md section 6) and numbering."""

import msgpack

from agent.metrics import Metrics
from agent.summaries import MAX_EVENTS, Summaries, decode, encode

DETECTION_KEYS = {"v", "agent", "seq", "kind", "sent_at", "model", "counters", "events"}
TRUST_KEYS = {
    "v",
    "agent",
    "seq",
    "kind",
    "sent_at",
    "model",
    "counters",
    "home",
    "window",
    "devices",
}
EVENT_KEYS = {"home", "device_type", "first_seen", "detected", "hit_time", "hit_flow"}


def event(home="h1", kind="tv"):
    return {
        "home": home,
        "device_type": kind,
        "first_seen": 10.0,
        "detected": 12.5,
        "hit_time": 2.5,
        "hit_flow": 2,
    }


def collector():
    out = []
    return out, lambda records: out.extend(records)


def test_detection_summary_has_exactly_the_contract_fields():
    """A detections summary carries the section 6 keys, typed as specified, in msgpack."""
    out, sink = collector()
    metrics = Metrics()
    metrics.inc("scored", 7)
    summaries = Summaries("bng-01", "abc123", metrics, sink)
    summaries.add_events([event()])
    summaries.flush_detections(now=1700000000.0)
    [(seq, payload, body)] = out
    doc = msgpack.unpackb(payload, raw=False)
    assert doc == body and set(doc) == DETECTION_KEYS
    assert doc["v"] == 1 and doc["kind"] == "detections" and doc["agent"] == "bng-01"
    assert seq == doc["seq"] == 1
    assert doc["sent_at"] == 1700000000.0 and doc["model"] == "abc123"
    assert doc["counters"]["scored"] == 7
    assert set(doc["events"][0]) == EVENT_KEYS


def test_trust_summary_fields_and_sequence():
    """Trust summaries take the next sequence numbers, one per home and window."""
    out, sink = collector()
    summaries = Summaries("bng-01", "m", Metrics(), sink, first_seq=41)
    devices = [
        {"device_type": "tv", "accepted": 3, "discarded": 1, "raw_trust": 0.9, "trust": 0.95}
    ]
    summaries.emit_trust(
        [
            ("h1", {"start": 0.0, "end": 60.0}, devices),
            ("h2", {"start": 0.0, "end": 60.0}, devices),
        ]
    )
    docs = [decode(payload) for _, payload, _ in out]
    assert [d["seq"] for d in docs] == [41, 42]
    assert all(set(d) == TRUST_KEYS and d["kind"] == "trust" for d in docs)
    assert [d["home"] for d in docs] == ["h1", "h2"]
    assert summaries.next_seq == 43


def test_events_are_split_into_bounded_summaries():
    """More than MAX_EVENTS queued events become several summaries, none lost."""
    out, sink = collector()
    summaries = Summaries("a", "m", Metrics(), sink)
    summaries.add_events([event(home=f"h{i}") for i in range(MAX_EVENTS * 2 + 3)])
    summaries.flush_detections()
    sizes = [len(body["events"]) for _, _, body in out]
    assert sizes == [MAX_EVENTS, MAX_EVENTS, 3]
    assert [body["seq"] for _, _, body in out] == [1, 2, 3]
    assert summaries.flush_detections() == []


def test_encode_decode_round_trip():
    """encode and decode are inverses for a summary body."""
    body = {"v": 1, "agent": "x", "seq": 3, "kind": "trust", "counters": {"a": 1}}
    assert decode(encode(body)) == body
