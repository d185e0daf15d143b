"""agent.features against a plain field-by-field reference on random flow tables.

The fast paths read the table's raw octets; the reference below spells out the same
rules one field and one check at a time (as the first version of the module did), so
any difference in a bit of the output is caught.
"""

import numpy as np
import pytest

from agent.features import (
    FEATURE_NAMES,
    SERVICE_FLAGS,
    SERVICE_PORTS,
    feature_matrix,
    remote_mask,
    service_flags,
)
from agent.flows import FLOW_DTYPE

MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def reference_ends(a):
    """(private, never-routed) per address, one rule at a time."""
    is_v4 = np.all(a[:, :12] == MAPPED, axis=1)
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
    return np.where(is_v4, v4_private, v6_private), np.where(is_v4, v4_never, v6_never)


def reference_remote(flows):
    """Remote unless both ends are private or either end is never routed."""
    src_private, src_never = reference_ends(flows["sourceAddress"])
    dst_private, dst_never = reference_ends(flows["destinationAddress"])
    return ~((src_private & dst_private) | src_never | dst_never)


def reference_flags(flows):
    """Table II flags with np.isin per service."""
    proto = flows["protocolIdentifier"]
    out = np.zeros((len(flows), len(SERVICE_FLAGS)), dtype=np.float32)
    for column, (protocol, ports) in enumerate(SERVICE_PORTS.values()):
        ports = np.asarray(ports, dtype=np.uint16)
        hit = np.isin(flows["sourceTransportPort"], ports)
        hit |= np.isin(flows["destinationTransportPort"], ports)
        out[:, column] = (proto == protocol) & hit
    known = out[:, : len(SERVICE_PORTS)].any(axis=1)
    out[:, len(SERVICE_PORTS)] = (proto == 6) & ~known
    out[:, len(SERVICE_PORTS) + 1] = (proto == 17) & ~known
    return out


def reference_matrix(flows):
    """Each activity field through float64, then the flags, as one float32 matrix."""
    out = np.empty((len(flows), len(FEATURE_NAMES)), dtype=np.float32)
    for column, name in enumerate(FEATURE_NAMES[:22]):
        out[:, column] = flows[name].astype(np.float64)
    out[:, 22:] = reference_flags(flows)
    return out


def random_flows(n, seed):
    """Random octets, with addresses and ports steered to every class the rules name."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, FLOW_DTYPE.itemsize), dtype=np.uint8)
    flows = raw.view(FLOW_DTYPE).reshape(n)
    for field in ("sourceAddress", "destinationAddress"):
        a = flows[field]
        kind = rng.integers(0, 6, n)
        a[kind < 3, :10] = 0
        a[kind < 3, 10:12] = 0xFF
        first = [0, 10, 127, 169, 172, 192, 224, 239, 255]
        a[kind == 0, 12] = rng.choice(first, np.count_nonzero(kind == 0))
        a[kind == 0, 13] = rng.choice([0, 16, 31, 32, 168, 254], np.count_nonzero(kind == 0))
        a[kind == 1, 12:] = rng.choice([0, 255], (np.count_nonzero(kind == 1), 1))
        a[kind == 3, 0] = rng.choice([0, 0xFC, 0xFD, 0xFE, 0xFF], np.count_nonzero(kind == 3))
        a[kind == 4, :15] = 0
        a[(kind == 4) & (rng.random(n) < 0.5), rng.integers(2, 8)] = 1
    flows["protocolIdentifier"] = rng.choice([1, 2, 6, 17, 50], n)
    known = [p for _, ports in SERVICE_PORTS.values() for p in ports]
    for field in ("sourceTransportPort", "destinationTransportPort"):
        pick = rng.random(n) < 0.4
        flows[field][pick] = rng.choice(known, np.count_nonzero(pick))
    return flows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_paths_match_the_reference_bit_for_bit(seed):
    """remote_mask, service_flags and feature_matrix equal the reference on random tables."""
    flows = random_flows(20_000, seed)
    got = feature_matrix(flows)
    want = reference_matrix(flows)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(service_flags(flows), reference_flags(flows))
    remote = remote_mask(flows)
    assert np.array_equal(remote, reference_remote(flows))
    assert 0 < np.count_nonzero(remote) < len(flows)


def test_strided_and_foreign_tables_take_the_same_rules():
    """A strided view and a table of another dtype give the reference's results too."""
    flows = random_flows(3000, 4)[::3]
    assert np.array_equal(
        feature_matrix(flows).view(np.uint32), reference_matrix(flows).view(np.uint32)
    )
    assert np.array_equal(remote_mask(flows), reference_remote(flows))

    names = list(FEATURE_NAMES[:22]) + [
        "protocolIdentifier",
        "sourceTransportPort",
        "destinationTransportPort",
        "sourceAddress",
        "destinationAddress",
    ]
    foreign = np.zeros(len(flows), dtype=[(n, FLOW_DTYPE.fields[n][0]) for n in names])
    for name in names:
        foreign[name] = flows[name]
    assert np.array_equal(feature_matrix(foreign), reference_matrix(flows))
    assert np.array_equal(remote_mask(foreign), reference_remote(flows))


def test_counters_beyond_float32_round_once_through_float64():
    """64-bit counters round as float64 then float32 would, not by a direct conversion."""
    flows = np.zeros(4, dtype=FLOW_DTYPE)
    values = [2**53 + 1, 2**60 + 2**36 + 1, 2**64 - 1, 16_777_217]
    flows["octetTotalCount"] = values
    flows["reverseDataByteCount"] = values
    column = FEATURE_NAMES.index("octetTotalCount")
    reverse = FEATURE_NAMES.index("reverseDataByteCount")
    want = np.array(values, dtype=np.uint64).astype(np.float64).astype(np.float32)
    got = feature_matrix(flows)
    assert np.array_equal(got[:, column], want)
    assert np.array_equal(got[:, reverse], want)
