"""Tests of per-window trust: the formula, window bounds, and which homes report."""

import math

import numpy as np
import pytest

from agent.inventory import Inventory
from agent.trust import Trust, baseline_arrays, trust_values

CLASSES = ["camera", "plug"]
BASELINES = {
    "camera": {"n_expected": 100.0, "accept_rate": 0.5, "sigma_trust": 0.25},
    "plug": {"n_expected": 10.0, "accept_rate": 0.8, "sigma_trust": 0.5},
}


def arrays(*columns, dtype=np.int32):
    return tuple(np.array(c, dtype=dtype if i < 2 else bool) for i, c in enumerate(columns))


def test_formula_matches_the_definition():
    """T = accepted / (n_expected * accept_rate); trust = exp(-(T-1)^2 / (2 sigma^2))."""
    n, rate, sigma = baseline_arrays(BASELINES, CLASSES)
    raw, trust = trust_values(np.array([40, 8]), n, rate, sigma, 1.0)
    assert raw[0] == pytest.approx(40 / 50)
    assert raw[1] == pytest.approx(8 / 8)
    assert trust[0] == pytest.approx(math.exp(-((0.8 - 1) ** 2) / (2 * 0.25**2)))
    assert trust[1] == pytest.approx(1.0)


def test_expectation_scales_with_window_length():
    """Half the bundle's window expects half the flows, so half the counts is trust 1."""
    n, rate, sigma = baseline_arrays(BASELINES, CLASSES)
    raw, trust = trust_values(np.array([25, 4]), n, rate, sigma, 0.5)
    assert raw.tolist() == pytest.approx([1.0, 1.0])
    assert trust.tolist() == pytest.approx([1.0, 1.0])


def test_baselines_in_list_form_and_mismatch():
    """Baselines may come as a list in class order; a count mismatch is refused."""
    as_list = [BASELINES["camera"], BASELINES["plug"]]
    assert baseline_arrays(as_list, CLASSES)[0].tolist() == [100.0, 10.0]
    with pytest.raises(ValueError, match="baselines"):
        baseline_arrays(as_list[:1], CLASSES)


def test_close_reports_active_homes_with_inventory_types():
    """Only homes with flows in the window report; their inventory types appear at 0."""
    inv = Inventory(CLASSES, 8)
    inv.update(
        np.array([0, 1], np.int32),
        np.array([1, 1], np.int32),
        np.array([True, True]),
        np.array([1.0, 1.0]),
        np.array([2.0, 2.0]),
    )
    trust = Trust(CLASSES, BASELINES, 3600, 3600, 8)
    trust.begin(0.0)
    trust.add(*arrays([0, 0, 0], [0, 0, 0], [True, False, True]))
    closed = trust.close(3600.0, inv)
    assert len(closed) == 1
    slot, window, devices = closed[0]
    assert slot == 0 and window == {"start": 0.0, "end": 3600.0}
    by_type = {d["device_type"]: d for d in devices}
    assert by_type["camera"]["accepted"] == 2 and by_type["camera"]["discarded"] == 1
    assert by_type["camera"]["raw_trust"] == pytest.approx(2 / 50)
    assert by_type["plug"]["accepted"] == 0 and by_type["plug"]["raw_trust"] == 0.0
    assert trust.close(7200.0, inv) == []
    assert trust.start == 7200.0


def test_short_window_reports_its_true_bounds():
    """A window begun mid-way reports its real start and scales the expectation."""
    inv = Inventory(CLASSES, 8)
    trust = Trust(CLASSES, BASELINES, 3600, 3600, 8)
    trust.begin(1800.0)
    trust.add(*arrays([3], [1], [True]))
    trust.add(*arrays([3, 3, 3], [1, 1, 1], [True, True, True]))
    [(_, window, devices)] = trust.close(3600.0, inv)
    assert window == {"start": 1800.0, "end": 3600.0}
    assert devices[0]["raw_trust"] == pytest.approx(4 / (10 * 0.8 * 0.5))


def test_window_alignment():
    """Windows start at multiples of their length."""
    trust = Trust(CLASSES, BASELINES, 3600, 900, 8)
    assert trust.window_of(1000.0) == 900.0
    assert trust.window_of(1799.9) == 900.0


@pytest.mark.parametrize("native", [True, False])
def test_counts_match_a_loop(native):
    """Window counts (compiled, and numpy) equal a per-flow tally, growth included."""
    rng = np.random.default_rng(4)
    trust = Trust(["a", "b", "c"], [{"n_expected": 1, "accept_rate": 1, "sigma_trust": 1}] * 3,
                  86400.0, 86400.0, 5000)  # fmt: skip
    tally = np.zeros((3000, 3, 2), dtype=np.int64)
    for size in (1, 700, 4000):
        slot = rng.integers(0, 3000, size).astype(np.int32)
        label = rng.integers(0, 3, size).astype(np.int32)
        accepted = rng.random(size) < 0.4
        trust.add(slot, label, accepted, native=native)
        np.add.at(tally, (slot, label, accepted.astype(int)), 1)
    assert len(trust.counts) >= 3000
    np.testing.assert_array_equal(trust.counts[:3000], tally)
    assert not trust.counts[3000:].any()


def test_out_of_range_class_is_refused():
    """A class index past the table raises and counts nothing (compiled and numpy)."""
    for native in (True, False):
        trust = Trust(["a", "b"], [{"n_expected": 1, "accept_rate": 1, "sigma_trust": 1}] * 2,
                      86400.0, 86400.0, 64)  # fmt: skip
        slot, label = np.array([0, 1], dtype=np.int32), np.array([1, 2], dtype=np.int32)
        with pytest.raises(IndexError):
            trust.add(slot, label, np.array([True, False]), native=native)
        if native:
            assert not trust.counts.any()
