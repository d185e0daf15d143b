"""Per-flow features of the paper (Tables I and II), computed the same way offline and on
the router: 22 activity features (11 per direction) and 6 service flags.

Only remote flows are scored: a flow that never leaves the home (both ends private, or
multicast, link-local, broadcast) cannot be seen by an ISP edge router, so ``remote_mask``
drops it before any feature is computed. Missing flow statistics are 0 in the flow table
and stay 0 here. The output is rounded to float32 because scikit-learn's trees compare in
float32: a counter above 2**24 must take the same branch in training and on the router.
"""

import numpy as np

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

_V4_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def _local_ends(addresses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(private, never-routed) masks for an (n, 16) array of table addresses.

    private: RFC 1918 and IPv6 unique local (fc00::/7), local only if both ends are;
    never-routed: multicast, link-local, broadcast, loopback, unspecified, local if
    either end is.
    """
    a = addresses
    is_v4 = np.all(a[:, :12] == _V4_MAPPED, axis=1)
    b0, b1 = a[:, 12], a[:, 13]
    v4_private = (b0 == 10) | ((b0 == 172) & ((b1 & 0xF0) == 16)) | ((b0 == 192) & (b1 == 168))
    v4_never = (
        ((b0 & 0xF0) == 224)
        | ((b0 == 169) & (b1 == 254))
        | np.all(a[:, 12:] == 255, axis=1)
        | (b0 == 127)
        | np.all(a[:, 12:] == 0, axis=1)
    )
    v6_private = (a[:, 0] & 0xFE) == 0xFC
    v6_never = (
        (a[:, 0] == 0xFF)
        | ((a[:, 0] == 0xFE) & ((a[:, 1] & 0xC0) == 0x80))
        | np.all(a[:, :15] == 0, axis=1)
    )
    private = np.where(is_v4, v4_private, v6_private)
    never_routed = np.where(is_v4, v4_never, v6_never)
    return private, never_routed


def remote_mask(flows: np.ndarray) -> np.ndarray:
    """True for flows an ISP edge router would export (at least one end on the Internet)."""
    src_private, src_never = _local_ends(flows["sourceAddress"].reshape(-1, 16))
    dst_private, dst_never = _local_ends(flows["destinationAddress"].reshape(-1, 16))
    local = (src_private & dst_private) | src_never | dst_never
    return ~local


def service_flags(flows: np.ndarray) -> np.ndarray:
    """(n, 6) 0/1 flags of Table II, by source or destination port; ICMP/IGMP get none."""
    proto = flows["protocolIdentifier"]
    sport = flows["sourceTransportPort"]
    dport = flows["destinationTransportPort"]
    out = np.zeros((len(flows), len(SERVICE_FLAGS)), dtype=np.float32)

    for column, (protocol, ports) in enumerate(SERVICE_PORTS.values()):
        ports = np.asarray(ports, dtype=np.uint16)
        hit = (proto == protocol) & (np.isin(sport, ports) | np.isin(dport, ports))
        out[:, column] = hit

    known = out[:, : len(SERVICE_PORTS)].any(axis=1)
    out[:, len(SERVICE_PORTS)] = (proto == PROTO_TCP) & ~known
    out[:, len(SERVICE_PORTS) + 1] = (proto == PROTO_UDP) & ~known
    return out


def feature_matrix(flows: np.ndarray) -> np.ndarray:
    """The (n, 28) float32 matrix in ``FEATURE_NAMES`` order, C-contiguous."""
    n_activity = 2 * len(ACTIVITY_FIELDS)
    out = np.empty((len(flows), len(FEATURE_NAMES)), dtype=np.float32)

    for column, name in enumerate(FEATURE_NAMES[:n_activity]):
        out[:, column] = flows[name].astype(np.float64)

    out[:, n_activity:] = service_flags(flows)
    return out
