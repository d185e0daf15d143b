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
def test_remote_mask_drops_flows_that_never_leave_home(src, dst, remote):
    """Both ends private, multicast, link-local or broadcast make a flow local."""
    assert remote_mask(flows_between([(src, dst)]))[0] == remote


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
