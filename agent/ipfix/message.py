"""IPFIX message framing (RFC 7011 sections 3.1 and 3.3): headers, sets, and streams.

A message is a 16-octet header followed by sets. Over UDP each datagram holds one
message; over TCP and in files (RFC 5655) messages follow each other back to back, and
``iter_messages`` cuts such a stream into messages using the header's length field.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

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
