"""Tests of the per-home inventory: first-seen, detected, hit-time, hit-flow."""

import numpy as np
import pytest

from agent.inventory import Inventory
from agent.kernels import kernels as _kernels

CLASSES = ["camera", "plug", "tv"]


def batch(rows):
    """rows of (slot, label, accepted, start, end) as the arrays update() takes."""
    slot, label, accepted, start, end = zip(*rows)
    return (
        np.array(slot, dtype=np.int32),
        np.array(label, dtype=np.int32),
        np.array(accepted, dtype=bool),
        np.array(start, float),
        np.array(end, float),
    )


def test_hit_flow_counts_predictions_up_to_first_accepted():
    """Two discarded then one accepted prediction: hit_flow 3, times per definition."""
    inv = Inventory(CLASSES, 16)
    new = inv.update(
        *batch(
            [
                (0, 1, False, 100.0, 101.0),
                (0, 1, False, 110.0, 112.0),
                (0, 1, True, 120.0, 125.0),
                (0, 1, True, 130.0, 131.0),
            ]
        )
    )
    assert new == [(0, 1)]
    event = inv.event(0, 1, "home-a")
    assert event == {
        "home": "home-a",
        "device_type": "plug",
        "first_seen": 100.0,
        "detected": 125.0,
        "hit_time": 25.0,
        "hit_flow": 3,
    }


def test_detection_across_batches_and_only_once():
    """Discarded flows in one batch count toward hit_flow of a later detection; no repeat."""
    inv = Inventory(CLASSES, 16)
    assert inv.update(*batch([(2, 0, False, 50.0, 51.0), (2, 0, False, 52.0, 53.0)])) == []
    assert inv.update(*batch([(2, 0, True, 60.0, 61.0)])) == [(2, 0)]
    assert inv.event(2, 0, "h")["hit_flow"] == 3
    assert inv.event(2, 0, "h")["first_seen"] == 50.0
    assert inv.update(*batch([(2, 0, True, 70.0, 71.0)])) == []
    assert inv.event(2, 0, "h")["hit_flow"] == 3


def test_homes_and_types_are_kept_apart():
    """Predictions for one (home, type) do not move another's figures."""
    inv = Inventory(CLASSES, 16)
    new = inv.update(
        *batch(
            [
                (0, 2, False, 10.0, 11.0),
                (1, 2, True, 12.0, 13.0),
                (0, 0, True, 14.0, 15.0),
                (0, 2, True, 16.0, 18.0),
            ]
        )
    )
    assert sorted(new) == [(0, 0), (0, 2), (1, 2)]
    assert inv.event(0, 2, "h")["hit_flow"] == 2
    assert inv.event(1, 2, "h")["hit_flow"] == 1
    assert inv.types_of(0).tolist() == [0, 2]
    assert inv.types_of(1).tolist() == [2]
    assert inv.types_of(9).tolist() == []


@pytest.mark.parametrize("native", [True, False])
def test_matches_a_plain_loop_on_random_batches(native):
    """The update (compiled, and numpy) agrees with a per-flow reference over random
    batches."""
    rng = np.random.default_rng(7)
    inv = Inventory(CLASSES, 64)
    ref = {}
    t = 0.0
    for _ in range(5):
        n = 300
        slot = rng.integers(0, 40, n).astype(np.int32)
        label = rng.integers(0, 3, n).astype(np.int32)
        accepted = rng.random(n) < 0.1
        start = t + np.arange(n, dtype=float)
        end = start + 0.5
        t += n
        inv.update(slot, label, accepted, start, end, native=native)
        for s, c, a, st, en in zip(slot, label, accepted, start, end):
            entry = ref.setdefault((s, c), {"first": st, "flows": 0, "detected": None})
            if entry["detected"] is None:
                entry["flows"] += 1
                if a:
                    entry["detected"] = en
    for (s, c), entry in ref.items():
        assert inv.first_seen[s, c] == entry["first"]
        if entry["detected"] is None:
            assert np.isnan(inv.detected[s, c])
        else:
            assert inv.detected[s, c] == entry["detected"]
            assert inv.hit_flow[s, c] == entry["flows"]


@pytest.mark.skipif(_kernels is None, reason="agent._kernels not built")
@pytest.mark.parametrize("seed", range(3))
def test_compiled_update_matches_numpy(seed):
    """Both ways give the same new pairs (same order) and the same tables, with starts
    out of order, flows of a pair after its detection in the same batch, and growth."""
    rng = np.random.default_rng(seed)
    inventories = [Inventory(CLASSES, 5000), Inventory(CLASSES, 5000)]
    for k in range(8):
        n = int(rng.integers(1, 4000))
        slot = rng.integers(0, 300 * (k + 1), n).astype(np.int32)
        label = rng.integers(0, 3, n).astype(np.int32)
        accepted = rng.random(n) < 0.05
        start = rng.uniform(0, 1e6, n).round(3)
        end = start + rng.uniform(0, 100, n)
        news = [
            inv.update(slot, label, accepted, start, end, native=native)
            for inv, native in zip(inventories, (True, False))
        ]
        assert news[0] == news[1]
    a, b = inventories
    assert len(a.first_seen) == len(b.first_seen) > 1024
    for name in ("first_seen", "detected", "hit_flow"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.hit_flow >= 0).all() and np.isfinite(a.detected).sum() > 100


@pytest.mark.parametrize("native", [True, False])
def test_out_of_range_class_is_refused_and_changes_nothing(native):
    """A class index past the inventory's classes raises, as numpy indexing does, and
    leaves the tables as they were (the compiled pass checks before it writes)."""
    inv = Inventory(CLASSES, 16)
    inv.update(*batch([(0, 1, True, 1.0, 2.0)]), native=native)
    before = [inv.first_seen.copy(), inv.detected.copy(), inv.hit_flow.copy()]
    with pytest.raises(IndexError):
        inv.update(*batch([(1, 0, True, 5.0, 6.0), (2, 7, True, 5.0, 6.0)]), native=native)
    if native:
        for old, new in zip(before, (inv.first_seen, inv.detected, inv.hit_flow)):
            np.testing.assert_array_equal(old, new)


def test_grows_up_to_the_cap():
    """Slots beyond the initial capacity are stored; capacity never passes max_homes."""
    inv = Inventory(CLASSES, 3000)
    inv.update(*batch([(2999, 1, True, 1.0, 2.0)]))
    assert len(inv.detected) == 3000
    assert inv.types_of(2999).tolist() == [1]


def test_remap_keeps_types_by_name():
    """A new class list keeps the state of types it still names, in their new columns."""
    inv = Inventory(CLASSES, 8)
    inv.update(*batch([(0, 2, True, 1.0, 2.0), (0, 1, True, 3.0, 4.0)]))
    inv.remap(["tv", "speaker"])
    assert inv.types_of(0).tolist() == [0]
    assert inv.event(0, 0, "h")["detected"] == 2.0
