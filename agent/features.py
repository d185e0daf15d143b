"""Per-flow features of the paper (Tables I and II), computed the same way offline and on
the router: 22 activity features (11 per direction) and 6 service flags.

Only remote flows are scored: a flow that never leaves the home (both ends private, or
multicast, link-local, broadcast) cannot be seen by an ISP edge router, so ``remote_mask``
drops it before any feature is computed. Missing flow statistics are 0 in the flow table
and stay 0 here. The output is rounded to float32 because scikit-learn's trees compare in
float32: a counter above 2**24 must take the same branch in training and on the router.

Both functions run on every batch the agent scores, so they work on the table's raw
octets with a few whole-array steps: the address checks read each address as two
little-endian 64-bit words and classify its first two octets through a lookup table, the
service flags come from a 65536-entry port table, and the activity fields are read as
runs of same-typed neighbours straight from the octets, widened through float64 (as
``astype`` did) before the one rounding to float32.
"""

import numpy as np

from agent.flows import FLOW_DTYPE

#: Table I, one direction; the reverse direction repeats them with the ``reverse`` prefix.
ACTIVITY_FIELDS = (
    "packetTotalCount",
    "octetTotalCount",
    "smallPacketCount",
    "largePacketCount",
    "nonEmptyPacketCount",
    "dataByteCount",
    "averageInterarrivalTime",
    "firstNonEmptyPacketSize",
    "maxPacketSize",
    "standardDeviationPayloadLength",
    "standardDeviationInterarrivalTime",
)

#: Table II: service flag -> (IP protocol, ports seen at either end).
SERVICE_PORTS = {
    "service_http": (6, (80, 8080, 8008, 8888)),
    "service_https": (6, (443, 1443, 8443, 55443)),
    "service_dns": (17, (53, 5353)),
    "service_ntp": (17, (123,)),
}
SERVICE_FLAGS = tuple(SERVICE_PORTS) + ("service_other_tcp", "service_other_udp")

PROTO_TCP = 6
PROTO_UDP = 17


def _reverse(name: str) -> str:
    return "reverse" + name[0].upper() + name[1:]


#: The one feature order: forward activity, reverse activity, service flags.
FEATURE_NAMES = ACTIVITY_FIELDS + tuple(_reverse(n) for n in ACTIVITY_FIELDS) + SERVICE_FLAGS

#: Address classes by the first two octets of an address (IPv6) or of its IPv4 part,
#: indexed ``octet0 | octet1 << 8`` (+ 65536 for IPv4): bit 0 private, bit 1 never-routed.
_PRIVATE, _NEVER = 1, 2


def _address_classes() -> np.ndarray:
    b0 = np.arange(65536) & 0xFF
    b1 = np.arange(65536) >> 8
    v6 = np.where((b0 & 0xFE) == 0xFC, _PRIVATE, 0)
    v6 |= np.where((b0 == 0xFF) | ((b0 == 0xFE) & ((b1 & 0xC0) == 0x80)), _NEVER, 0)
    v4 = np.where((b0 == 10) | ((b0 == 172) & ((b1 & 0xF0) == 16)), _PRIVATE, 0)
    v4 |= np.where((b0 == 192) & (b1 == 168), _PRIVATE, 0)
    v4 |= np.where(((b0 & 0xF0) == 224) | ((b0 == 169) & (b1 == 254)) | (b0 == 127), _NEVER, 0)
    return np.concatenate([v6, v4]).astype(np.uint8)


_ADDRESS_CLASSES = _address_classes()
_V4_MAPPED_WORD = np.uint64(0xFFFF0000)
_LOW_32 = np.uint64(0xFFFFFFFF)
_LOW_16 = np.uint64(0xFFFF)
_LOW_56 = np.uint64((1 << 56) - 1)
_SHIFT_32 = np.uint64(32)


def _local_ends(addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(private, never-routed) masks for addresses given as (..., 16) octets.

    private: RFC 1918 and IPv6 unique local (fc00::/7), local only if both ends are;
    never-routed: multicast, link-local, broadcast, loopback, unspecified, local if
    either end is.
    """
    words = np.ascontiguousarray(addresses, dtype=np.uint8).view("<u8")
    hi, lo = words[..., 0], words[..., 1]
    is_v4 = (hi == 0) & ((lo & _LOW_32) == _V4_MAPPED_WORD)
    v4 = lo >> _SHIFT_32

    key = np.where(is_v4, (v4 & _LOW_16) + np.uint64(65536), hi & _LOW_16)
    found = _ADDRESS_CLASSES[key]
    private = (found & _PRIVATE).astype(bool)
    v4_special = (v4 == 0) | (v4 == _LOW_32)
    v6_special = (hi == 0) & ((lo & _LOW_56) == 0)
    never = (found & _NEVER).astype(bool) | np.where(is_v4, v4_special, v6_special)
    return private, never


_ADDRESSES = FLOW_DTYPE.fields["sourceAddress"][1]
_DST_ADDRESSES = FLOW_DTYPE.fields["destinationAddress"][1]


def _octets(flows: np.ndarray) -> np.ndarray | None:
    """The flow table as (n, itemsize) raw octets, or None when it is not ``FLOW_DTYPE``."""
    if flows.dtype != FLOW_DTYPE:
        return None
    flows = np.ascontiguousarray(flows)
    return flows.view(np.uint8).reshape(len(flows), FLOW_DTYPE.itemsize)


def remote_mask(flows: np.ndarray) -> np.ndarray:
    """True for flows an ISP edge router would export (at least one end on the Internet)."""
    octets = _octets(flows)
    if octets is not None and _DST_ADDRESSES == _ADDRESSES + 16:
        ends = octets[:, _ADDRESSES : _ADDRESSES + 32].reshape(len(flows), 2, 16)
    else:
        ends = np.stack([flows["sourceAddress"], flows["destinationAddress"]], axis=1)
    private, never = _local_ends(ends)
    local = (private[:, 0] & private[:, 1]) | never[:, 0] | never[:, 1]
    return ~local


def _port_services() -> np.ndarray:
    """Per port, bit i set when the port belongs to the i-th flag of ``SERVICE_PORTS``."""
    table = np.zeros(65536, dtype=np.uint8)
    for bit, (_, ports) in enumerate(SERVICE_PORTS.values()):
        table[list(ports)] |= 1 << bit
    return table


def _flag_rows() -> np.ndarray:
    """The six flags for each (protocol class, port bits): protocol class 0 other,
    1 TCP, 2 UDP, times 16, plus the port bits of ``_port_services``."""
    protocols = [protocol for protocol, _ in SERVICE_PORTS.values()]
    rows = np.zeros((3 * 16, len(SERVICE_FLAGS)), dtype=np.float32)
    for kind, protocol in enumerate((0, PROTO_TCP, PROTO_UDP)):
        for bits in range(16):
            row = rows[kind * 16 + bits]
            for column, wanted in enumerate(protocols):
                row[column] = protocol == wanted and bool(bits >> column & 1)
            known = row[: len(protocols)].any()
            row[len(protocols)] = protocol == PROTO_TCP and not known
            row[len(protocols) + 1] = protocol == PROTO_UDP and not known
    return rows


_PORT_SERVICES = _port_services()
_FLAG_ROWS = _flag_rows()
_PROTOCOL_KIND = np.zeros(256, dtype=np.uint8)
_PROTOCOL_KIND[PROTO_TCP], _PROTOCOL_KIND[PROTO_UDP] = 16, 32


def service_flags(flows: np.ndarray) -> np.ndarray:
    """(n, 6) 0/1 flags of Table II, by source or destination port; ICMP/IGMP get none."""
    ports = _PORT_SERVICES[flows["sourceTransportPort"]]
    ports |= _PORT_SERVICES[flows["destinationTransportPort"]]
    ports += _PROTOCOL_KIND[flows["protocolIdentifier"]]
    return _FLAG_ROWS[ports]


def _activity_runs() -> list[tuple[int, int, int, np.dtype]]:
    """The activity columns as runs (first column, end column, octet offset, type) of
    fields of one type lying back to back in the table, each read as one (n, k) view."""
    runs: list[list] = []
    for column, name in enumerate(FEATURE_NAMES[: 2 * len(ACTIVITY_FIELDS)]):
        dtype, offset = FLOW_DTYPE.fields[name][:2]
        last = runs[-1] if runs else None
        if last and last[3] == dtype and last[2] + (column - last[0]) * dtype.itemsize == offset:
            last[1] = column + 1
        else:
            runs.append([column, column + 1, offset, dtype])
    return [tuple(run) for run in runs]


_ACTIVITY_RUNS = _activity_runs()


def feature_matrix(flows: np.ndarray) -> np.ndarray:
    """The (n, 28) float32 matrix in ``FEATURE_NAMES`` order, C-contiguous."""
    n_activity = 2 * len(ACTIVITY_FIELDS)
    out = np.empty((len(flows), len(FEATURE_NAMES)), dtype=np.float32)
    wide = np.empty((len(flows), n_activity), dtype=np.float64)

    octets = _octets(flows)
    if octets is not None:
        for first, end, offset, dtype in _ACTIVITY_RUNS:
            size = (end - first) * dtype.itemsize
            wide[:, first:end] = octets[:, offset : offset + size].view(dtype)
    else:
        for column, name in enumerate(FEATURE_NAMES[:n_activity]):
            wide[:, column] = flows[name]

    out[:, :n_activity] = wide
    out[:, n_activity:] = service_flags(flows)
    return out
