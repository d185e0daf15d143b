"""One field's octets as a Python value, by abstract data type (RFC 7011 section 6).

Used where records are read one by one (``dump``, options records); the flow table is
filled by the vectorized path in ``flowplan``. Integers may arrive in reduced-length
encoding (fewer octets than their type, section 6.2); a value whose length makes no
sense for its type is kept as its octets.
"""

import ipaddress
import struct
from datetime import UTC, datetime, timedelta

from agent.ipfix.elements import SIGNED_TYPES, UNSIGNED_TYPES

#: Seconds between the NTP era (1900) and the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2208988800
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ntp_to_ms(raw: int) -> int:
    """A 64-bit NTP timestamp (RFC 7011's micro/nanosecond format) in Unix milliseconds."""
    seconds, fraction = raw >> 32, raw & 0xFFFFFFFF
    return (seconds - NTP_EPOCH_OFFSET) * 1000 + ((fraction * 1000) >> 32)


def ntp_to_datetime(raw: int) -> datetime:
    """A 64-bit NTP timestamp as an aware UTC datetime (microsecond resolution)."""
    seconds, fraction = raw >> 32, raw & 0xFFFFFFFF
    micros = (fraction * 1_000_000) >> 32
    return _EPOCH + timedelta(seconds=seconds - NTP_EPOCH_OFFSET, microseconds=micros)


def decode_value(dtype: str, raw: bytes):
    """The value of one field of abstract data type ``dtype`` from its octets."""
    size = len(raw)
    try:
        if dtype in UNSIGNED_TYPES:
            return int.from_bytes(raw, "big") if size <= 8 else bytes(raw)
        if dtype in SIGNED_TYPES:
            return int.from_bytes(raw, "big", signed=True) if size <= 8 else bytes(raw)
        return _DECODERS.get(dtype, bytes)(raw)
    except (ValueError, OverflowError, struct.error):
        return bytes(raw)


def _float(raw: bytes) -> float:
    return struct.unpack("!f" if len(raw) == 4 else "!d", raw)[0]


def _boolean(raw: bytes):
    if len(raw) != 1:
        raise ValueError("boolean is one octet")
    return {1: True, 2: False}.get(raw[0], raw[0])


def _mac(raw: bytes) -> str:
    if len(raw) != 6:
        raise ValueError("MAC address is six octets")
    return ":".join(f"{b:02x}" for b in raw)


def _ipv4(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(bytes(raw)))


def _ipv6(raw: bytes) -> str:
    return str(ipaddress.IPv6Address(bytes(raw)))


def _seconds(raw: bytes) -> datetime:
    return _EPOCH + timedelta(seconds=int.from_bytes(raw, "big"))


def _milliseconds(raw: bytes) -> datetime:
    return _EPOCH + timedelta(milliseconds=int.from_bytes(raw, "big"))


def _ntp(raw: bytes) -> datetime:
    if len(raw) != 8:
        raise ValueError("NTP timestamp is eight octets")
    return ntp_to_datetime(int.from_bytes(raw, "big"))


_DECODERS = {
    "float32": _float,
    "float64": _float,
    "boolean": _boolean,
    "macAddress": _mac,
    "string": lambda raw: bytes(raw).decode("utf-8", errors="replace"),
    "octetArray": bytes,
    "ipv4Address": _ipv4,
    "ipv6Address": _ipv6,
    "dateTimeSeconds": _seconds,
    "dateTimeMilliseconds": _milliseconds,
    "dateTimeMicroseconds": _ntp,
    "dateTimeNanoseconds": _ntp,
}
