"""IPFIX writer: flow tables as the messages YAF 2.16 writes, plus a low-level encoder.

``yaf_messages`` lays records out as ``yaf --flow-stats --mac`` does: a main template
(0xB000 plus YAF's flag bits: 0x0010 biflow, 0x0080 full-length counters, 0x0400 IPv6)
with RFC 5103 reverse elements, ending in a subTemplateMultiList (RFC 6313) whose
entries are the TCP sub-record (0xC003/0xC013), the MAC sub-record (0xC004) and the flow
statistics sub-record (0xC005/0xC015, CERT elements, reverse ones with the 0x4000 bit,
paddingOctets). A record with no reverse packets uses the uniflow templates, as YAF does.
Data sets are built with numpy, one structured dtype per record layout, so writing costs
no per-record Python work.

The low-level helpers (``template_record``, ``encode_value``, ``encode_message``, ...)
build arbitrary messages with every RFC 7011 data type, for tests and round trips.
"""

import bisect
import functools
import ipaddress
import logging
import operator
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from agent.ipfix.elements import VARLEN, by_name

log = logging.getLogger(__name__)

VERSION = 10
TEMPLATE_SET_ID = 2
OPTIONS_TEMPLATE_SET_ID = 3
ALL_OF = 3
MAX_MESSAGE = 65535
NTP_EPOCH_OFFSET = 2208988800
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: YAF's template flags (its ``YTF_*`` bits) and sub-template ids.
YAF_FLOW_BASE_TID = 0xB000
YTF_BIF, YTF_FLE, YTF_IP6 = 0x0010, 0x0080, 0x0400
YAF_TCP_TID, YAF_MAC_TID, YAF_FLOWSTATS_TID = 0xC003, 0xC004, 0xC005
#: YAF sends 4-octet counters while every counter stays below this.
YAF_RLE_MAX = 1 << 31
#: An element YAF 2.16 exports that Debian's libfixbuf 2.4 does not name.
_UNREGISTERED = {"reverseFlowDeltaMicroseconds": (6871, 41)}
_CHUNK = 1 << 15
_COUNTERS = (
    "octetTotalCount",
    "packetTotalCount",
    "reverseOctetTotalCount",
    "reversePacketTotalCount",
)


# ---- the generic encoder: templates, values, lists, sets, messages ----------------------


def element_key(name: str) -> tuple[int, int]:
    """(enterprise number, element id) of a registered element name."""
    if name in _UNREGISTERED:
        return _UNREGISTERED[name]
    element = by_name(name)
    if element is None:
        raise KeyError(f"unknown information element {name!r}")
    return element.pen, element.id


def template_record(template_id: int, fields: Sequence, scope_count: int = 0) -> bytes:
    """A template record (or options template record when ``scope_count`` > 0).

    ``fields`` holds (pen, id, length) tuples, or (name, length) with a registered name;
    length 0xFFFF marks a variable-length field.
    """
    out = [struct.pack("!HH", template_id, len(fields))]
    if scope_count:
        out.append(struct.pack("!H", scope_count))
    for spec in fields:
        pen, eid, length = (*element_key(spec[0]), spec[1]) if len(spec) == 2 else spec
        if pen:
            out.append(struct.pack("!HHI", eid | 0x8000, length, pen))
        else:
            out.append(struct.pack("!HH", eid, length))
    return b"".join(out)


def encode_set(set_id: int, records: Iterable[bytes], padding: int = 0) -> bytes:
    """A set: its header, the records back to back, then ``padding`` zero octets."""
    body = b"".join(records) + bytes(padding)
    return struct.pack("!HH", set_id, len(body) + 4) + body


def template_set(records: Iterable[bytes], options: bool = False) -> bytes:
    """A template set (id 2) or options template set (id 3) of template records."""
    return encode_set(OPTIONS_TEMPLATE_SET_ID if options else TEMPLATE_SET_ID, records)


def encode_message(
    sets: Iterable[bytes], *, domain: int = 0, export_time: int = 0, sequence: int = 0
) -> bytes:
    """An IPFIX message (RFC 7011 section 3.1) holding the given sets."""
    body = b"".join(sets)
    length = len(body) + 16
    if length > MAX_MESSAGE:
        raise ValueError(f"message of {length} octets is over IPFIX's 65535")
    return struct.pack("!HHIII", VERSION, length, export_time, sequence, domain) + body


def varlen(payload: bytes, long_form: bool = False) -> bytes:
    """A variable-length field: one length octet, or 255 + two octets (RFC 7011 7)."""
    if len(payload) < 255 and not long_form:
        return bytes([len(payload)]) + payload
    if len(payload) > 0xFFFF:
        raise ValueError(f"variable-length field of {len(payload)} octets is too long")
    return b"\xff" + struct.pack("!H", len(payload)) + payload


def basic_list(semantic: int, field: tuple, values: Iterable[bytes]) -> bytes:
    """The content of a basicList (RFC 6313 4.5.1); ``field`` is (pen, id, length)."""
    pen, eid, length = field
    if pen:
        head = struct.pack("!BHHI", semantic, eid | 0x8000, length, pen)
    else:
        head = struct.pack("!BHH", semantic, eid, length)
    return head + b"".join(values)


def sub_template_list(semantic: int, template_id: int, records: Iterable[bytes]) -> bytes:
    """The content of a subTemplateList (RFC 6313 4.5.2)."""
    return struct.pack("!BH", semantic, template_id) + b"".join(records)


def sub_template_multi_list(semantic: int, entries: Iterable[tuple[int, list]]) -> bytes:
    """The content of a subTemplateMultiList (RFC 6313 4.5.3): (template id, records)."""
    out = [bytes([semantic])]
    for template_id, records in entries:
        body = b"".join(records)
        out.append(struct.pack("!HH", template_id, len(body) + 4) + body)
    return b"".join(out)


def encode_value(dtype: str, value, length: int | None = None) -> bytes:
    """One field's octets for an RFC 7011 abstract data type, reduced length allowed.

    Times take a datetime (or the wire integer); micro/nanosecond times are NTP
    timestamps. Addresses and MACs take text or octets. Variable-length types
    (``length`` None or 0xFFFF) return the bare octets: wrap them with ``varlen``.
    """
    size = None if length in (None, VARLEN) else length
    if dtype.startswith(("unsigned", "signed")):
        bits = int(dtype.removeprefix("un").removeprefix("signed"))
        return int(value).to_bytes(size or bits // 8, "big", signed=dtype[0] == "s")
    if dtype in ("float32", "float64"):
        wide = (size or (4 if dtype == "float32" else 8)) == 8
        return struct.pack("!d" if wide else "!f", float(value))
    if dtype == "boolean":
        return b"\x01" if value else b"\x02"
    if dtype == "macAddress":
        return value if isinstance(value, bytes) else bytes.fromhex(value.replace(":", ""))
    if dtype in ("ipv4Address", "ipv6Address"):
        return value if isinstance(value, bytes) else ipaddress.ip_address(value).packed
    if dtype == "string":
        return value.encode("utf-8")
    if dtype.startswith("dateTime"):
        return _encode_time(dtype, value)
    return bytes(value)


def _encode_time(dtype: str, value) -> bytes:
    if isinstance(value, datetime):
        micros = (value - _EPOCH) // timedelta(microseconds=1)
        if dtype == "dateTimeSeconds":
            return struct.pack("!I", micros // 1_000_000)
        if dtype == "dateTimeMilliseconds":
            return struct.pack("!Q", micros // 1000)
        seconds, rest = divmod(micros, 1_000_000)
        fraction = -((-rest << 32) // 1_000_000)
        return struct.pack("!II", seconds + NTP_EPOCH_OFFSET, fraction)
    return int(value).to_bytes(4 if dtype == "dateTimeSeconds" else 8, "big")


# ---- YAF's layout ------------------------------------------------------------------------


def _main_fields(bi: bool, fle: bool, v6: bool) -> list[tuple[str, int]]:
    """YAF's main template without its list; a negative size marks a biflow-only field."""
    counter = 8 if fle else 4
    ip = ("IPv6Address", 16) if v6 else ("IPv4Address", 4)
    out = [
        ("flowStartMilliseconds", 8), ("flowEndMilliseconds", 8),
        ("flowStartMicroseconds", 8), ("flowEndMicroseconds", 8),
        ("octetTotalCount", counter), ("reverseOctetTotalCount", -counter),
        ("packetTotalCount", counter), ("reversePacketTotalCount", -counter),
        ("source" + ip[0], ip[1]), ("destination" + ip[0], ip[1]),
        ("sourceTransportPort", 2), ("destinationTransportPort", 2),
        ("flowAttributes", 2), ("reverseFlowAttributes", -2),
        ("protocolIdentifier", 1), ("flowEndReason", 1),
        ("reverseFlowDeltaMilliseconds", -4), ("reverseFlowDeltaMicroseconds", -8),
        ("vlanId", 2), ("reverseVlanId", -2),
        ("ipClassOfService", 1), ("reverseIpClassOfService", -1),
    ]  # fmt: skip
    return [(n, abs(size)) for n, size in out if size > 0 or bi]


def _tcp_fields(bi: bool) -> list[tuple[str, int]]:
    """YAF's TCP sub-record (flags and initial sequence numbers)."""
    out = [("tcpSequenceNumber", 4), ("initialTCPFlags", 1), ("unionTCPFlags", 1)]
    if bi:
        out += [("reverseInitialTCPFlags", 1), ("reverseUnionTCPFlags", 1)]
        out += [("reverseTcpSequenceNumber", 4)]
    return out


_MAC_FIELDS = [("sourceMacAddress", 6), ("destinationMacAddress", 6)]
_STATS = [
    ("dataByteCount", 8), ("averageInterarrivalTime", 8),
    ("standardDeviationInterarrivalTime", 8), ("tcpUrgTotalCount", 4),
    ("smallPacketCount", 4), ("nonEmptyPacketCount", 4), ("largePacketCount", 4),
    ("firstNonEmptyPacketSize", 2), ("maxPacketSize", 2),
    ("standardDeviationPayloadLength", 2),
]  # fmt: skip


def _stats_fields(bi: bool) -> list[tuple[str, int]]:
    """YAF's flow statistics sub-record; the biflow form pads both halves to 8 octets."""
    out = _STATS + [("firstEightNonEmptyPacketDirections", 1)]
    if bi:
        out += [("paddingOctets", 1)]
        out += [("reverse" + n[0].upper() + n[1:], size) for n, size in _STATS]
        out += [("paddingOctets", 2)]
    return out


def yaf_templates(bi: bool, fle: bool, v6: bool) -> dict[int, list[tuple[str, int]]]:
    """Template id -> fields for one YAF record layout (main template and sub-templates)."""
    rev = YTF_BIF if bi else 0
    main_id = YAF_FLOW_BASE_TID | rev | (YTF_FLE if fle else 0) | (YTF_IP6 if v6 else 0)
    return {
        main_id: _main_fields(bi, fle, v6) + [("subTemplateMultiList", VARLEN)],
        YAF_TCP_TID | rev: _tcp_fields(bi),
        YAF_MAC_TID: _MAC_FIELDS,
        YAF_FLOWSTATS_TID | rev: _stats_fields(bi),
    }


@functools.lru_cache(maxsize=64)
def _layout(bi: bool, fle: bool, v6: bool, tcp: bool, stats: bool):
    """(main template id, record dtype, [(dtype key, element name)], constant fields)."""
    templates = yaf_templates(bi, fle, v6)
    main_id, tcp_id, _, stats_id = templates
    names, formats, offsets, sources, consts = [], [], [], [], []
    pos = 0

    def add(fmt: str, size: int, source: str | None = None, const: int | None = None):
        nonlocal pos
        key = f"f{len(names)}"
        names.append(key)
        formats.append(fmt)
        offsets.append(pos)
        pos += size
        if source is not None:
            sources.append((key, source))
        if const is not None:
            consts.append((key, const))
        return key

    def add_fields(fields):
        for name, size in fields:
            fmt = f">u{size}" if size in (1, 2, 4, 8) else f"({size},)u1"
            add(fmt, size, None if name == "paddingOctets" else name)

    add_fields(templates[main_id][:-1])
    entries = ([tcp_id] if tcp else []) + [YAF_MAC_TID] + ([stats_id] if stats else [])
    sub_sizes = [sum(size for _, size in templates[t]) + 4 for t in entries]
    add("u1", 1, const=255)
    add(">u2", 2, const=1 + sum(sub_sizes))
    add("u1", 1, const=ALL_OF)
    for tid, size in zip(entries, sub_sizes):
        add(">u2", 2, const=tid)
        add(">u2", 2, const=size)
        add_fields(templates[tid])
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": pos})
    return main_id, dtype, sources, consts


def _ms_to_ntp(ms: np.ndarray) -> np.ndarray:
    """Unix milliseconds as NTP timestamps, fraction rounded up to YAF's 2^-21 s grain."""
    ms = ms.astype(np.int64)
    seconds = (ms // 1000 + NTP_EPOCH_OFFSET).astype(np.uint64)
    fraction = (-((-(ms % 1000) << 32) // 1000) + 2047) // 2048 * 2048
    return (seconds << np.uint64(32)) | fraction.astype(np.uint64)


def _column(flows: np.ndarray, rows: np.ndarray, name: str):
    """The values of template element ``name`` for ``rows`` of the table, or None (0)."""
    have = flows.dtype.names
    if name in ("flowStartMicroseconds", "flowEndMicroseconds"):
        return _ms_to_ntp(flows[name.replace("Micro", "Milli")][rows])
    if name.endswith("IPv4Address"):
        octets = np.ascontiguousarray(flows[name.replace("IPv4", "")][rows, 12:])
        return octets.view(">u4")[:, 0]
    if name.endswith("IPv6Address"):
        return flows[name.replace("IPv6", "")][rows]
    if name.endswith("MacAddress"):
        raw = flows[name][rows].astype(">u8").view(np.uint8).reshape(-1, 8)
        return raw[:, 2:]
    if name == "reverseFlowDeltaMicroseconds" and "reverseFlowDeltaMilliseconds" in have:
        return flows["reverseFlowDeltaMilliseconds"][rows].astype(np.uint64) * 1000
    return flows[name][rows] if name in have else None


def _classes(flows: np.ndarray, with_stats: bool) -> tuple[np.ndarray, ...]:
    """Per record: biflow, full-length counters, IPv6, TCP, has a stats sub-record."""
    bi = (flows["reversePacketTotalCount"] > 0) | (flows["reverseOctetTotalCount"] > 0)
    counters = [flows[c] for c in _COUNTERS]
    fle = np.maximum.reduce(counters) >= YAF_RLE_MAX
    v6 = flows["ipVersion"] == 6
    tcp = flows["protocolIdentifier"] == 6
    forward = [flows[n] for n, _ in _STATS if n in flows.dtype.names]
    busy = np.logical_or.reduce([f != 0 for f in forward]) if forward else bi
    stats = np.asarray(with_stats) & (bi | busy | (flows["packetTotalCount"] > 1))
    return bi, fle, v6, tcp, stats


def _record_rows(flows: np.ndarray, with_stats: bool, pad: int):
    """Records as matrix rows after ``pad`` free octets; sizes; template ids; layout bits.

    A record's layout bit is ``1 << (biflow | full-length << 1 | IPv6 << 2)``: the
    templates a set of records needs follow from the OR of their bits.
    """
    flags = _classes(flows, with_stats)
    code = sum(f.astype(np.int64) << i for i, f in enumerate(flags))
    groups = []
    for value in np.unique(code):
        key = tuple(bool(value >> i & 1) for i in range(5))
        groups.append((key, np.flatnonzero(code == value)))
    width = pad + max(_layout(*key)[1].itemsize for key, _ in groups)
    matrix = np.zeros((len(flows), width), np.uint8)
    sizes = np.empty(len(flows), np.int64)
    tids = np.empty(len(flows), np.int64)

    for key, rows in groups:
        main_id, dtype, sources, consts = _layout(*key)
        records = np.zeros(len(rows), dtype)
        for field, name in sources:
            values = _column(flows, rows, name)
            if values is not None:
                records[field] = values
        for field, value in consts:
            records[field] = value
        raw = records.view(np.uint8).reshape(len(rows), -1)
        if len(groups) == 1:
            matrix[:, pad : pad + dtype.itemsize] = raw
        else:
            matrix[rows, pad : pad + dtype.itemsize] = raw
        sizes[rows], tids[rows] = dtype.itemsize, main_id
    return matrix, sizes, tids, np.left_shift(1, code & 7)


@functools.lru_cache(maxsize=256)
def _template_set(layouts: int) -> bytes:
    """A template set with every template the layouts in the bit mask ``layouts`` need."""
    subs, mains = {}, {}
    for code in range(8):
        if layouts >> code & 1:
            key = (bool(code & 1), bool(code & 2), bool(code & 4))
            for tid, fields in yaf_templates(*key).items():
                (mains if tid < YAF_TCP_TID else subs)[tid] = fields
    records = [template_record(t, f) for t, f in sorted(subs.items()) + sorted(mains.items())]
    return template_set(records)


def _message_starts(sizes, run_start, bits, mtu: int, every: bool) -> tuple[list, list]:
    """First record of each message and its template set, filling messages greedily.

    With ``every`` a message carries the templates of the layouts in it; the room they
    take is found by shrinking the message until its templates and records fit.
    """
    cost = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes + 4 * run_start, out=cost[1:])
    cost, sizes, run_start, bits = (a.tolist() for a in (cost, sizes, run_start, bits))
    starts, tsets, i, n = [], [], 0, len(sizes)
    while i < n:
        mask, tset = bits[i], b""
        while True:
            if every:
                tset = _template_set(mask)
            limit = cost[i] + mtu - 16 - len(tset) - (0 if run_start[i] else 4)
            j = bisect.bisect_right(cost, limit) - 1
            if j <= i:
                raise ValueError(f"a record of {sizes[i]} octets does not fit the mtu {mtu}")
            grown = functools.reduce(operator.or_, bits[i:j], mask) if every else mask
            if grown == mask:
                break
            mask = grown
        starts.append(i)
        tsets.append(tset)
        i = j
    return starts, tsets


def _chunk_messages(flows, header: dict, with_stats: bool, mtu: int, every: bool):
    """The messages of one chunk of records; a message never spans two chunks."""
    matrix, sizes, tids, bits = _record_rows(flows, with_stats, pad=4)
    n = len(flows)
    run_start = np.ones(n, bool)
    run_start[1:] = tids[1:] != tids[:-1]
    starts, tsets = _message_starts(sizes, run_start, bits, mtu, every)

    set_start = run_start.copy()
    set_start[starts] = True
    set_id = np.cumsum(set_start) - 1
    set_length = np.bincount(set_id, weights=sizes).astype(np.int64) + 4
    heads = np.flatnonzero(set_start)
    matrix[heads, 0:2] = (tids[heads].astype(">u2")).view(np.uint8).reshape(-1, 2)
    matrix[heads, 2:4] = (set_length.astype(">u2")).view(np.uint8).reshape(-1, 2)

    skip = (4 * ~set_start).astype(np.uint16)
    span = (sizes + 4 * set_start).astype(np.uint16)
    column = np.arange(matrix.shape[1], dtype=np.uint16)
    body = matrix[(column - skip[:, None]) < span[:, None]].tobytes()
    ends = np.zeros(n + 1, np.int64)
    np.cumsum(sizes + 4 * set_start, out=ends[1:])
    bounds = starts + [n]
    for first, last, tset in zip(bounds[:-1], bounds[1:], tsets):
        a, b = int(ends[first]), int(ends[last])
        head = struct.pack(
            "!HHIII", VERSION, 16 + len(tset) + b - a, header["export_time"],
            (header["sequence"] + first) & 0xFFFFFFFF, header["domain"],
        )  # fmt: skip
        yield head + tset + body[a:b]


def yaf_messages(
    flows: np.ndarray,
    *,
    domain: int | None = 0,
    export_time: int | None = None,
    mtu: int = MAX_MESSAGE,
    with_stats: bool = True,
    sequence_start: int = 0,
    templates: str | None = None,
) -> Iterator[bytes]:
    """IPFIX messages carrying ``flows`` (a FLOW_DTYPE array) as YAF 2.16 exports them.

    ``mtu`` is the largest message in octets (for UDP: the path MTU less IP and UDP
    headers). ``templates`` is "once" (a template message first, as in a file) or
    "every" (a template set at the head of each message, for UDP); by default "every"
    when ``mtu`` is below 65535. Sequence numbers count data records (RFC 7011) from
    ``sequence_start``; ``export_time`` defaults to now (unix seconds). With ``domain``
    None each record goes to the observation domain its ``observationDomainId`` names,
    one domain after the other, each with its own sequence numbers.
    """
    if domain is None:
        domains = flows["observationDomainId"]
        for value in dict.fromkeys(domains.tolist()):
            yield from yaf_messages(
                flows[domains == value], domain=value, export_time=export_time, mtu=mtu,
                with_stats=with_stats, sequence_start=sequence_start, templates=templates,
            )  # fmt: skip
        return
    mtu = min(int(mtu), MAX_MESSAGE)
    mode = templates or ("every" if mtu < MAX_MESSAGE else "once")
    if mode not in ("once", "every"):
        raise ValueError(f"templates must be 'once' or 'every', not {templates!r}")
    if len(flows) == 0:
        return
    when = int(time.time()) if export_time is None else int(export_time)
    if mode == "once":
        bi, fle, v6, _, _ = _classes(flows, with_stats)
        codes = np.unique(bi.astype(int) | fle.astype(int) << 1 | v6.astype(int) << 2)
        tset = _template_set(sum(1 << int(c) for c in codes))
        yield encode_message([tset], domain=domain, export_time=when, sequence=sequence_start)

    for start in range(0, len(flows), _CHUNK):
        header = {"export_time": when, "domain": domain, "sequence": sequence_start + start}
        chunk = flows[start : start + _CHUNK]
        yield from _chunk_messages(chunk, header, with_stats, mtu, mode == "every")


def write_yaf_file(path: str | Path, flows: np.ndarray, **kw) -> int:
    """Write ``flows`` as an IPFIX file (messages back to back, RFC 5655); octets written."""
    total = 0
    with open(path, "wb") as f:
        for message in yaf_messages(flows, **kw):
            f.write(message)
            total += len(message)
    log.debug("wrote %d records in %d octets to %s", len(flows), total, path)
    return total
