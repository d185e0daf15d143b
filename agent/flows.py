"""The flow table: one numpy row per biflow record, the shape every stage agrees on.

Decoders (IPFIX, Super Mediator JSON), the writer, the testbed and the flow meter all
produce or consume arrays of ``FLOW_DTYPE``. Field names are the IPFIX information
element names (RFC 7011/5103, CERT's YAF elements); ``reverse``-prefixed fields describe
the direction from the flow's responder back to its initiator. A record without flow
statistics, or without a reverse direction, has those fields at 0.

Addresses are 16 octets: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address
(``::ffff:a.b.c.d``), with ``ipVersion`` telling which. MAC addresses are 48-bit integers
(0 when the exporter sent none).
"""

import ipaddress

import numpy as np

#: Flow statistics of YAF's ``--flow-stats`` sub-record, per direction.
FLOW_STATS_FIELDS = (
    ("smallPacketCount", np.uint32),
    ("largePacketCount", np.uint32),
    ("nonEmptyPacketCount", np.uint32),
    ("dataByteCount", np.uint64),
    ("averageInterarrivalTime", np.uint64),
    ("firstNonEmptyPacketSize", np.uint16),
    ("maxPacketSize", np.uint16),
    ("standardDeviationPayloadLength", np.uint16),
    ("standardDeviationInterarrivalTime", np.uint64),
)

_COUNTERS = (
    ("packetTotalCount", np.uint64),
    ("octetTotalCount", np.uint64),
)


def _reverse(name: str) -> str:
    return "reverse" + name[0].upper() + name[1:]


FLOW_DTYPE = np.dtype(
    [
        ("flowStartMilliseconds", np.int64),
        ("flowEndMilliseconds", np.int64),
        ("ipVersion", np.uint8),
        ("protocolIdentifier", np.uint8),
        ("sourceTransportPort", np.uint16),
        ("destinationTransportPort", np.uint16),
        ("sourceAddress", np.uint8, (16,)),
        ("destinationAddress", np.uint8, (16,)),
        ("sourceMacAddress", np.uint64),
        ("destinationMacAddress", np.uint64),
        ("flowEndReason", np.uint8),
        ("firstEightNonEmptyPacketDirections", np.uint8),
        ("observationDomainId", np.uint32),
    ]
    + list(_COUNTERS)
    + [(_reverse(n), t) for n, t in _COUNTERS]
    + list(FLOW_STATS_FIELDS)
    + [(_reverse(n), t) for n, t in FLOW_STATS_FIELDS]
)

_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def empty(n: int = 0) -> np.ndarray:
    """A zero-filled flow table of ``n`` rows."""
    return np.zeros(n, dtype=FLOW_DTYPE)


def pack_address(text: str) -> np.ndarray:
    """An address string as the table's 16 octets (IPv4 mapped into IPv6)."""
    addr = ipaddress.ip_address(text)
    raw = addr.packed if addr.version == 6 else _V4_MAPPED_PREFIX + addr.packed
    return np.frombuffer(raw, dtype=np.uint8)


def unpack_address(octets: np.ndarray, ip_version: int) -> str:
    """The table's 16 octets back to an address string."""
    raw = bytes(octets)
    if ip_version == 4:
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def mac_to_int(text: str) -> int:
    """``aa:bb:cc:dd:ee:ff`` (a trailing colon, as Super Mediator writes, is allowed)."""
    return int(text.strip().rstrip(":").replace(":", "").replace("-", ""), 16)


def int_to_mac(value: int) -> str:
    """A 48-bit integer as ``aa:bb:cc:dd:ee:ff``."""
    raw = int(value).to_bytes(6, "big")
    return ":".join(f"{b:02x}" for b in raw)
