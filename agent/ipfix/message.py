"""IPFIX message framing (RFC 7011 sections 3.1 and 3.3): headers, sets, and streams.

A message is a 16-octet header followed by sets. Over UDP each datagram holds one
message; over TCP and in files (RFC 5655) messages follow each other back to back, and
``iter_messages`` cuts such a stream into messages using the header's length field.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from agent.errors import DecodeError

VERSION = 10
HEADER_LENGTH = 16
SET_HEADER_LENGTH = 4
_HEADER = struct.Struct("!HHIII")
_SET_HEADER = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class Header:
    """The message header's fields."""

    length: int
    export_time: int
    sequence: int
    domain: int


def parse_header(buf) -> Header:
    """Check and read a message header; raises ``DecodeError`` naming what is wrong."""
    if len(buf) < HEADER_LENGTH:
        raise DecodeError(f"message of {len(buf)} octets is shorter than its header")
    version, length, export_time, sequence, domain = _HEADER.unpack_from(buf, 0)
    if version != VERSION:
        raise DecodeError(f"version {version} is not IPFIX (10)")
    if length < HEADER_LENGTH:
        raise DecodeError(f"message length {length} is shorter than its header")
    if length > len(buf):
        raise DecodeError(f"message length {length} is past the {len(buf)} octets received")
    return Header(length, export_time, sequence, domain)


def iter_sets(buf, length: int) -> Iterator[tuple[int, int, int]]:
    """(set id, offset of the set's body, body length) for each set of a message.

    Raises ``DecodeError`` for a set header that does not fit or a set length that is
    too short or points past the message; sets before it have been yielded.
    """
    pos = HEADER_LENGTH
    while pos < length:
        if length - pos < SET_HEADER_LENGTH:
            raise DecodeError(f"set header at message octet {pos} is cut short")
        set_id, set_length = _SET_HEADER.unpack_from(buf, pos)
        if set_length < SET_HEADER_LENGTH:
            raise DecodeError(f"set at message octet {pos} has length {set_length} (< 4)")
        if pos + set_length > length:
            raise DecodeError(
                f"set at message octet {pos} of length {set_length} is past the message end"
            )
        yield set_id, pos + SET_HEADER_LENGTH, set_length - SET_HEADER_LENGTH
        pos += set_length


def iter_messages(
    stream: "BinaryIO | bytes | bytearray | memoryview",
) -> Iterator[tuple[int, bytes]]:
    """(offset, message) for each message of an IPFIX file or TCP stream.

    A header that is not IPFIX or a truncated last message raises ``DecodeError`` with
    the offset of that message, after every complete message before it was yielded.
    """
    if isinstance(stream, (bytes, bytearray, memoryview)):
        yield from _iter_buffer(memoryview(stream))
        return
    offset = 0
    while True:
        head = _read(stream, HEADER_LENGTH)
        if not head:
            return
        length = _check_frame(head, offset)
        body = _read(stream, length - HEADER_LENGTH)
        if len(body) < length - HEADER_LENGTH:
            raise DecodeError(
                f"message truncated: {HEADER_LENGTH + len(body)} of {length} octets",
                offset=offset,
            )
        yield offset, head + body
        offset += length


def _iter_buffer(view: memoryview) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset < len(view):
        length = _check_frame(view[offset : offset + HEADER_LENGTH], offset)
        if offset + length > len(view):
            raise DecodeError(
                f"message truncated: {len(view) - offset} of {length} octets", offset=offset
            )
        yield offset, bytes(view[offset : offset + length])
        offset += length


def _check_frame(head, offset: int) -> int:
    if len(head) < HEADER_LENGTH:
        raise DecodeError(
            f"message truncated: {len(head)} octets, shorter than a header", offset=offset
        )
    version, length = struct.unpack_from("!HH", head, 0)
    if version != VERSION:
        raise DecodeError(f"version {version} is not IPFIX (10)", offset=offset)
    if length < HEADER_LENGTH:
        raise DecodeError(f"message length {length} is shorter than its header", offset=offset)
    return length


def _read(stream: BinaryIO, size: int) -> bytes:
    chunks, want = [], size
    while want > 0:
        chunk = stream.read(want)
        if not chunk:
            break
        chunks.append(chunk)
        want -= len(chunk)
    return b"".join(chunks)


#: One message of a burst, as ``index_messages`` finds it (``ipfix_msg`` in ``_native.h``).
MSG_DTYPE = np.dtype(
    [(name, "u4") for name in (
        "export_time", "sequence", "domain", "tset_off", "tset_len", "first_set", "nsets",
        "status",
    )] + [("ref", "i4"), ("same", "u4")]
)  # fmt: skip
#: One data set of a burst: its body's offset and length in the burst, and its set id.
SET_DTYPE = np.dtype([("off", "u4"), ("len", "u4"), ("set_id", "u4")])
#: Message kinds: a valid header then (options) template sets then data sets, exactly
#: filling the datagram; a header that is not valid; anything else.
SIMPLE, BAD_HEADER, OTHER = 0, 1, 2


def index_messages(buf: bytes, offsets, lengths, slots, *, native=None):
    """Headers and data sets of the messages at ``offsets`` in ``buf``, in one pass.

    ``slots`` numbers each message's transport session; a message's ``ref`` is the
    previous message of its session (or -1) and ``same`` says it is SIMPLE and shaped
    as that one (same domain, template set octets, data set ids). Returns the
    ``MSG_DTYPE`` and ``SET_DTYPE`` records; ``native`` is the compiled helper or None.
    """
    offsets, lengths, slots = (
        np.ascontiguousarray(a, np.uint32) for a in (offsets, lengths, slots)
    )
    n = len(offsets)
    msgs = np.zeros(n, dtype=MSG_DTYPE)
    max_sets = int(lengths.sum()) // SET_HEADER_LENGTH + 1
    sets = np.zeros(max_sets, dtype=SET_DTYPE)
    last = np.full(int(slots.max()) + 1 if n else 1, -1, dtype=np.int32)
    if native is None:
        used = _index_python(buf, offsets.tolist(), lengths.tolist(), slots.tolist(), msgs, sets)
    else:
        ffi = native.ffi
        used = native.lib.ipfix_index_messages(
            ffi.from_buffer(buf), ffi.from_buffer("uint32_t[]", offsets),
            ffi.from_buffer("uint32_t[]", lengths), n, ffi.from_buffer("uint32_t[]", slots),
            ffi.from_buffer("int32_t[]", last), ffi.from_buffer("ipfix_msg[]", msgs),
            ffi.from_buffer("ipfix_set[]", sets), max_sets,
        )  # fmt: skip
    return msgs, sets[:used]


def _index_python(buf: bytes, offsets, lengths, slots, msgs: np.ndarray, sets: np.ndarray):
    """The numpy twin of ``ipfix_index_messages``."""
    used, last = 0, {}
    for i, (off, size) in enumerate(zip(offsets, lengths)):
        msg = msgs[i]
        used = _index_one(buf, off, size, msg, sets, used)
        ref = msg["ref"] = last.get(slots[i], -1)
        last[slots[i]] = i
        msg["same"] = ref >= 0 and _same_shape(buf, msg, msgs[ref], sets)
    return used


def _index_one(buf: bytes, off: int, size: int, msg, sets: np.ndarray, used: int) -> int:
    if size < HEADER_LENGTH or int.from_bytes(buf[off : off + 2], "big") != VERSION:
        msg["status"] = BAD_HEADER
        return used
    _, length, *fields = _HEADER.unpack_from(buf, off)
    msg["export_time"], msg["sequence"], msg["domain"] = fields
    msg["status"] = BAD_HEADER if not HEADER_LENGTH <= length <= size else OTHER
    if length != size:
        return used
    msg["first_set"], msg["tset_off"] = used, off + HEADER_LENGTH
    found, tset_len, pos = [], 0, HEADER_LENGTH
    while pos < length:
        if length - pos < SET_HEADER_LENGTH:
            return used
        set_id, set_len = _SET_HEADER.unpack_from(buf, off + pos)
        if set_len < SET_HEADER_LENGTH or set_len > length - pos:
            return used
        if set_id in (2, 3) and not found:
            tset_len += set_len
        elif set_id >= 256 and used + len(found) < len(sets):
            found.append((off + pos + SET_HEADER_LENGTH, set_len - SET_HEADER_LENGTH, set_id))
        else:
            return used
        pos += set_len
    msg["status"], msg["tset_len"], msg["nsets"] = SIMPLE, tset_len, len(found)
    sets[used : used + len(found)] = found
    return used + len(found)


def _same_shape(buf: bytes, msg, ref, sets: np.ndarray) -> bool:
    if msg["status"] != SIMPLE or ref["status"] != SIMPLE:
        return False
    if any(msg[k] != ref[k] for k in ("domain", "tset_len", "nsets")):
        return False
    a, b, size = int(msg["tset_off"]), int(ref["tset_off"]), int(msg["tset_len"])
    if buf[a : a + size] != buf[b : b + size]:
        return False
    mine = sets["set_id"][msg["first_set"] : msg["first_set"] + msg["nsets"]]
    theirs = sets["set_id"][ref["first_set"] : ref["first_set"] + ref["nsets"]]
    return bool((mine == theirs).all())
