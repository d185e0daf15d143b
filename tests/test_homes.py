"""Tests of home attribution: prefixes, home blocks, subscriber table, hashed ids, cap."""

import numpy as np
import pytest

from agent.errors import ConfigError
from agent.flows import empty, pack_address
from agent.homes import Homes, SubscriberTable, _Index, prefix_text

KEY = b"k" * 32


def flows_between(pairs):
    flows = empty(len(pairs))
    for i, (src, dst) in enumerate(pairs):
        flows["sourceAddress"][i] = pack_address(src)
        flows["destinationAddress"][i] = pack_address(dst)
        flows["ipVersion"][i] = 6 if ":" in src else 4
    return flows


def test_source_inside_is_the_home_and_others_counted_apart():
    """The inside initiator is the home; inbound and outside flows get no home, counted."""
    homes = Homes(["100.64.0.0/10"], hash_key=KEY)
    flows = flows_between(
        [
            ("100.64.1.2", "203.0.113.9"),
            ("203.0.113.9", "100.64.1.2"),
            ("198.51.100.1", "203.0.113.9"),
            ("100.64.1.2", "198.51.100.7"),
            ("100.64.1.3", "198.51.100.7"),
        ]
    )
    got = homes.assign(flows)
    assert got.slot[0] == got.slot[3] >= 0
    assert got.slot[4] >= 0 and got.slot[4] != got.slot[0]
    assert got.slot[1] == -1 and got.slot[2] == -1
    assert (got.inbound, got.outside, got.over_cap) == (1, 1, 0)
    assert len(homes) == 2


def test_ipv6_home_block_groups_a_56():
    """Two addresses in one /56 share a home; the next /56 is another home."""
    homes = Homes(["2001:db8::/32"], hash_key=KEY, home_prefix_v6=56)
    flows = flows_between(
        [
            ("2001:db8:0:ab01::1", "2600::1"),
            ("2001:db8:0:abff::9", "2600::1"),
            ("2001:db8:0:ac00::1", "2600::1"),
        ]
    )
    slot = homes.assign(flows).slot
    assert slot[0] == slot[1] != slot[2]


def test_ipv4_home_block_can_be_wider():
    """With home_prefix_v4 = 30, neighbours in one /30 share a home."""
    homes = Homes(["100.64.0.0/10"], hash_key=KEY, home_prefix_v4=30)
    slot = homes.assign(
        flows_between(
            [
                ("100.64.0.5", "203.0.113.1"),
                ("100.64.0.6", "203.0.113.1"),
                ("100.64.0.9", "203.0.113.1"),
            ]
        )
    ).slot
    assert slot[0] == slot[1] != slot[2]


def test_hashed_ids_are_keyed_and_hide_the_address():
    """Home ids are stable per key, differ across keys, and do not contain the address."""
    flows = flows_between([("100.64.1.2", "203.0.113.9")])
    a = Homes(["100.64.0.0/10"], hash_key=KEY)
    b = Homes(["100.64.0.0/10"], hash_key=KEY)
    c = Homes(["100.64.0.0/10"], hash_key=b"other")
    for homes in (a, b, c):
        homes.assign(flows)
    assert a.ids == b.ids
    assert a.ids != c.ids
    assert "100.64" not in a.ids[0] and len(a.ids[0]) == 32


def test_subscriber_table_longest_prefix_and_fallback(tmp_path):
    """Table ids win by longest covering prefix; homes missing from it get hashed ids."""
    table = tmp_path / "subs.csv"
    table.write_text(
        "prefix,subscriber_id\n100.64.1.0/24,sub-block\n"
        "100.64.1.2/32,sub-one\n# comment\n2001:db8:0:ab00::/56,sub-v6\n"
    )
    homes = Homes(
        ["100.64.0.0/10", "2001:db8::/32"], hash_key=KEY, subscribers=SubscriberTable.read(table)
    )
    homes.assign(
        flows_between(
            [
                ("100.64.1.2", "203.0.113.1"),
                ("100.64.1.3", "203.0.113.1"),
                ("100.64.2.3", "203.0.113.1"),
                ("2001:db8:0:ab12::1", "2600::1"),
            ]
        )
    )
    assert homes.ids[:2] == ["sub-one", "sub-block"]
    assert len(homes.ids[2]) == 32
    assert homes.ids[3] == "sub-v6"
    assert homes.unmapped == 1


@pytest.mark.parametrize("line", ["100.64.1.0/33,x", "100.64.1.0/24", "100.64.1.1/24,x"])
def test_bad_subscriber_line_names_file_and_line(tmp_path, line):
    """A malformed table line is a ConfigError with the file and line number."""
    table = tmp_path / "subs.csv"
    table.write_text(f"100.64.0.0/24,ok\n{line}\n")
    with pytest.raises(ConfigError, match=r"subs.csv:2"):
        SubscriberTable.read(table)


def test_cap_refuses_new_homes_but_keeps_known_ones():
    """At max_homes, flows of new homes are counted over_cap; known homes still map."""
    homes = Homes(["100.64.0.0/10"], hash_key=KEY, max_homes=2)
    homes.assign(flows_between([("100.64.0.1", "203.0.113.1"), ("100.64.0.2", "203.0.113.1")]))
    got = homes.assign(
        flows_between(
            [
                ("100.64.0.3", "203.0.113.1"),
                ("100.64.0.1", "203.0.113.1"),
                ("100.64.0.4", "203.0.113.1"),
            ]
        )
    )
    assert got.over_cap == 2
    assert got.slot.tolist()[1] == 0 and got.slot[0] == got.slot[2] == -1
    assert len(homes) == 2


def test_many_flows_vectorised_consistency():
    """A large random batch maps each flow to the slot of its own /32, as a dict would."""
    rng = np.random.default_rng(3)
    n = 5000
    flows = empty(n)
    flows["ipVersion"] = 4
    flows["sourceAddress"][:, 10:12] = 0xFF
    flows["sourceAddress"][:, 12] = 100
    flows["sourceAddress"][:, 13] = 64
    flows["sourceAddress"][:, 14:] = rng.integers(0, 4, (n, 2))
    flows["destinationAddress"] = pack_address("203.0.113.1")
    homes = Homes(["100.64.0.0/10"], hash_key=KEY)
    slot = homes.assign(flows).slot
    seen = {}
    for i in range(n):
        key = bytes(flows["sourceAddress"][i])
        assert seen.setdefault(key, slot[i]) == slot[i]
    assert len(seen) == len(homes) == len(set(slot.tolist()))


@pytest.mark.parametrize("spread", ["random", "consecutive"])
def test_block_index_matches_a_dict_through_growth(spread):
    """Keys added in batches (the table grows several times) are each found with their
    own slot; keys never added, and keys refused at the cap, are not found (compiled
    probing and numpy's alike)."""
    rng = np.random.default_rng(8)
    n = 20_000
    if spread == "random":
        keys = np.unique(rng.integers(0, 2**63, 2 * n, dtype=np.uint64))[:n]
        rng.shuffle(keys)
    else:
        keys = (np.uint64(0xFFFF) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
    slots = np.arange(n, dtype=np.int32)
    slots[::7] = -1
    index = _Index()
    expected = {}
    for at in range(0, n, 1500):
        index.add(keys[at : at + 1500], slots[at : at + 1500])
        expected.update((int(k), int(s)) for k, s in zip(keys[: at + 1500], slots[: at + 1500]))
        asked = np.concatenate([keys[: at + 3000], rng.integers(0, 2**63, 500, dtype=np.uint64)])
        want = [expected.get(int(k), -1) for k in asked]
        assert index.find(asked).tolist() == want
        assert index.find(asked, native=False).tolist() == want
    assert index.size >= 2 * int((slots >= 0).sum())


def test_prefix_text_round_trip():
    """Home blocks print as ordinary CIDR text for both families."""
    assert prefix_text((0xFFFF << 32) | 0x64400102, 128) == "100.64.1.2/32"
    assert prefix_text(0x20010DB8 << 96, 56) == "2001:db8::/56"


@pytest.mark.parametrize("home_prefix_v6", [56, 80])
def test_mixed_families_match_a_per_flow_reference(home_prefix_v6):
    """IPv4 and IPv6 flows in one batch, inside and out, map as ipaddress says they should."""
    import ipaddress

    rng = np.random.default_rng(home_prefix_v6)
    sources = ["100.64.0.9", "100.64.0.10", "100.127.3.4", "198.51.100.1", "2600::5"]
    sources += ["2001:db8:0:ab01::1", "2001:db8:0:abff::9", "2001:db8:0:ab01:8000::1"]
    destinations = ["203.0.113.1", "100.64.0.9", "2001:db8:0:ab01::7", "2600::1"]
    pairs = [(str(rng.choice(sources)), str(rng.choice(destinations))) for _ in range(400)]
    prefixes = ["100.64.0.0/10", "2001:db8::/32"]
    networks = [ipaddress.ip_network(p) for p in prefixes]
    homes = Homes(prefixes, hash_key=KEY, home_prefix_v6=home_prefix_v6)

    def inside(text):
        return any(ipaddress.ip_address(text) in network for network in networks)

    blocks = {}
    for first, stop in ((0, 150), (150, 400), (0, 400)):
        got = homes.assign(flows_between(pairs[first:stop]))
        outside = inbound = 0
        for (src, dst), slot in zip(pairs[first:stop], got.slot.tolist()):
            if not inside(src):
                assert slot == -1
                inbound += inside(dst)
                outside += not inside(dst)
                continue
            length = 32 if ":" not in src else home_prefix_v6
            block = ipaddress.ip_network(f"{src}/{length}", strict=False)
            assert blocks.setdefault(block, slot) == slot
        assert len(set(blocks.values())) == len(blocks) == len(homes)
        assert (got.outside, got.inbound, got.over_cap) == (outside, inbound, 0)
