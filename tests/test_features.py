"""Tests of agent.features: the remote-flow rule, Table I features and Table II flags."""

import numpy as np
import pytest

from agent.features import (
    ACTIVITY_FIELDS,
    FEATURE_NAMES,
    SERVICE_FLAGS,
    feature_matrix,
    remote_mask,
)
from agent.flows import FLOW_DTYPE, empty, pack_address
from agent.kernels import kernels


def flows_between(pairs):
    """A flow table with one row per (source, destination) address pair."""
    flows = empty(len(pairs))
    for i, (src, dst) in enumerate(pairs):
        flows["sourceAddress"][i] = pack_address(src)
        flows["destinationAddress"][i] = pack_address(dst)
        flows["ipVersion"][i] = 6 if ":" in src else 4
    return flows


def flows_on(protocol, sport, dport):
    """One flow with the given protocol and ports."""
    flows = flows_between([("192.168.1.2", "198.51.100.1")])
    flows["protocolIdentifier"] = protocol
    flows["sourceTransportPort"] = sport
    flows["destinationTransportPort"] = dport
    return flows


def test_feature_order_is_table1_forward_reverse_then_flags():
    """The 28 names are Table I forward, Table I reverse, then the six service flags."""
    assert len(FEATURE_NAMES) == 28
    assert FEATURE_NAMES[:11] == ACTIVITY_FIELDS
    assert FEATURE_NAMES[11:22] == tuple("reverse" + n[0].upper() + n[1:] for n in ACTIVITY_FIELDS)
    assert FEATURE_NAMES[22:] == SERVICE_FLAGS
    assert all(name in FLOW_DTYPE.names for name in FEATURE_NAMES[:22])


@pytest.mark.parametrize(
    "src, dst, remote",
    [
        ("192.168.1.2", "8.8.8.8", True),
        ("8.8.8.8", "10.0.0.5", True),
        ("192.168.1.2", "10.1.2.3", False),
        ("172.16.0.1", "172.31.255.1", False),
        ("172.32.0.1", "192.168.0.1", True),
        ("192.168.1.2", "224.0.0.251", False),
        ("192.168.1.2", "239.255.255.250", False),
        ("169.254.3.4", "8.8.8.8", False),
        ("192.168.1.2", "255.255.255.255", False),
        ("0.0.0.0", "255.255.255.255", False),
        ("fd00::1", "fd12::2", False),
        ("fd00::1", "2001:db8::1", True),
        ("fe80::1", "2001:db8::1", False),
        ("2001:db8::5", "ff02::fb", False),
        ("2001:db8::5", "2001:db8::6", True),
    ],
)
@pytest.mark.parametrize("native", [True, False])
def test_remote_mask_drops_flows_that_never_leave_home(src, dst, remote, native):
    """Both ends private, multicast, link-local or broadcast make a flow local (in the
    compiled helper and in numpy)."""
    assert remote_mask(flows_between([(src, dst)]), native=native)[0] == remote


@pytest.mark.parametrize(
    "protocol, sport, dport, flag",
    [
        (6, 51000, 80, "service_http"),
        (6, 8888, 51000, "service_http"),
        (6, 51000, 443, "service_https"),
        (6, 55443, 40000, "service_https"),
        (17, 40000, 53, "service_dns"),
        (17, 5353, 5353, "service_dns"),
        (17, 123, 123, "service_ntp"),
        (6, 40000, 22, "service_other_tcp"),
        (6, 40000, 53, "service_other_tcp"),
        (17, 40000, 10001, "service_other_udp"),
        (17, 40000, 443, "service_other_udp"),
    ],
)
def test_service_flags_by_source_or_destination_port(protocol, sport, dport, flag):
    """Exactly the Table II flag of the protocol and either port is set."""
    row = feature_matrix(flows_on(protocol, sport, dport))[0, 22:]
    expected = np.array([name == flag for name in SERVICE_FLAGS], dtype=np.float32)
    np.testing.assert_array_equal(row, expected)


@pytest.mark.parametrize("protocol", [1, 2, 58])
def test_icmp_and_igmp_have_no_service_flag(protocol):
    """Flows of neither TCP nor UDP get all six flags at 0."""
    assert not feature_matrix(flows_on(protocol, 0, 0))[0, 22:].any()


def test_feature_matrix_copies_both_directions_float32():
    """Activity features come from their flow fields, forward and reverse, as float32."""
    flows = flows_on(6, 40000, 443)
    rng = np.random.default_rng(3)
    for column, name in enumerate(FEATURE_NAMES[:22]):
        flows[name] = rng.integers(1, 1000)
    X = feature_matrix(flows)
    assert X.dtype == np.float32 and X.flags.c_contiguous and X.shape == (1, 28)
    for column, name in enumerate(FEATURE_NAMES[:22]):
        assert X[0, column] == float(flows[name][0])


def test_missing_reverse_and_statistics_are_zero():
    """A record without reverse direction or flow statistics has those features at 0."""
    flows = flows_on(17, 40000, 123)
    flows["packetTotalCount"] = 1
    flows["octetTotalCount"] = 76
    X = feature_matrix(flows)
    assert X[0, 0] == 1 and X[0, 1] == 76
    assert not X[0, 2:22].any()


def test_large_counters_are_rounded_to_float32():
    """Counters above 2**24 are rounded as float32, as scikit-learn compares them."""
    flows = flows_on(6, 40000, 443)
    flows["octetTotalCount"] = 2**24 + 1
    flows["reverseOctetTotalCount"] = 2**40 + 12345
    X = feature_matrix(flows)
    assert X[0, 1] == np.float32(2**24 + 1)
    assert X[0, 12] == np.float32(2**40 + 12345)


def test_empty_table_gives_empty_matrix():
    """No flows, no rows, still 28 columns."""
    assert feature_matrix(empty(0)).shape == (0, 28)
    assert remote_mask(empty(0)).shape == (0,)


#: Addresses at the edges of every class the remote rule knows, IPv4 and IPv6.
EDGE_ADDRESSES = [
    "0.0.0.0", "0.0.0.1", "0.0.1.0", "1.0.0.0", "9.255.255.255", "10.0.0.0", "10.255.0.1",
    "11.0.0.0", "127.0.0.1", "169.253.255.255", "169.254.0.0", "169.255.0.0", "172.15.255.255",
    "172.16.0.0", "172.31.255.255", "172.32.0.0", "192.167.255.255", "192.168.0.0",
    "192.169.0.0", "223.255.255.255", "224.0.0.0", "239.255.255.255", "240.0.0.1",
    "255.255.255.254", "255.255.255.255", "255.255.0.0", "100.64.0.1", "::", "::1", "::2",
    "::100", "::ffff:0:1", "::1:0:0:0", "1::", "2001:db8::1", "fbff::1", "fc00::", "fdff::1",
    "fe00::", "fe7f::1", "fe80::", "febf::1", "fec0::1", "ff00::", "ff02::fb", "::ffff:1",
]  # fmt: skip


def random_table(n: int, seed: int) -> np.ndarray:
    """Rows of random octets in every field, then addresses from ``EDGE_ADDRESSES`` or
    random ones and protocols/ports that hit the service table."""
    rng = np.random.default_rng(seed)
    flows = np.frombuffer(rng.bytes(n * FLOW_DTYPE.itemsize), dtype=FLOW_DTYPE).copy()
    edges = np.stack([pack_address(a) for a in EDGE_ADDRESSES])
    for field in ("sourceAddress", "destinationAddress"):
        pick = rng.random(n) < 0.8
        flows[field][pick] = edges[rng.integers(0, len(edges), int(pick.sum()))]
    flows["protocolIdentifier"] = rng.choice([1, 2, 6, 17, 58, 132], n)
    ports = np.array([53, 80, 123, 443, 1443, 5353, 8008, 8080, 8443, 8888, 55443, 10001])
    for field in ("sourceTransportPort", "destinationTransportPort"):
        pick = rng.random(n) < 0.5
        flows[field][pick] = rng.choice(ports, int(pick.sum()))
    return flows


@pytest.mark.skipif(kernels is None, reason="agent._kernels not built")
@pytest.mark.parametrize("seed", range(4))
def test_compiled_rows_match_numpy(seed):
    """The compiled helper's remote mask and feature rows are the numpy code's, bit for
    bit, on random tables (huge counters, edge addresses), and on a strided view."""
    flows = random_table(5000, seed)
    for table in (flows, flows[::3]):
        np.testing.assert_array_equal(
            remote_mask(table, native=True), remote_mask(table, native=False)
        )
        fast, slow = feature_matrix(table, native=True), feature_matrix(table, native=False)
        assert fast.dtype == slow.dtype == np.float32 and fast.flags.c_contiguous
        assert fast.tobytes() == slow.tobytes()
    assert 0 < remote_mask(flows).sum() < len(flows)
