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
from agent.ipfix import fallback
from agent.ipfix.elements import VARLEN
from agent.ipfix.fallback import (
    FIELD_PLAIN,
    FIELD_STL,
    FIELD_STML,
    OP_IPV4,
    OP_IPV6,
    OP_NTP,
    OP_SEC,
    OP_UINT,
)
from agent.ipfix.templates import Template

log = logging.getLogger(__name__)

#: Longest sub-record a list entry can carry (a set is at most 65535 octets).
MAX_SUB_LENGTH = 0xFFFF - 4
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
    if not 1 <= length <= 8:
        return None
    if element_type in _TIME:
        kind = _TIME[element_type]
        return None if kind == OP_NTP and length != 8 else kind
    return OP_UINT


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
        if t is not template
        and not t.is_options
        and not t.is_flow
        and t.fixed_length
        and t.fixed_length <= MAX_SUB_LENGTH
    ][:32]
    ops, uptime, duration = [], [], None
    sub_ops: list[list] = [[] for _ in subs]
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
                    sub_ops[k].append(op[0])
            continue
        ops.append(chosen[0])
        if chosen[1].endswith("SysUpTime"):
            uptime.append(column)
        if chosen[1].startswith("flowDuration"):
            duration = chosen[1]
    used = [k for k, found in enumerate(sub_ops) if found]
    for new_index, k in enumerate(used):
        ops.extend((new_index,) + op[1:] for op in sub_ops[k])
    subs = [subs[k] for k in used]
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
#: Rows the compiled helper writes into before the used ones are copied out (it zeroes
#: each row itself); reused so large sets do not fault in fresh pages every time.
_scratch = np.empty(0, dtype=FLOW_DTYPE)


def decode_flows(body, plan: FlowPlan, *, use_native: bool | None = None) -> np.ndarray:
    """Rows of ``FLOW_DTYPE`` for one data set body; raises ``ValueError`` if malformed.

    The returned ``ValueError`` carries the reason; rows decoded before the bad record
    are on its ``rows`` attribute.
    """
    global _scratch
    native = _native if use_native is None else (_native if use_native else None)
    max_rows = len(body) // plan.min_length
    if max_rows == 0:
        return np.zeros(0, dtype=FLOW_DTYPE)
    if native is not None:
        if len(_scratch) < max_rows:
            _scratch = np.empty(max(max_rows, 1024), dtype=FLOW_DTYPE)
        out = _scratch
        rows, error = _run_native(native, body, plan, out, max_rows)
    else:
        out = np.zeros(max_rows, dtype=FLOW_DTYPE)
        rows, error = fallback.run(body, plan, out)
    result = _copy_rows(out, rows)
    if error:
        exc = ValueError(_ERRORS.get(error, f"decode error {error}"))
        exc.rows = result
        raise exc
    return result


def _copy_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows as a new array (octet copy: structured copies are slow)."""
    raw = bytearray(rows.view(np.uint8)[: n * FLOW_DTYPE.itemsize])
    return np.frombuffer(raw, dtype=FLOW_DTYPE)


def concat_flows(parts: list[np.ndarray]) -> np.ndarray:
    """Flow tables joined end to end, as one octet copy."""
    if not parts:
        return np.zeros(0, dtype=FLOW_DTYPE)
    if len(parts) == 1:
        return parts[0]
    raw = np.concatenate([np.ascontiguousarray(p).view(np.uint8) for p in parts])
    return raw.view(FLOW_DTYPE)


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


#: One data set of a burst for ``decode_jobs`` (``ipfix_job`` in ``_native.h``).
JOB_DTYPE = np.dtype(
    [("off", "u4"), ("len", "u4"), ("domain", "u4"), ("plan", "u2"), ("pad", "u2"),
     ("rows", "i4"), ("error", "i4")]
)  # fmt: skip
#: The largest scratch table kept between bursts (rows); a bigger one is freed after use.
_SCRATCH_KEEP = 65536
_DOMAIN_OFFSET = FLOW_DTYPE.fields["observationDomainId"][1]
_VERSION_OFFSET = FLOW_DTYPE.fields["ipVersion"][1]


def _scratch_rows(capacity: int) -> np.ndarray:
    """A table of at least ``capacity`` rows for the compiled helper to write into: the
    kept scratch table, grown when needed (a table over ``_SCRATCH_KEEP`` rows is not
    kept)."""
    global _scratch
    if len(_scratch) >= capacity:
        return _scratch
    out = np.empty(max(capacity, 1024), dtype=FLOW_DTYPE)
    if capacity <= _SCRATCH_KEEP:
        _scratch = out
    return out


def error_reason(code: int) -> str:
    """The text of a compiled-helper error code."""
    return _ERRORS.get(code, f"decode error {code}")


def decode_jobs(buf: bytes, jobs: np.ndarray, plans: list, *, use_native: bool | None = None):
    """Decode many data sets of one buffer into one flow table, in job order.

    ``jobs`` (``JOB_DTYPE``) names each set's body in ``buf``, its plan (an index into
    ``plans``) and its observation domain; its ``rows`` and ``error`` are filled in.
    Rows get ``observationDomainId``, and ``ipVersion`` when the plan knows it and the
    set had no error; rows before a set's bad record are kept, as ``decode_flows`` does.
    """
    native = _native if use_native is None else (_native if use_native else None)
    shortest = min(plan.min_length for plan in plans)
    capacity = int(jobs["len"].sum()) // shortest + 1
    if native is None:
        out = np.zeros(capacity, dtype=FLOW_DTYPE)
        total = _fallback_jobs(buf, jobs, plans, out)
        return _copy_rows(out, total)
    out = _scratch_rows(capacity)
    ffi, lib = native.ffi, native.lib
    pointers = ffi.new("ipfix_plan *[]", [_native_plan(native, plan) for plan in plans])
    total = lib.ipfix_decode_jobs(
        ffi.from_buffer(buf), ffi.from_buffer("ipfix_job[]", jobs), len(jobs), pointers,
        ffi.from_buffer(out), FLOW_DTYPE.itemsize, capacity, _DOMAIN_OFFSET,
        _VERSION_OFFSET,
    )  # fmt: skip
    return _copy_rows(out, total)


def decode_steady(buf: bytes, lengths, plan, domain: int, sequence: int, set_id: int, tset):
    """``ipfix_decode_steady`` over the messages of ``lengths`` octets end to end in
    ``buf``: (flows, rows per message, next sequence number), or None when a message does
    not have the steady shape (observation ``domain``, ``sequence`` numbers following on,
    template set octets ``tset`` then one data set ``set_id`` of ``plan``) or the compiled
    helper is not built. Nothing is changed when it returns None."""
    if _native is None:
        return None
    ffi, lib = _native.ffi, _native.lib
    capacity = int(lengths.sum()) // plan.min_length + 1
    out = _scratch_rows(capacity)
    cache = plan.__dict__.setdefault("_c_steady", {})
    if not cache:
        cache["shape"], cache["next"] = ffi.new("ipfix_steady *"), ffi.new("uint32_t *")
    shape = cache["shape"]
    shape.domain, shape.sequence, shape.set_id = domain, sequence, set_id
    shape.tset_len, cache["tset"] = len(tset), ffi.from_buffer(tset)
    shape.tset = cache["tset"]
    counts = np.zeros(len(lengths), dtype=np.int64)
    total = lib.ipfix_decode_steady(
        ffi.from_buffer(buf), ffi.from_buffer("uint32_t[]", lengths), len(lengths), shape,
        _native_plan(_native, plan), ffi.from_buffer(out), FLOW_DTYPE.itemsize, capacity,
        _DOMAIN_OFFSET, _VERSION_OFFSET, ffi.from_buffer("int64_t[]", counts), cache["next"],
    )  # fmt: skip
    if total < 0:
        return None
    return _copy_rows(out, total), counts, int(cache["next"][0])


def _fallback_jobs(buf: bytes, jobs: np.ndarray, plans: list, out: np.ndarray) -> int:
    """The numpy twin of ``ipfix_decode_jobs``: records found set by set, then each
    plan's operations run once over all the records of the sets it decodes."""
    data = np.frombuffer(buf, dtype=np.uint8)
    found: dict[int, list] = {}
    counts, errors, total = [], [], 0
    for off, size, p in zip(*(jobs[k].tolist() for k in ("off", "len", "plan"))):
        rows, error = 0, 0
        if size // plans[p].min_length:
            field_off, sub_off, error = fallback.locate(data[off : off + size], plans[p])
            rows = len(field_off)
            if rows:
                sub_off = np.where(sub_off > 0, sub_off + off, 0)
                found.setdefault(p, []).append((field_off + off, sub_off, total))
        counts.append(rows)
        errors.append(error)
        total += rows
    octets = out.view(np.uint8).reshape(len(out), FLOW_DTYPE.itemsize)
    for p, parts in found.items():
        field_off = np.concatenate([part[0] for part in parts])
        sub_off = np.concatenate([part[1] for part in parts])
        where = np.concatenate([np.arange(s, s + len(f)) for f, _, s in parts])
        rows = np.zeros((len(where), FLOW_DTYPE.itemsize), dtype=np.uint8)
        fallback.fill(data, plans[p], field_off, sub_off, rows)
        octets[where] = rows
    jobs["rows"], jobs["error"] = counts, errors
    job_of_row = np.repeat(np.arange(len(jobs)), counts)
    out["observationDomainId"][:total] = jobs["domain"][job_of_row]
    version = np.array([plan.ip_version for plan in plans], dtype=np.int64)[jobs["plan"]]
    version = np.where(np.array(errors) == 0, version, -1)[job_of_row]
    keep = version >= 0
    out["ipVersion"][:total][keep] = version[keep]
    return total


def _native_plan(native, plan: FlowPlan):
    """The plan as an ``ipfix_plan`` struct, made once per plan."""
    cache = plan.__dict__.setdefault("_c_plan", {})
    struct = cache.get("plan")
    if struct is None:
        ffi = native.ffi
        keep = [
            ffi.from_buffer("uint16_t[]", plan.field_lens),
            ffi.from_buffer("uint8_t[]", plan.field_kinds),
            ffi.from_buffer("ipfix_op[]", plan.ops),
            ffi.from_buffer("uint16_t[]", plan.sub_tids),
            ffi.from_buffer("uint16_t[]", plan.sub_lens),
        ]
        struct = ffi.new("ipfix_plan *", {
            "field_lens": keep[0], "field_kinds": keep[1], "ops": keep[2],
            "sub_tids": keep[3], "sub_lens": keep[4], "nfields": len(plan.field_lens),
            "nops": len(plan.ops), "nsub": len(plan.sub_tids), "min_length": plan.min_length,
            "ip_version": plan.ip_version,
        })  # fmt: skip
        cache["plan"], cache["keep"] = struct, keep
    return struct
