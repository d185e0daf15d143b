"""Tests of keeping inventories across restarts (agent/state.py)."""

import numpy as np

from agent.flows import empty, pack_address
from agent.homes import Homes
from agent.inventory import Inventory
from agent.state import FILE, load_state, save_state

ADDRESSES = ["100.64.0.1", "2001:db8:0:100::1", "100.64.0.2"]


def populated(classes=("camera", "plug", "tv")):
    homes = Homes(["100.64.0.0/10", "2001:db8::/32"], hash_key=b"k")
    flows = empty(len(ADDRESSES))
    for i, address in enumerate(ADDRESSES):
        flows["sourceAddress"][i] = pack_address(address)
        flows["destinationAddress"][i] = pack_address("2600::1" if ":" in address else "8.8.8.8")
        flows["ipVersion"][i] = 6 if ":" in address else 4
    slot = homes.assign(flows).slot
    inventory = Inventory(list(classes), 100)
    inventory.update(
        slot,
        np.array([0, 2, 1], np.int32),
        np.array([True, True, False]),
        np.array([10.0, 20.0, 30.0]),
        np.array([11.0, 21.0, 31.0]),
    )
    return homes, inventory, flows, slot


def test_round_trip_keeps_homes_ids_and_inventory(tmp_path):
    """Saved state comes back with the same slots, ids and detections, mapped by name."""
    homes, inventory, flows, slot = populated()
    save_state(tmp_path, homes, inventory)
    fresh_homes = Homes(["100.64.0.0/10", "2001:db8::/32"], hash_key=b"k")
    fresh = Inventory(["tv", "camera", "speaker"], 100)
    assert load_state(tmp_path, fresh_homes, fresh) == 3
    assert fresh_homes.ids == homes.ids
    assert fresh_homes.assign(flows).slot.tolist() == slot.tolist()
    assert fresh.types_of(slot[0]).tolist() == [1]
    assert fresh.types_of(slot[1]).tolist() == [0]
    assert fresh.event(slot[1], 0, "h")["detected"] == 21.0
    assert fresh.types_of(slot[2]).tolist() == []


def test_other_block_sizes_or_damage_start_empty(tmp_path):
    """State written with other home block sizes, or a damaged file, is ignored."""
    homes, inventory, _, _ = populated()
    save_state(tmp_path, homes, inventory)
    other = Homes(["100.64.0.0/10"], hash_key=b"k", home_prefix_v6=48)
    assert load_state(tmp_path, other, Inventory(["tv"], 10)) == 0
    assert len(other) == 0
    (tmp_path / FILE).write_bytes(b"not a numpy file")
    assert (
        load_state(tmp_path, Homes(["100.64.0.0/10"], hash_key=b"k"), Inventory(["tv"], 10)) == 0
    )


def test_missing_file_is_a_fresh_start(tmp_path):
    """No state file: nothing restored."""
    inventory = populated()[1]
    assert load_state(tmp_path, Homes(["100.64.0.0/10"], hash_key=b"k"), inventory) == 0
