"""Validation of summary bodies: every malformed field is refused and named."""

import copy

import msgpack
import pytest
from store_fixtures import DEVICE_TYPES, T0, detections, device, event, trust

from store.errors import SummaryError
from store.summary import MAX_EVENTS, Rules, parse

RULES = Rules(DEVICE_TYPES)
NOW = T0 + 10 * 86400


def body(doc: dict) -> bytes:
    return msgpack.packb(doc)


def mutated(doc: dict, path: tuple, value) -> dict:
    """A deep copy of ``doc`` with the item at ``path`` replaced (or removed for ...)."""
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is Ellipsis:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


BAD_DETECTIONS = [
    (("v",), 2, "v"),
    (("v",), True, "v"),
    (("agent",), "bng-02", "agent"),
    (("agent",), 5, "agent"),
    (("seq",), 0, "seq"),
    (("seq",), -3, "seq"),
    (("seq",), 1.5, "seq"),
    (("seq",), ..., "seq"),
    (("kind",), "inventory", "kind"),
    (("sent_at",), "yesterday", "sent_at"),
    (("sent_at",), float("nan"), "sent_at"),
    (("sent_at",), 12.0, "sent_at"),
    (("sent_at",), NOW + 10 * 86400, "sent_at"),
    (("model",), "", "model"),
    (("model",), "x" * 300, "model"),
    (("model",), "a\x00b", "model"),
    (("counters",), [1, 2], "counters"),
    (("counters",), {"flows": -1}, "counters.flows"),
    (("counters",), {"flows": "many"}, "counters.flows"),
    (("events",), {"home": "x"}, "events"),
    (("events",), [event("h", "Amazon Echo")] * (MAX_EVENTS + 1), "events"),
    (("events", 0), "not a map", "events[0]"),
    (("events", 0, "home"), ..., "events[0].home"),
    (("events", 0, "home"), 7, "events[0].home"),
    (("events", 0, "device_type"), "Toaster 3000", "events[0].device_type"),
    (("events", 0, "hit_flow"), 0, "events[0].hit_flow"),
    (("events", 0, "hit_flow"), 10**15, "events[0].hit_flow"),
    (("events", 0, "hit_time"), -1.0, "events[0].hit_time"),
    (("events", 0, "hit_time"), 9999.0, "events[0].hit_time"),
    (("events", 0, "detected"), T0 - 100, "events[0].detected"),
    (("events", 0, "extra"), 1, "events[0].extra"),
    (("home",), "h", "home"),
]

BAD_TRUST = [
    (("window",), [T0, T0 + 60], "window"),
    (("window", "end"), T0 - 1, "window.end"),
    (("window", "end"), T0 + 30 * 86400, "window.end"),
    (("window", "start"), ..., "window.start"),
    (("home",), "", "home"),
    (("devices", 0, "trust"), 1.5, "devices[0].trust"),
    (("devices", 0, "trust"), float("inf"), "devices[0].trust"),
    (("devices", 0, "raw_trust"), -0.1, "devices[0].raw_trust"),
    (("devices", 0, "accepted"), -1, "devices[0].accepted"),
    (("devices", 0, "discarded"), 10**13, "devices[0].discarded"),
    (("devices", 0, "device_type"), None, "devices[0].device_type"),
    (("devices", 1), device("Amazon Echo", 0.5), "devices[1].device_type"),
    (("events",), [], "events"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_DETECTIONS)
def test_bad_detections_field_is_named(path, value, field):
    """A detections summary with one bad field is refused naming that field."""
    doc = mutated(detections(), path, value)
    with pytest.raises(SummaryError) as caught:
        parse(body(doc), "bng-01", RULES, now=NOW)
    assert caught.value.field == field


@pytest.mark.parametrize(("path", "value", "field"), BAD_TRUST)
def test_bad_trust_field_is_named(path, value, field):
    """A trust summary with one bad field is refused naming that field."""
    doc = trust(devices=[device("Amazon Echo", 0.9), device("TP-Link plug", 0.7)])
    doc = mutated(doc, path, value)
    with pytest.raises(SummaryError) as caught:
        parse(body(doc), "bng-01", RULES, now=NOW)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        b'{"v": 1}',
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 1}) + b"\x00",
        b"\x81\xa1k\xc4\x01x",
        msgpack.packb({1: 2}),
    ],
)
def test_not_a_summary_map(raw):
    """Bodies that are not one msgpack map with a known kind are refused."""
    with pytest.raises(SummaryError) as caught:
        parse(raw, "bng-01", RULES, now=NOW)
    assert caught.value.field in ("body", "kind")


def test_valid_summaries_parse_to_values():
    """Well-formed summaries of both kinds come back with their values."""
    det = parse(body(detections(seq=7)), "bng-01", RULES, now=NOW)
    assert (det.kind, det.seq, det.events[0].device_type) == ("detections", 7, "Amazon Echo")
    assert det.events[0].detected - det.events[0].first_seen == det.events[0].hit_time

    tr = parse(
        body(trust(seq=8, devices=[device("TP-Link plug", 0.25)])), "bng-01", RULES, now=NOW
    )
    assert (tr.home, tr.window_end - tr.window_start) == ("home-1", 3600)
    assert tr.devices[0].trust == 0.25


def test_any_device_type_without_a_list():
    """Without a known list of device types any non-empty name is accepted."""
    doc = detections(events=[event("h", "Toaster 3000")])
    assert parse(body(doc), "bng-01", Rules(None), now=NOW).events[0].device_type == (
        "Toaster 3000"
    )


def test_integer_times_are_accepted():
    """Times sent as integers are taken as unix seconds."""
    doc = detections(sent_at=int(T0))
    assert parse(body(doc), "bng-01", RULES, now=NOW).sent_at == T0
