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
service flags come from a 65536-entry port table, and the activity fields are widened
to float64 by one structured cast (exact for every counter) before the one rounding to
float32, the same two steps as a per-field ``astype(np.float64)``. When the compiled
helper ``agent._kernels`` is built, the same tables drive one C pass over the rows
instead (several times faster, and the rows are read once); the numpy code stays as its
twin and the fallback.
"""

import numpy as np

from agent.flows import FLOW_DTYPE
from agent.kernels import kernels as _kernels

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
#: indexed ``octet0 | octet1 << 8`` (+ 65536 for IPv4). ``_MAYBE_SPECIAL`` marks the
#: keys where a whole address may be special (0.0.0.0, 255.255.255.255, :: and ::1).
_PRIVATE, _NEVER, _MAYBE = 1, 2, 4


def _address_classes() -> np.ndarray:
    b0 = np.arange(65536) & 0xFF
    b1 = np.arange(65536) >> 8
    v6 = np.where((b0 & 0xFE) == 0xFC, _PRIVATE, 0)
    v6 |= np.where((b0 == 0xFF) | ((b0 == 0xFE) & ((b1 & 0xC0) == 0x80)), _NEVER, 0)
    v6 |= np.where((b0 == 0) & (b1 == 0), _MAYBE, 0)
    v4 = np.where((b0 == 10) | ((b0 == 172) & ((b1 & 0xF0) == 16)), _PRIVATE, 0)
    v4 |= np.where((b0 == 192) & (b1 == 168), _PRIVATE, 0)
    v4 |= np.where(((b0 & 0xF0) == 224) | ((b0 == 169) & (b1 == 254)) | (b0 == 127), _NEVER, 0)
    v4 |= np.where(((b0 == 0) & (b1 == 0)) | ((b0 == 0xFF) & (b1 == 0xFF)), _MAYBE, 0)
    return np.concatenate([v6, v4])


_CLASSES = _address_classes()
_IS_PRIVATE = (_CLASSES & _PRIVATE) != 0
_IS_NEVER = (_CLASSES & _NEVER) != 0
_MAYBE_SPECIAL = (_CLASSES & _MAYBE) != 0
_V4_MAPPED_WORD = np.uint64(0xFFFF0000)
_V4_KEYS = np.uint64(65536)
_LOW_32 = np.uint64(0xFFFFFFFF)
_LOW_16 = np.uint64(0xFFFF)
_LOW_56 = np.uint64((1 << 56) - 1)
_SHIFT_32 = np.uint64(32)


def _local_ends(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(private, never-routed) masks for addresses given as little-endian 64-bit words
    (octets 0-7 and 8-15).

    private: RFC 1918 and IPv6 unique local (fc00::/7), local only if both ends are;
    never-routed: multicast, link-local, broadcast, loopback, unspecified, local if
    either end is.
    """
    is_v4 = (hi == 0) & ((lo & _LOW_32) == _V4_MAPPED_WORD)
    v4 = lo >> _SHIFT_32
    key = np.where(is_v4, (v4 & _LOW_16) | _V4_KEYS, hi & _LOW_16).view(np.int64)
    private, never = _IS_PRIVATE[key], _IS_NEVER[key]

    maybe = _MAYBE_SPECIAL[key]
    if maybe.any():
        at = np.nonzero(maybe)
        v4_special = (v4[at] == 0) | (v4[at] == _LOW_32)
        v6_special = (hi[at] == 0) & ((lo[at] & _LOW_56) == 0)
        never[at] = np.where(is_v4[at], v4_special, v6_special)
    return private, never


#: The two addresses of a flow as four little-endian 64-bit words, read in one cast.
_ADDRESS_WORDS = np.dtype(
    {
        "names": ["source_hi", "destination_hi", "source_lo", "destination_lo"],
        "formats": ["<u8"] * 4,
        "offsets": [
            FLOW_DTYPE.fields["sourceAddress"][1],
            FLOW_DTYPE.fields["destinationAddress"][1],
            FLOW_DTYPE.fields["sourceAddress"][1] + 8,
            FLOW_DTYPE.fields["destinationAddress"][1] + 8,
        ],
        "itemsize": FLOW_DTYPE.itemsize,
    }
)
_PACKED_WORDS = np.dtype({"names": _ADDRESS_WORDS.names, "formats": ["<u8"] * 4})


def remote_mask(flows: np.ndarray, *, native: bool = True) -> np.ndarray:
    """True for flows an ISP edge router would export (at least one end on the Internet)."""
    if native and _kernels is not None and _compiled_rows(flows):
        remote = np.empty(len(flows), dtype=bool)
        lib, ffi = _kernels.lib, _kernels.ffi
        rows, into = ffi.from_buffer("uint8_t[]", flows), ffi.from_buffer("uint8_t[]", remote)
        lib.iw_remote(rows, len(flows), _LAYOUT, into)
        return remote
    if flows.dtype == FLOW_DTYPE:
        words = flows.view(_ADDRESS_WORDS).astype(_PACKED_WORDS).view("<u8")
    else:
        ends = np.stack([flows["sourceAddress"], flows["destinationAddress"]], axis=1)
        words = np.ascontiguousarray(ends, dtype=np.uint8).view("<u8")
        words = words.transpose(0, 2, 1)
    columns = np.ascontiguousarray(words.reshape(len(flows), 4).T)
    private, never = _local_ends(columns[:2], columns[2:])
    local = (private[0] & private[1]) | never[0] | never[1]
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


def _activity_dtypes() -> tuple[np.dtype, np.dtype]:
    """A view of the table holding only the activity fields, in feature order, and the
    same fields as packed float64: casting one to the other widens every field in one
    step, and the result reads as an (n, 22) float64 matrix."""
    names = list(FEATURE_NAMES[: 2 * len(ACTIVITY_FIELDS)])
    fields = [FLOW_DTYPE.fields[name] for name in names]
    view = np.dtype(
        {
            "names": names,
            "formats": [dtype for dtype, _ in fields],
            "offsets": [offset for _, offset in fields],
            "itemsize": FLOW_DTYPE.itemsize,
        }
    )
    return view, np.dtype({"names": names, "formats": [np.float64] * len(names)})


_ACTIVITY_VIEW, _ACTIVITY_WIDE = _activity_dtypes()


def feature_matrix(flows: np.ndarray, *, native: bool = True) -> np.ndarray:
    """The (n, 28) float32 matrix in ``FEATURE_NAMES`` order, C-contiguous."""
    n_activity = 2 * len(ACTIVITY_FIELDS)
    out = np.empty((len(flows), len(FEATURE_NAMES)), dtype=np.float32)
    if native and _kernels is not None and _compiled_rows(flows):
        ffi = _kernels.ffi
        rows, into = ffi.from_buffer("uint8_t[]", flows), ffi.from_buffer("float[]", out)
        _kernels.lib.iw_features(rows, len(flows), _LAYOUT, into)
        return out

    if flows.dtype == FLOW_DTYPE:
        wide = flows.view(_ACTIVITY_VIEW).astype(_ACTIVITY_WIDE)
        out[:, :n_activity] = wide.view(np.float64).reshape(len(flows), n_activity)
    else:
        for column, name in enumerate(FEATURE_NAMES[:n_activity]):
            out[:, column] = flows[name].astype(np.float64)

    out[:, n_activity:] = service_flags(flows)
    return out


def _compiled_rows(flows: np.ndarray) -> bool:
    """Rows the compiled helper can read: the flow table itself, contiguous, non-empty."""
    return flows.dtype == FLOW_DTYPE and flows.flags.c_contiguous and len(flows) > 0


def _layout():
    """The compiled helper's view of the flow table and of the tables above, or None."""
    if _kernels is None:
        return None
    ffi = _kernels.ffi
    names = FEATURE_NAMES[: 2 * len(ACTIVITY_FIELDS)]
    fields = FLOW_DTYPE.fields
    tables = [
        np.array([fields[name][1] for name in names], dtype=np.uint32),
        np.array([fields[name][0].itemsize for name in names], dtype=np.uint8),
        np.ascontiguousarray(_CLASSES, dtype=np.uint8),
        _PORT_SERVICES,
        _PROTOCOL_KIND,
        np.ascontiguousarray(_FLAG_ROWS),
    ]
    types = ["uint32_t[]", "uint8_t[]", "uint8_t[]", "uint8_t[]", "uint8_t[]", "float[]"]
    pointers = [ffi.from_buffer(kind, table) for kind, table in zip(types, tables)]
    layout = ffi.new(
        "iw_layout *",
        {
            "row_size": FLOW_DTYPE.itemsize,
            "source_address": fields["sourceAddress"][1],
            "destination_address": fields["destinationAddress"][1],
            "source_port": fields["sourceTransportPort"][1],
            "destination_port": fields["destinationTransportPort"][1],
            "protocol": fields["protocolIdentifier"][1],
            "n_activity": len(names),
            "activity_offset": pointers[0],
            "activity_width": pointers[1],
            "address_class": pointers[2],
            "port_services": pointers[3],
            "protocol_kind": pointers[4],
            "flag_rows": pointers[5],
            "n_flags": len(SERVICE_FLAGS),
        },
    )
    _KEEP.extend(tables + pointers)
    return layout


#: The tables the compiled layout points into, kept alive with it.
_KEEP: list = []
_LAYOUT = _layout()
