"""Data sets of flow templates straight into ``FLOW_DTYPE`` rows, without per-record Python.

A template is compiled once into a plan: which field (of the record, or of a fixed-length
sub-record found in its subTemplateList / subTemplateMultiList fields, such as YAF's flow
statistics) fills which flow-table column, and how (integer, IPv4 mapped into IPv6, IPv6,
seconds or NTP time to milliseconds). The compiled helper ``agent.ipfix._native`` runs a
plan over a set in one call; without it, a numpy twin gives the same rows (fixed-length
records fully vectorized; variable-length ones walked in Python to find offsets).
"""

import logging
from dataclasses import dataclass

import numpy as np

from agent.flows import FLOW_DTYPE
from agent.ipfix.elements import VARLEN
from agent.ipfix.structured import LIST_SEMANTICS
from agent.ipfix.templates import Template

log = logging.getLogger(__name__)

OP_UINT, OP_IPV4, OP_IPV6, OP_SEC, OP_NTP = range(5)
FIELD_PLAIN, FIELD_STL, FIELD_STML = range(3)
_LIST_KIND = {"subTemplateList": FIELD_STL, "subTemplateMultiList": FIELD_STML}
_ERRORS = {
    1: "variable-length field past the end of its set",
    2: "set length does not match its template (record cut short)",
    3: "unknown list semantic",
    4: "list entry length out of bounds",
    5: "more records than the set can hold",
    6: "template too large for the compiled decoder",
}
_OP_DTYPE = np.dtype(
    [("sub", "i2"), ("src", "u2"), ("len", "u2"), ("dst", "u2"), ("dst_len", "u1"),
     ("kind", "u1")]
)  # fmt: skip
_TIME = {
    "dateTimeSeconds": OP_SEC, "dateTimeMilliseconds": OP_UINT,
    "dateTimeMicroseconds": OP_NTP, "dateTimeNanoseconds": OP_NTP,
}  # fmt: skip


def _sources() -> dict[str, tuple[str, ...]]:
    plain = {name: (name,) for name in FLOW_DTYPE.names if name != "observationDomainId"}
    plain.update(
        flowStartMilliseconds=(
            "flowStartMilliseconds", "flowStartSeconds", "flowStartMicroseconds",
            "flowStartNanoseconds", "flowStartSysUpTime",
        ),
        flowEndMilliseconds=(
            "flowEndMilliseconds", "flowEndSeconds", "flowEndMicroseconds",
            "flowEndNanoseconds", "flowEndSysUpTime", "flowDurationMilliseconds",
            "flowDurationMicroseconds",
        ),
        sourceAddress=("sourceIPv4Address", "sourceIPv6Address"),
        destinationAddress=("destinationIPv4Address", "destinationIPv6Address"),
        packetTotalCount=("packetTotalCount", "packetDeltaCount", "initiatorPackets"),
        octetTotalCount=("octetTotalCount", "octetDeltaCount", "initiatorOctets"),
        reversePacketTotalCount=(
            "reversePacketTotalCount", "reversePacketDeltaCount", "responderPackets",
        ),
        reverseOctetTotalCount=(
            "reverseOctetTotalCount", "reverseOctetDeltaCount", "responderOctets",
        ),
        destinationMacAddress=("destinationMacAddress", "postDestinationMacAddress"),
        sourceMacAddress=("sourceMacAddress", "postSourceMacAddress"),
    )  # fmt: skip
    return plain


#: For each flow-table column, the element names that can fill it, best first.
COLUMN_SOURCES = _sources()


@dataclass(eq=False)
class FlowPlan:
    """A compiled template: its field layout, sub-records to find and operations."""

    field_lens: np.ndarray
    field_kinds: np.ndarray
    min_length: int
    fixed_length: int | None
    ops: np.ndarray
    sub_tids: np.ndarray
    sub_lens: np.ndarray
    ip_version: int
    uptime: tuple[str, ...]
    duration: str | None


def _op_kind(element_type: str, name: str, length: int) -> int | None:
    if name.endswith("IPv4Address"):
        return OP_IPV4 if length == 4 else None
    if name.endswith("IPv6Address"):
        return OP_IPV6 if length == 16 else None
    if element_type in _TIME:
        kind = _TIME[element_type]
        return None if kind == OP_NTP and length != 8 else kind
    return OP_UINT if 1 <= length <= 8 else None


def compile_plan(template: Template, subtemplates: dict[int, Template]) -> FlowPlan:
    """The plan for a flow template, given its domain's other (candidate sub-) templates."""
    fields = template.fields
    main = {}
    for index, fld in enumerate(fields):
        if fld.length != VARLEN:
            main.setdefault(fld.element.name, (index, fld))
    subs = [
        t
        for t in subtemplates.values()
        if t is not template and not t.is_options and t.fixed_length and not t.is_flow
    ][:32]
    ops, uptime, duration = [], [], None
    for column, names in COLUMN_SOURCES.items():
        dst = FLOW_DTYPE.fields[column][1]
        dst_len = FLOW_DTYPE.fields[column][0].itemsize
        chosen = _choose(names, main, -1, dst, dst_len)
        if chosen is None:
            for k, sub in enumerate(subs):
                offsets = _offsets(sub)
                named = {f.element.name: (offsets[i], f) for i, f in enumerate(sub.fields)}
                op = _choose(names, named, k, dst, dst_len)
                if op is not None:
                    ops.append(op[0])
            continue
        ops.append(chosen[0])
        if chosen[1].endswith("SysUpTime"):
            uptime.append(column)
        if chosen[1].startswith("flowDuration"):
            duration = chosen[1]
    ip_version = 0
    if any(name in main for name in ("sourceIPv6Address", "destinationIPv6Address")):
        ip_version = 6
    if any(name in main for name in ("sourceIPv4Address", "destinationIPv4Address")):
        ip_version = 4
    return FlowPlan(
        field_lens=np.array([f.length for f in fields], dtype=np.uint16),
        field_kinds=np.array(
            [_LIST_KIND.get(f.element.type, FIELD_PLAIN) for f in fields], dtype=np.uint8
        ),
        min_length=template.min_length,
        fixed_length=template.fixed_length,
        ops=np.array(ops, dtype=_OP_DTYPE),
        sub_tids=np.array([s.template_id for s in subs], dtype=np.uint16),
        sub_lens=np.array([s.fixed_length for s in subs], dtype=np.uint16),
        ip_version=ip_version if "ipVersion" not in main else -1,
        uptime=tuple(uptime),
        duration=duration,
    )


def _offsets(template: Template) -> list[int]:
    out, pos = [], 0
    for fld in template.fields:
        out.append(pos)
        pos += fld.length
    return out


def _choose(names, available: dict, sub: int, dst: int, dst_len: int):
    for name in names:
        if name not in available:
            continue
        src, fld = available[name]
        kind = _op_kind(fld.element.type, name, fld.length)
        if kind is None:
            continue
        return (sub, src, fld.length, dst, dst_len, kind), name
    return None


def _load_native():
    try:
        from agent.ipfix import _native
    except ImportError:
        log.info("ipfix decode path=numpy (agent.ipfix._native is not built)")
        return None
    log.info("ipfix decode path=native (cffi helper agent.ipfix._native)")
    return _native


_native = _load_native()


def decode_flows(body, plan: FlowPlan, *, use_native: bool | None = None) -> np.ndarray:
    """Rows of ``FLOW_DTYPE`` for one data set body; raises ``ValueError`` if malformed.

    The returned ``ValueError`` carries the reason; rows decoded before the bad record
    are on its ``rows`` attribute.
    """
    native = _native if use_native is None else (_native if use_native else None)
    max_rows = len(body) // plan.min_length
    out = np.zeros(max_rows, dtype=FLOW_DTYPE)
    if native is not None:
        rows, error = _run_native(native, body, plan, out, max_rows)
    else:
        rows, error = _run_numpy(body, plan, out)
    if error:
        exc = ValueError(_ERRORS.get(error, f"decode error {error}"))
        exc.rows = out[:rows]
        raise exc
    return out[:rows]


def _run_native(native, body, plan: FlowPlan, out: np.ndarray, max_rows: int):
    ffi, lib = native.ffi, native.lib
    cache = plan.__dict__.setdefault("_c", {})
    if not cache:
        cache["lens"] = ffi.from_buffer("uint16_t[]", plan.field_lens)
        cache["kinds"] = ffi.from_buffer("uint8_t[]", plan.field_kinds)
        cache["ops"] = ffi.from_buffer("ipfix_op[]", plan.ops)
        cache["tids"] = ffi.from_buffer("uint16_t[]", plan.sub_tids)
        cache["slens"] = ffi.from_buffer("uint16_t[]", plan.sub_lens)
        cache["err"] = ffi.new("int *")
    error = cache["err"]
    rows = lib.ipfix_decode_flows(
        ffi.from_buffer(body), len(body), cache["lens"], cache["kinds"], len(plan.field_lens),
        plan.min_length, cache["ops"], len(plan.ops), cache["tids"], cache["slens"],
        len(plan.sub_tids), ffi.from_buffer(out), FLOW_DTYPE.itemsize, max_rows, error,
    )  # fmt: skip
    return rows, error[0]


def _run_numpy(body, plan: FlowPlan, out: np.ndarray):
    data = np.frombuffer(body, dtype=np.uint8)
    if plan.fixed_length is not None and not plan.field_kinds.any():
        n = len(data) // plan.fixed_length
        static = np.concatenate(([0], np.cumsum(plan.field_lens[:-1], dtype=np.int64)))
        starts = np.arange(n, dtype=np.int64) * plan.fixed_length
        field_off = starts[:, None] + static[None, :]
        sub_off = np.zeros((n, len(plan.sub_tids)), dtype=np.int64)
        error = 0
    else:
        field_off, sub_off, error = _walk(data, plan)
        n = len(field_off)
        field_off = field_off.reshape(n, len(plan.field_lens))
    rows = out[:n].view(np.uint8).reshape(n, FLOW_DTYPE.itemsize) if n else None
    for op in plan.ops:
        if n == 0:
            break
        if op["sub"] < 0:
            src = field_off[:, op["src"]]
            take = np.ones(n, dtype=bool)
        else:
            src = sub_off[:, op["sub"]] + op["src"]
            take = sub_off[:, op["sub"]] > 0
        if not take.any():
            continue
        _apply(data, src[take], op, rows, take)
    return n, error


def _apply(data: np.ndarray, src: np.ndarray, op, rows: np.ndarray, take: np.ndarray) -> None:
    length, kind = int(op["len"]), int(op["kind"])
    dst, dst_len = int(op["dst"]), int(op["dst_len"])
    octets = data[src[:, None] + np.arange(length)]
    if kind == OP_IPV4:
        block = np.zeros((len(src), 16), dtype=np.uint8)
        block[:, 10:12] = 0xFF
        block[:, 12:] = octets
        rows[take, dst : dst + 16] = block
        return
    if kind == OP_IPV6:
        rows[take, dst : dst + 16] = octets
        return
    padded = np.zeros((len(src), 8), dtype=np.uint8)
    padded[:, 8 - length :] = octets
    value = padded.view(">u8").ravel().astype(np.uint64)
    if kind == OP_SEC:
        value = value * np.uint64(1000)
    elif kind == OP_NTP:
        seconds = (value >> np.uint64(32)).astype(np.int64) - 2208988800
        frac = ((value & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
        value = np.where(value == 0, 0, seconds * 1000 + frac.astype(np.int64))
        value = value.astype(np.int64).view(np.uint64)
    native = value.astype(np.dtype(f"u{dst_len}"))
    rows[take, dst : dst + dst_len] = native.view(np.uint8).reshape(len(src), dst_len)


def _walk(data: np.ndarray, plan: FlowPlan):
    """Field and sub-record offsets of every record, walked one record at a time."""
    buf = data.tobytes()
    end, pos = len(buf), 0
    lens = plan.field_lens.tolist()
    kinds = plan.field_kinds.tolist()
    tids = plan.sub_tids.tolist()
    sub_lens = plan.sub_lens.tolist()
    field_off, sub_rows = [], []
    while end - pos >= plan.min_length and end - pos > 0:
        offs, spans = [], []
        for n in lens:
            if n == VARLEN:
                if pos >= end:
                    return _walked(field_off, sub_rows, tids, 1)
                n = buf[pos]
                pos += 1
                if n == 255:
                    if end - pos < 2:
                        return _walked(field_off, sub_rows, tids, 1)
                    n = int.from_bytes(buf[pos : pos + 2], "big")
                    pos += 2
                if n > end - pos:
                    return _walked(field_off, sub_rows, tids, 1)
            elif n > end - pos:
                return _walked(field_off, sub_rows, tids, 2)
            offs.append(pos)
            spans.append(n)
            pos += n
        found = [0] * len(tids)
        for f, kind in enumerate(kinds):
            if kind != FIELD_PLAIN and tids:
                error = _scan_list(buf, offs[f], offs[f] + spans[f], kind, tids, sub_lens, found)
                if error:
                    return _walked(field_off, sub_rows, tids, error)
        field_off.extend(offs)
        sub_rows.append(found)
    return _walked(field_off, sub_rows, tids, 0)


def _walked(field_off, sub_rows, tids, error: int):
    sub = np.array(sub_rows, dtype=np.int64).reshape(len(sub_rows), len(tids))
    return np.array(field_off, dtype=np.int64), sub, error


def _scan_list(buf: bytes, pos: int, end: int, kind: int, tids, sub_lens, found) -> int:
    if pos == end:
        return 0
    if buf[pos] not in LIST_SEMANTICS:
        return 3
    pos += 1
    if kind == FIELD_STL:
        if end - pos < 2:
            return 4
        tid = int.from_bytes(buf[pos : pos + 2], "big")
        for k, want in enumerate(tids):
            if want == tid and not found[k] and end - pos - 2 >= sub_lens[k]:
                found[k] = pos + 2
        return 0
    while pos < end:
        if end - pos < 4:
            return 4
        tid = int.from_bytes(buf[pos : pos + 2], "big")
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        if length < 4 or length > end - pos:
            return 4
        for k, want in enumerate(tids):
            if want == tid and not found[k] and length - 4 >= sub_lens[k]:
                found[k] = pos + 4
        pos += length
    return 0
