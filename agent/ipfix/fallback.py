"""The numpy twin of the compiled helper: a flow plan run without ``agent.ipfix._native``.

Gives the same rows and the same error codes as ``_native.c`` (the tests compare the two
octet for octet). Fixed-length records are handled fully vectorized; records with
variable-length fields or lists are walked one by one in Python to find their field
and sub-record offsets, then every operation is applied to all records at once.
"""

import numpy as np

from agent.flows import FLOW_DTYPE
from agent.ipfix.elements import VARLEN
from agent.ipfix.structured import LIST_SEMANTICS

#: Operation kinds and list field kinds, numbered as in ``_native.h``.
OP_UINT, OP_IPV4, OP_IPV6, OP_SEC, OP_NTP = range(5)
FIELD_PLAIN, FIELD_STL, FIELD_STML = range(3)
NTP_EPOCH_OFFSET = 2208988800


def run(body, plan, out: np.ndarray) -> tuple[int, int]:
    """Fill ``out`` from a data set body; (rows decoded, error code or 0)."""
    data = np.frombuffer(body, dtype=np.uint8)
    field_off, sub_off, error = locate(data, plan)
    n = len(field_off)
    if n:
        fill(
            data, plan, field_off, sub_off, out[:n].view(np.uint8).reshape(n, FLOW_DTYPE.itemsize)
        )
    return n, error


def locate(data: np.ndarray, plan):
    """(field offsets (n, fields), sub-record offsets (n, subs; 0: none), error code)
    of the records of one data set body."""
    if plan.fixed_length is not None and not plan.field_kinds.any():
        n = len(data) // plan.fixed_length
        static = np.concatenate(([0], np.cumsum(plan.field_lens[:-1], dtype=np.int64)))
        starts = np.arange(n, dtype=np.int64) * plan.fixed_length
        field_off = starts[:, None] + static[None, :]
        return field_off, np.zeros((n, len(plan.sub_tids)), dtype=np.int64), 0
    field_off, sub_off, error = walk(data, plan)
    return field_off.reshape(len(sub_off), len(plan.field_lens)), sub_off, error


def fill(data: np.ndarray, plan, field_off, sub_off, rows: np.ndarray) -> None:
    """Run every operation of the plan over all records at once, into ``rows`` (octets)."""
    n = len(field_off)
    for op in plan.ops:
        if op["sub"] < 0:
            src = field_off[:, op["src"]]
            take = np.ones(n, dtype=bool)
        else:
            src = sub_off[:, op["sub"]] + op["src"]
            take = sub_off[:, op["sub"]] > 0
        if not take.any():
            continue
        _apply(data, src[take], op, rows, take)


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
        seconds = (value >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_OFFSET
        frac = ((value & np.uint64(0xFFFFFFFF)) * np.uint64(1000)) >> np.uint64(32)
        value = np.where(value == 0, 0, seconds * 1000 + frac.astype(np.int64))
        value = value.astype(np.int64).view(np.uint64)
    native = value.astype(np.dtype(f"u{dst_len}"))
    rows[take, dst : dst + dst_len] = native.view(np.uint8).reshape(len(src), dst_len)


def walk(data: np.ndarray, plan):
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
