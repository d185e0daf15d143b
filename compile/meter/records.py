"""Raw per-flow accumulators and their conversion to YAF's exported values.

Both flow-table engines (the C one and the Python fallback) emit one ``RAW_DTYPE`` row
per closed flow: the key, times in nanoseconds, and per direction the running sums YAF
keeps while a flow is open (packet and octet totals, payload totals, the first ten
inter-arrival gaps and the first ten non-empty payload sizes). ``finalize`` then derives
what YAF 2.16 writes with ``--flow-stats --mac``, with YAF's integer arithmetic:

- averageInterarrivalTime = sum of gaps (ms, each truncated) // (packets - 1);
- standardDeviationInterarrivalTime = floor(sqrt(sum((gap_i - avg)^2) // n)) over the
  first n = min(packets, 11) - 1 gaps, around the overall average;
- standardDeviationPayloadLength = floor(sqrt(wrap32(sum((size_i - avg)^2)) // n)) over
  the first n = min(nonEmpty, 10) payloads around avg = dataByteCount // nonEmpty; YAF
  sums in a signed 32-bit integer, and a sum that wraps negative comes out as 0;
- the statistics sub-record exists only when the forward direction carried payload or a
  reverse packet was seen; otherwise every statistics field is 0, as a decoder of YAF's
  output would report it.
"""

import numpy as np

from agent.flows import FLOW_DTYPE

#: flowEndReason values (RFC 5102 / YAF): idle timeout, active timeout, end of flow
#: (TCP FIN/RST), forced end (end of the capture).
END_IDLE = 1
END_ACTIVE = 2
END_CLOSED = 3
END_FORCED = 4

#: YAF's payload bounds: small is non-empty and under 60 octets, large is over 225.
SMALL_PAYLOAD = 60
LARGE_PAYLOAD = 225

#: How many gaps and payload sizes YAF keeps for its standard deviations.
KEPT = 10

DIRECTION_DTYPE = np.dtype(
    [
        ("pkt", np.uint64),
        ("oct", np.uint64),
        ("payoct", np.uint64),
        ("aitime", np.uint64),
        ("nonempty", np.uint32),
        ("small", np.uint32),
        ("large", np.uint32),
        ("first", np.uint32),
        ("maxsize", np.uint32),
        ("ia", np.uint32, (KEPT,)),
        ("psize", np.uint16, (KEPT,)),
    ],
    align=True,
)

#: One closed flow as both engines emit it; the same layout as ``struct meter_flow`` in
#: ``_meter.c`` (aligned, field for field).
RAW_DTYPE = np.dtype(
    [
        ("start_ns", np.int64),
        ("end_ns", np.int64),
        ("smac", np.uint64),
        ("dmac", np.uint64),
        ("src", np.uint8, (16,)),
        ("dst", np.uint8, (16,)),
        ("sp", np.uint16),
        ("dp", np.uint16),
        ("vlan", np.uint16),
        ("proto", np.uint8),
        ("version", np.uint8),
        ("reason", np.uint8),
        ("pktdir", np.uint8),
        ("pad", np.uint8, (6,)),
        ("fwd", DIRECTION_DTYPE),
        ("rev", DIRECTION_DTYPE),
    ],
    align=True,
)


def _payload_stddev(d: np.ndarray) -> np.ndarray:
    nonempty = d["nonempty"].astype(np.int64)
    count = np.minimum(nonempty, KEPT)
    safe = np.maximum(nonempty, 1)
    average = (d["payoct"] // safe.astype(np.uint64)).astype(np.int64)
    sizes = d["psize"].astype(np.int64)
    kept = np.arange(KEPT)[None, :] < count[:, None]
    squares = np.where(kept, (sizes - average[:, None]) ** 2, 0).sum(axis=1)
    wrapped = ((squares + 2**31) % 2**32) - 2**31
    quotient = np.where(wrapped > 0, wrapped // np.maximum(count, 1), 0)
    result = np.floor(np.sqrt(quotient.astype(np.float64)))
    return np.where(nonempty > 0, result, 0).astype(np.uint16)


def _interarrival(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    packets = d["pkt"].astype(np.int64)
    gaps = np.maximum(packets - 1, 1)
    average = d["aitime"].astype(np.int64) // gaps
    count = np.minimum(packets, KEPT + 1) - 1
    kept = np.arange(KEPT)[None, :] < count[:, None]
    ia = d["ia"].astype(np.int64)
    squares = np.where(kept, (ia - average[:, None]) ** 2, 0).sum(axis=1)
    deviation = np.floor(np.sqrt((squares // np.maximum(count, 1)).astype(np.float64)))
    many = packets > 1
    return (
        np.where(many, average, 0).astype(np.uint64),
        np.where(many, deviation, 0).astype(np.uint64),
    )


def _stats(d: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    average, deviation = _interarrival(d)
    values = {
        "smallPacketCount": d["small"],
        "largePacketCount": d["large"],
        "nonEmptyPacketCount": d["nonempty"],
        "dataByteCount": d["payoct"],
        "averageInterarrivalTime": average,
        "firstNonEmptyPacketSize": d["first"].astype(np.uint16),
        "maxPacketSize": d["maxsize"].astype(np.uint16),
        "standardDeviationPayloadLength": _payload_stddev(d),
        "standardDeviationInterarrivalTime": deviation,
    }
    return {name: np.where(present, value, 0) for name, value in values.items()}


def finalize(raw: np.ndarray, observation_domain: int = 0) -> np.ndarray:
    """YAF's exported values (a ``FLOW_DTYPE`` array) from the engines' raw rows."""
    flows = np.zeros(len(raw), dtype=FLOW_DTYPE)
    if len(raw) == 0:
        return flows

    flows["flowStartMilliseconds"] = raw["start_ns"] // 1_000_000
    flows["flowEndMilliseconds"] = raw["end_ns"] // 1_000_000
    flows["ipVersion"] = raw["version"]
    flows["protocolIdentifier"] = raw["proto"]
    flows["sourceTransportPort"] = raw["sp"]
    flows["destinationTransportPort"] = raw["dp"]
    flows["sourceAddress"] = raw["src"]
    flows["destinationAddress"] = raw["dst"]
    flows["sourceMacAddress"] = raw["smac"]
    flows["destinationMacAddress"] = raw["dmac"]
    flows["flowEndReason"] = raw["reason"]
    flows["observationDomainId"] = observation_domain

    fwd, rev = raw["fwd"], raw["rev"]
    flows["packetTotalCount"] = fwd["pkt"]
    flows["octetTotalCount"] = fwd["oct"]
    flows["reversePacketTotalCount"] = rev["pkt"]
    flows["reverseOctetTotalCount"] = rev["oct"]

    present = (fwd["payoct"] > 0) | (rev["pkt"] > 0)
    flows["firstEightNonEmptyPacketDirections"] = np.where(present, raw["pktdir"], 0)
    for name, value in _stats(fwd, present).items():
        flows[name] = value
    for name, value in _stats(rev, present & (rev["pkt"] > 0)).items():
        flows["reverse" + name[0].upper() + name[1:]] = value
    return flows
