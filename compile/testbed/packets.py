"""Packets of many flows at once, and their YAF flow statistics.

Each direction of a flow gets its first ``EXPLICIT`` packets drawn one by one (payload
size and gap); packets beyond those form a tail drawn as counts per size class (bare
ACKs, full segments, one "other" size), which is exact for every statistic YAF keeps:
YAF's standard deviations look only at the first 10 gaps and first 10 non-empty payloads,
and its other statistics are sums, counts and maxima. Definitions follow YAF 2.16:
payload = IP length minus IP and transport headers; small = non-empty payload under 60;
large = payload over 225; inter-arrival in whole milliseconds, the average over all gaps,
the standard deviations (population) around the overall averages. One approximation:
the payload deviation looks at the non-empty packets among the explicit ones, which are
the first 10 non-empty ones unless a long flow starts with more than 14 bare ACKs.
"""

import numpy as np

from .table import COL

EXPLICIT = 24
SMALL_BELOW = 60
LARGE_ABOVE = 225
STD_WINDOW = 10
IDLE_TIMEOUT_MS = 300_000
ACTIVE_TIMEOUT_MS = 1_800_000
#: IP plus transport header octets per packet, by protocol (TCP with timestamps).
HEADERS = {6: 52, 17: 28, 1: 28, 2: 24}
MSS = {6: 1448, 17: 1472, 1: 1472, 2: 1472}


def _per_proto(proto: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.full(proto.shape, 28, dtype=np.int64)
    for p, value in table.items():
        out[proto == p] = value
    return out


def _packet_counts(rng, p: np.ndarray, prefix: str) -> np.ndarray:
    med = p[:, COL[prefix + "pk_med"]]
    sig = p[:, COL[prefix + "pk_sig"]]
    draw = np.rint(med * np.exp(rng.standard_normal(len(p)) * sig))
    return np.clip(draw, p[:, COL[prefix + "pk_min"]], p[:, COL[prefix + "pk_max"]]).astype(
        np.int64
    )


def _payloads(rng, p, prefix, n, lead_empty, mss):
    """(explicit payloads (N, EXPLICIT), tail counts and size) of one direction."""
    size = len(p)
    col = lambda f: p[:, COL[prefix + f]][:, None]
    pos = np.arange(EXPLICIT)[None, :]
    present = pos < np.minimum(n, EXPLICIT)[:, None]
    lead = lead_empty[:, None].astype(np.int64)

    u = rng.random((size, EXPLICIT))
    empty = u < col("empty")
    bulk = ~empty & (u < col("empty") + col("bulk"))
    other = rng.normal(col("size_mu"), col("size_sd"), (size, EXPLICIT))
    first = rng.normal(col("first_mu"), col("first_sd"), (size, 1))
    sizes = np.where(bulk, mss[:, None], np.clip(np.rint(other), 1, mss[:, None]))
    sizes = np.where(empty, 0, sizes)
    sizes = np.where(pos == lead, np.clip(np.rint(first), 0, mss[:, None]), sizes)
    sizes = np.where((pos < lead) | ~present, 0, sizes).astype(np.int64)

    tail = np.maximum(n - EXPLICIT, 0)
    p_empty = p[:, COL[prefix + "empty"]]
    p_bulk = p[:, COL[prefix + "bulk"]]
    t_empty = rng.binomial(tail, np.clip(p_empty, 0, 1))
    rest = tail - t_empty
    t_bulk = rng.binomial(rest, np.clip(p_bulk / np.maximum(1 - p_empty, 1e-9), 0, 1))
    t_other = rest - t_bulk
    t_size = np.clip(
        np.rint(rng.normal(p[:, COL[prefix + "size_mu"]], p[:, COL[prefix + "size_sd"]])),
        1,
        mss,
    ).astype(np.int64)
    return sizes, t_bulk, t_other, t_size


def _gaps(rng, p, prefix, n):
    """(explicit gaps (N, EXPLICIT-1) in ms, tail duration ms) of one direction."""
    size = len(p)
    med = p[:, COL[prefix + "gap_med"]][:, None]
    sig = p[:, COL[prefix + "gap_sig"]][:, None]
    gaps = np.floor(med * np.exp(rng.standard_normal((size, EXPLICIT - 1)) * sig))
    gaps = np.clip(gaps, 0, IDLE_TIMEOUT_MS - 1).astype(np.int64)
    valid = np.arange(EXPLICIT - 1)[None, :] < (n - 1)[:, None]
    gaps = np.where(valid, gaps, 0)

    tail = np.maximum(n - EXPLICIT, 0)
    mean_gap = med[:, 0] * np.exp(sig[:, 0] ** 2 / 2)
    shape = np.maximum(tail, 1).astype(np.float64)
    tail_ms = np.floor(rng.gamma(shape, 1.0 / shape) * mean_gap * tail).astype(np.int64)
    return gaps, np.where(tail > 0, tail_ms, 0)


def _direction_stats(sizes, t_bulk, t_other, t_size, gaps, tail_ms, n, mss, headers):
    """YAF's per-direction statistics from packets of one direction."""
    nonempty = sizes > 0
    n_nonempty = nonempty.sum(1) + t_bulk + t_other
    data = sizes.sum(1) + t_bulk * mss + t_other * t_size
    small = ((sizes > 0) & (sizes < SMALL_BELOW)).sum(1) + np.where(
        t_size < SMALL_BELOW, t_other, 0
    )
    large = (sizes > LARGE_ABOVE).sum(1) + t_bulk + np.where(t_size > LARGE_ABOVE, t_other, 0)

    has = nonempty.any(1)
    first = np.where(has, sizes[np.arange(len(n)), np.argmax(nonempty, 1)], 0)
    first = np.where(has, first, np.where(t_other > 0, t_size, np.where(t_bulk > 0, mss, 0)))
    biggest = np.maximum(sizes.max(1), np.where(t_bulk > 0, mss, 0))
    biggest = np.maximum(biggest, np.where(t_other > 0, t_size, 0))

    mean_payload = data / np.maximum(n_nonempty, 1)
    rank = np.cumsum(nonempty, 1)
    window = nonempty & (rank <= STD_WINDOW)
    dev = np.where(window, (sizes - mean_payload[:, None]) ** 2, 0.0).sum(1)
    std_payload = np.floor(np.sqrt(dev / np.maximum(window.sum(1), 1)))

    span = gaps.sum(1) + tail_ms
    avg_gap = np.where(n > 1, span // np.maximum(n - 1, 1), 0)
    g_window = np.arange(gaps.shape[1])[None, :] < np.minimum(n - 1, STD_WINDOW)[:, None]
    g_dev = np.where(g_window, (gaps - avg_gap[:, None]).astype(np.float64) ** 2, 0.0).sum(1)
    std_gap = np.floor(np.sqrt(g_dev / np.maximum(g_window.sum(1), 1)))
    return {
        "packetTotalCount": n,
        "octetTotalCount": data + n * headers,
        "smallPacketCount": small,
        "largePacketCount": large,
        "nonEmptyPacketCount": n_nonempty,
        "dataByteCount": data,
        "averageInterarrivalTime": avg_gap,
        "firstNonEmptyPacketSize": first,
        "maxPacketSize": biggest,
        "standardDeviationPayloadLength": std_payload.astype(np.int64),
        "standardDeviationInterarrivalTime": std_gap.astype(np.int64),
    }, span


def _directions_bits(f_sizes, f_gaps, r_sizes, r_gaps, rtt):
    """firstEightNonEmptyPacketDirections: bit i set when the i-th payload went back."""
    f_t = np.concatenate([np.zeros((len(rtt), 1), np.int64), np.cumsum(f_gaps, 1)], 1)
    r_t = rtt[:, None] + np.concatenate(
        [np.zeros((len(rtt), 1), np.int64), np.cumsum(r_gaps, 1)], 1
    )
    big = np.iinfo(np.int64).max
    times = np.concatenate([np.where(f_sizes > 0, f_t, big), np.where(r_sizes > 0, r_t, big)], 1)
    is_rev = np.concatenate([np.zeros_like(f_sizes), np.ones_like(r_sizes)], 1)
    order = np.argsort(times, axis=1, kind="stable")[:, :8]
    rows = np.arange(len(rtt))[:, None]
    picked = (is_rev[rows, order] == 1) & (times[rows, order] < big)
    return (picked.astype(np.int64) << np.arange(8)[None, :]).sum(1)


def simulate(rng: np.random.Generator, p: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of one flow per parameter row of ``p``: both directions, the flow's
    duration, end reason and first eight payload directions."""
    proto = p[:, COL["proto"]].astype(np.int64)
    mss = _per_proto(proto, MSS)
    headers = _per_proto(proto, HEADERS)
    lead = p[:, COL["lead_empty"]]
    drawn = {}
    for prefix in ("f_", "r_"):
        n = _packet_counts(rng, p, prefix)
        payloads = _payloads(rng, p, prefix, n, lead, mss)
        gaps, tail_ms = _gaps(rng, p, prefix, n)
        drawn[prefix] = (n, payloads, gaps, tail_ms)

    r_n = drawn["r_"][0]
    rtt = np.floor(p[:, COL["rtt"]] * np.exp(rng.standard_normal(len(p)) * 0.3)).astype(np.int64)
    rtt = np.where(r_n > 0, rtt, 0)
    spans = {k: v[2].sum(1) + v[3] for k, v in drawn.items()}
    duration = np.maximum(spans["f_"], np.where(r_n > 0, rtt + spans["r_"], 0))
    cut = duration >= ACTIVE_TIMEOUT_MS
    factor = np.where(cut, (ACTIVE_TIMEOUT_MS - 1) / np.maximum(duration, 1), 1.0)

    out = {}
    for prefix, name in (("f_", ""), ("r_", "reverse")):
        n, (sizes, t_bulk, t_other, t_size), gaps, tail_ms = drawn[prefix]
        gaps = np.floor(gaps * factor[:, None]).astype(np.int64)
        tail_ms = np.floor(tail_ms * factor).astype(np.int64)
        drawn[prefix] = (n, sizes, gaps)
        stats, span = _direction_stats(
            sizes, t_bulk, t_other, t_size, gaps, tail_ms, n, mss, headers
        )
        spans[prefix] = span
        for key, value in stats.items():
            out[name + key[0].upper() + key[1:] if name else key] = value

    rtt = np.floor(rtt * factor).astype(np.int64)
    out["duration"] = np.maximum(spans["f_"], np.where(r_n > 0, rtt + spans["r_"], 0))
    out["reverseFlowDeltaMilliseconds"] = rtt
    out["firstEightNonEmptyPacketDirections"] = _directions_bits(
        drawn["f_"][1], drawn["f_"][2], drawn["r_"][1], drawn["r_"][2], rtt
    )
    out["flowEndReason"] = np.where(cut, 2, np.where(proto == 6, 3, 1))
    return out
