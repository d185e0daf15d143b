"""Bursts of IPFIX messages (UDP datagrams) decoded together, for ``Decoder.decode_datagrams``.

Over UDP an exporter such as YAF repeats its template sets in every datagram and fits only
a few records in each, so per-message Python work (header, set walk, template parsing,
result objects) would cost far more than decoding the records. Here a burst is indexed in
one compiled call (headers and sets of every message). A message whose template sets
are, octet for octet, ones already stored, and whose data sets all have a known flow
plan, takes the fast path: its templates' timestamps are refreshed and its data sets
join one compiled decoding call; the next messages of its session shaped the same way
take that decision without looking again. Any other message (new or changed templates,
options records, anything malformed) goes through ``decode_message`` as it would alone,
after the fast messages before it are finished, so rows, counters, template store and
sequence state are those of decoding the messages one by one.

Before all that, a burst from one exporter in its steady state (each message the same
known template set octets, or none, then one data set of a known flow template, with
sequence numbers following on) is checked and decoded in a single compiled call, with
nothing left for Python but the counters; if any message breaks that shape the call
changes nothing and the burst goes the way above.
"""

import logging
import struct
from dataclasses import dataclass, field

import numpy as np

from agent.errors import DecodeError
from agent.flows import FLOW_DTYPE
from agent.ipfix import flowplan
from agent.ipfix.message import BAD_HEADER, SIMPLE, index_messages
from agent.ipfix.segment import Segment
from agent.ipfix.templates import parse_template_set

log = logging.getLogger(__name__)

#: Bounds on what the fast path remembers: streams, template sets per stream, their size.
_MAX_STREAMS = 4096
_MAX_TEMPLATE_SETS = 8
_MAX_TEMPLATE_OCTETS = 8192
_NO_FLOWS = np.zeros(0, dtype=FLOW_DTYPE)
#: Bursts shorter than this are decoded message by message: the burst machinery's fixed
#: cost (tens of microseconds) is more than it saves on a few datagrams.
SMALL_BURST = 8
#: Observation domain and the first set's id, read from a message's first 18 octets.
_DOMAIN_AND_SET = struct.Struct(">IH")
#: A message's header and a set header: what a message with a data set holds at least.
_SHORTEST = 20


@dataclass
class BatchResult:
    """What a burst held: every flow row in datagram order, and what went wrong where.

    ``counts[i]`` is the number of rows datagram ``i`` gave (its rows follow those of
    the datagrams before it); ``errors`` holds (datagram index, first error) for each
    datagram ``decode_message`` would have returned an ``error`` for, in order;
    ``options`` holds every options record, in order.
    """

    flows: np.ndarray
    counts: np.ndarray
    errors: list[tuple[int, DecodeError]] = field(default_factory=list)
    options: list[dict] = field(default_factory=list)


class _TemplateSets:
    """Template set octets seen before, all of whose templates are stored as they say."""

    __slots__ = ("tids",)

    def __init__(self, tids: tuple[int, ...]):
        self.tids = tids


class _Stream:
    """What the fast path knows of one (session, domain) while its templates stay the same."""

    __slots__ = ("expires", "generation", "kinds", "min_seen", "table", "template_sets")

    def __init__(self, table, expires: bool):
        self.table = table
        self.generation = table.generation
        self.expires = expires
        self.template_sets: dict[bytes, _TemplateSets] = {}
        self.kinds: dict[int, tuple | None] = {}
        self.min_seen = min((seen for _, seen in table.templates.values()), default=0.0)


class _Group:
    """One fast decision, shared by the messages of a session shaped the same way."""

    __slots__ = ("domain", "fixed", "plans", "session", "stream", "template_sets", "tpls")

    def __init__(self, stream, template_sets, session, domain, plans, fixed):
        self.stream, self.template_sets = stream, template_sets
        self.session, self.domain = session, domain
        self.plans = plans  # per data set of a message: plan index in the burst, or -1
        self.fixed = fixed  # per data set: record length of a counted (non-flow) set, 0: varlen
        self.tpls = len(template_sets.tids) if template_sets is not None else 0


def decode_datagrams(decoder, datagrams, sessions, now) -> BatchResult:
    """``Decoder.decode_datagrams``: see there."""
    if len(sessions) != len(datagrams):
        raise ValueError(f"{len(datagrams)} datagrams but {len(sessions)} sessions")
    steady = _decode_steady(decoder, datagrams, sessions, now)
    if steady is not None:
        return steady
    burst = _Burst(decoder, datagrams, sessions, now)
    if len(datagrams) < SMALL_BURST:
        for i, (datagram, session) in enumerate(zip(datagrams, sessions)):
            burst.add_alone(i, decoder.decode_message(datagram, session, now=now))
    else:
        try:
            burst.run()
        except Exception as exc:
            log.exception("ipfix batch decoder failed")
            result = decoder._empty_result()
            error = DecodeError(f"decoder failure: {exc}")
            decoder._fail(result, sessions[0], "internal_error", error)
            burst.result.errors.append((0, result.error))
    burst.result.errors.sort(key=lambda item: item[0])
    burst.result.flows = flowplan.concat_flows(burst.parts) if burst.parts else _NO_FLOWS
    return burst.result


def _decode_steady(decoder, datagrams, sessions, now) -> BatchResult | None:
    """The burst decoded in one compiled call, when it comes from one exporter session
    in its steady state (see the module's docstring); None when it does not."""
    if not datagrams:
        return None
    session, first = sessions[0], datagrams[0]
    if len(first) < _SHORTEST or sessions.count(session) != len(sessions):
        return None
    domain, set_id = _DOMAIN_AND_SET.unpack_from(first, 12)
    key = (session, domain)
    stream = decoder._streams.get(key)
    sequence = decoder._next_sequence.get(key)
    if stream is None or sequence is None or stream.table.generation != stream.generation:
        return None
    if stream.expires and now - stream.min_seen > decoder.templates.lifetime:
        return None

    tset, known = b"", None
    if set_id in (2, 3):
        for octets, known in stream.template_sets.items():
            if first.startswith(octets, 16) and len(first) >= 16 + len(octets) + 4:
                tset = octets
                break
        else:
            return None
        set_id = int.from_bytes(first[16 + len(tset) : 18 + len(tset)], "big")
    kind = stream.kinds.get(set_id)
    if not kind or kind[0] is None or kind[0].uptime or kind[0].duration:
        return None

    lengths = np.fromiter(map(len, datagrams), np.uint32, len(datagrams))
    buf = b"".join(datagrams)
    done = flowplan.decode_steady(buf, lengths, kind[0], domain, sequence, set_id, tset)
    if done is None:
        return None

    flows, counts, decoder._next_sequence[key] = done
    if known is not None:
        stored = stream.table.templates
        for tid in known.tids:
            stored[tid] = (stored[tid][0], now)
        decoder.count("templates", len(known.tids) * len(datagrams))
    decoder.count("messages", len(datagrams))
    decoder.count("data_records", len(flows))
    decoder.count("flow_records", len(flows))
    return BatchResult(flows, counts)


class _Burst:
    """One call of ``decode_datagrams``: fast messages gathered, then finished together."""

    def __init__(self, decoder, datagrams, sessions, now):
        self.decoder = decoder
        self.datagrams = datagrams
        self.sessions = sessions
        self.now = now
        self.result = BatchResult(_NO_FLOWS, np.zeros(len(datagrams), dtype=np.int64))
        self.parts: list[np.ndarray] = []
        self.groups: list[_Group] = []
        self.plan_list: list = []
        self.plan_index: dict[int, int] = {}
        self.fast: list[int] = []
        self.fast_group: list[int] = []

    def run(self) -> None:
        """Index the burst, then take each message by the fast path or alone, in order."""
        lengths = np.fromiter(map(len, self.datagrams), np.uint32, len(self.datagrams))
        offsets = np.zeros(len(lengths), dtype=np.uint32)
        np.cumsum(lengths[:-1], out=offsets[1:])
        slot_of: dict = {}
        slots = [slot_of.setdefault(s, len(slot_of)) for s in self.sessions]
        self.buf = b"".join(self.datagrams)
        self.msgs, self.sets = index_messages(
            self.buf, offsets, lengths, slots, native=flowplan._native
        )
        self.offsets = offsets
        status, refs, same = (self.msgs[k].tolist() for k in ("status", "ref", "same"))
        decided = [-1] * len(status)
        fast, fast_group = self.fast, self.fast_group
        for i, ref in enumerate(refs):
            if same[i] and decided[ref] >= 0:
                decided[i] = decided[ref]
            elif status[i] == SIMPLE:
                decided[i] = self._decide(i)
            if decided[i] >= 0:
                fast.append(i)
                fast_group.append(decided[i])
                continue
            self._flush()
            self._alone(i, status[i])
        self._flush()

    def _decide(self, i: int) -> int:
        """The fast group for a SIMPLE message, or -1 when it must be decoded alone."""
        msg = self.msgs[i]
        session, domain = self.sessions[i], int(msg["domain"])
        stream = self.decoder._streams.get((session, domain))
        if stream is None or stream.table.generation != stream.generation:
            return -1
        if stream.expires and self.now - stream.min_seen > self.decoder.templates.lifetime:
            return -1
        template_sets = None
        if msg["tset_len"]:
            start = int(msg["tset_off"])
            octets = self.buf[start : start + int(msg["tset_len"])]
            template_sets = stream.template_sets.get(octets)
            if template_sets is None:
                return -1
        plans, fixed = [], []
        first = int(msg["first_set"])
        for set_id in self.sets["set_id"][first : first + int(msg["nsets"])].tolist():
            kind = stream.kinds.get(set_id, False)
            if kind is False:
                kind = self._learn_kind(stream, session, domain, set_id)
            if kind is None:
                return -1
            plan, length = kind
            if plan is not None and id(plan) not in self.plan_index:
                self.plan_index[id(plan)] = len(self.plan_list)
                self.plan_list.append(plan)
            plans.append(-1 if plan is None else self.plan_index[id(plan)])
            fixed.append(length or 0)
        self.groups.append(_Group(stream, template_sets, session, domain, plans, fixed))
        return len(self.groups) - 1

    def _learn_kind(self, stream: _Stream, session, domain: int, set_id: int):
        """(flow plan, None) for a flow template, (None, record length or 0) for another
        data template, None when the set must be decoded alone (no template, options)."""
        entry = stream.table.templates.get(set_id)
        kind = None
        if entry is not None and not entry[0].is_options:
            template = entry[0]
            if template.is_flow:
                kind = (self.decoder.plan_for(session, domain, template), None)
            else:
                kind = (None, template.fixed_length or 0)
        stream.kinds[set_id] = kind
        return kind

    def _flush(self) -> None:
        """Finish the fast messages gathered so far: timestamps, rows, counters, sequence."""
        if not self.fast:
            return
        for g in set(self.fast_group):
            group = self.groups[g]
            if group.template_sets is not None:
                stored = group.stream.table.templates
                for tid in group.template_sets.tids:
                    stored[tid] = (stored[tid][0], self.now)
        fast = np.array(self.fast, dtype=np.int64)
        Segment(self, fast, np.array(self.fast_group, dtype=np.int64)).finish()
        self.fast.clear()
        self.fast_group.clear()

    def add_alone(self, i: int, result) -> None:
        """Take in the ``MessageResult`` of datagram ``i``."""
        if len(result.flows):
            self.parts.append(result.flows)
        self.result.counts[i] = len(result.flows)
        self.result.options.extend(result.options)
        if result.error is not None:
            self.result.errors.append((i, result.error))

    def _alone(self, i: int, status: int) -> None:
        """Decode one message as ``decode_message`` does, then learn from it for the next."""
        decoder, session = self.decoder, self.sessions[i]
        key = (session, int(self.msgs["domain"][i]))
        before = decoder.templates._domains.get(key)
        generation = before.generation if before is not None else None
        result = decoder.decode_message(self.datagrams[i], session, now=self.now)
        self.add_alone(i, result)
        if status == BAD_HEADER:
            return

        table = decoder.templates._domains.get(key)
        streams = decoder._streams
        if table is None:
            streams.pop(key, None)
            return
        stream = streams.get(key)
        if stream is None or stream.table is not table or stream.generation != table.generation:
            if len(streams) >= _MAX_STREAMS:
                streams.clear()
            stream = streams[key] = _Stream(table, decoder.templates.expires(session))
        else:
            stream.min_seen = min((seen for _, seen in table.templates.values()), default=0.0)
        clean = not result.errors and table is before and table.generation == generation
        size = int(self.msgs["tset_len"][i])
        if status == SIMPLE and 0 < size <= _MAX_TEMPLATE_OCTETS and clean:
            start = int(self.msgs["tset_off"][i])
            _learn_template_sets(stream, self.buf[start : start + size])


def _learn_template_sets(stream: _Stream, octets: bytes) -> None:
    """Remember template sets that changed nothing: all their templates are stored with
    this very layout, so seeing the same octets again only refreshes timestamps."""
    tids, pos = [], 0
    while pos < len(octets):
        set_id = int.from_bytes(octets[pos : pos + 2], "big")
        size = int.from_bytes(octets[pos + 2 : pos + 4], "big")
        body = memoryview(octets)[pos + 4 : pos + size]
        for tid, template in parse_template_set(body, set_id):
            stored = stream.table.templates.get(tid)
            if template is None or stored is None or not stored[0].same_layout(template):
                return
            tids.append(tid)
        pos += size
    if len(stream.template_sets) >= _MAX_TEMPLATE_SETS:
        stream.template_sets.clear()
    stream.template_sets[octets] = _TemplateSets(tuple(tids))
