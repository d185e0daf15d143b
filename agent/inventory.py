"""Per-home inventory of detected device types, with first-seen, hit-time and hit-flow.

For home h and device type L (docs/interfaces.md section 5):
first_seen is the start of the first flow predicted as L, accepted or not; detected is
the end of the first flow whose prediction of L was accepted (the moment its record was
complete, so the earliest the agent could have known); hit_time = detected - first_seen;
hit_flow counts the flows predicted as L up to and including that first accepted one.

State is a few (homes x types) arrays indexed by home slot and class index, grown by
doubling up to the homes cap; a batch is folded in with sorts and reductions over the
flows of (home, type) pairs not yet detected (once detected, nothing of a pair changes),
and Python code runs only for new detections. With the compiled helper
``agent._kernels`` the batch is folded in by one pass in flow order instead; the numpy
code is its twin and the fallback.
"""

import logging

import numpy as np

from agent.kernels import buffer
from agent.kernels import kernels as _kernels

log = logging.getLogger(__name__)


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values starts in a sorted array."""
    if len(values) == 0:
        return np.empty(0, dtype=np.intp)
    edge = np.empty(len(values), dtype=bool)
    edge[0] = True
    np.not_equal(values[1:], values[:-1], out=edge[1:])
    return np.flatnonzero(edge)


class Inventory:
    """Device types per home slot; ``update`` returns the batch's new detections."""

    def __init__(self, classes: list[str], max_homes: int):
        self.classes = list(classes)
        self.max_homes = max_homes
        self._allocate(min(1024, max_homes))

    def _allocate(self, capacity: int) -> None:
        n = len(self.classes)
        self.first_seen = np.full((capacity, n), np.nan)
        self.detected = np.full((capacity, n), np.nan)
        self.hit_flow = np.zeros((capacity, n), dtype=np.int64)

    def _grow(self, slots_needed: int) -> None:
        capacity = len(self.first_seen)
        if slots_needed <= capacity:
            return
        while capacity < slots_needed:
            capacity = min(capacity * 2, self.max_homes)
        old = (self.first_seen, self.detected, self.hit_flow)
        self._allocate(capacity)
        for new, previous in zip((self.first_seen, self.detected, self.hit_flow), old):
            new[: len(previous)] = previous

    def update(
        self, slot, label, accepted, start, end, *, native: bool = True
    ) -> list[tuple[int, int]]:
        """Fold in scored flows (home slot >= 0, class, accepted, start/end in seconds).

        Returns the (slot, class) pairs detected for the first time in this batch, by
        slot then class.
        """
        if len(slot) == 0:
            return []
        self._grow(int(slot.max()) + 1)
        n_classes = len(self.classes)
        if native and _kernels is not None:
            new = self._update_compiled(slot, label, accepted, start, end)
            return [(k // n_classes, k % n_classes) for k in new.tolist()]
        if int(label.min()) < 0 or int(label.max()) >= n_classes or int(slot.min()) < 0:
            raise IndexError("inventory update: a home slot or class is out of the tables")

        key = slot.astype(np.int64) * n_classes + label
        pending = np.isnan(self.detected.reshape(-1)[key])
        if not pending.all():
            if not pending.any():
                return []
            key, accepted, start, end = (
                key[pending],
                accepted[pending],
                start[pending],
                end[pending],
            )
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        group_start = _run_starts(sorted_key)
        keys = sorted_key[group_start]
        group_size = np.diff(group_start, append=len(order))
        group = np.repeat(np.arange(len(keys)), group_size)
        rank = np.arange(len(order)) - group_start[group]

        first_seen = self.first_seen.reshape(-1)
        first_seen[keys] = np.fmin(
            first_seen[keys], np.minimum.reduceat(start[order], group_start)
        )

        hits = accepted[order]
        hit_position = np.flatnonzero(hits)
        hit_position = hit_position[_run_starts(group[hit_position])]
        hit_groups = group[hit_position]
        flows_seen = group_size.copy()
        flows_seen[hit_groups] = rank[hit_position] + 1
        hit_flow = self.hit_flow.reshape(-1)
        hit_flow[keys] += flows_seen

        new = keys[hit_groups]
        self.detected.reshape(-1)[new] = end[order[hit_position]]
        return [(k // n_classes, k % n_classes) for k in new.tolist()]

    def _update_compiled(self, slot, label, accepted, start, end) -> np.ndarray:
        """``update`` through ``agent._kernels``: the keys of new pairs, sorted."""
        new = np.empty(len(slot), dtype=np.int64)
        found = _kernels.lib.iw_inventory(
            buffer(slot, np.int32), buffer(label, np.int32), buffer(accepted, bool),
            buffer(start, np.float64), buffer(end, np.float64), len(slot),
            len(self.classes), len(self.first_seen), buffer(self.first_seen),
            buffer(self.detected), buffer(self.hit_flow), buffer(new),
        )  # fmt: skip
        if found < 0:
            raise IndexError("inventory update: a home slot or class is out of the tables")
        return np.sort(new[:found])

    def event(self, slot: int, cls: int, home_id: str) -> dict:
        """The detection event of one (home, type), as summaries carry it."""
        first_seen = float(self.first_seen[slot, cls])
        detected = float(self.detected[slot, cls])
        return {
            "home": home_id,
            "device_type": self.classes[cls],
            "first_seen": first_seen,
            "detected": detected,
            "hit_time": max(0.0, detected - first_seen),
            "hit_flow": int(self.hit_flow[slot, cls]),
        }

    def types_of(self, slot: int) -> np.ndarray:
        """Class indices in the home's inventory."""
        if slot >= len(self.detected):
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(~np.isnan(self.detected[slot]))

    def detected_mask(self, slots: np.ndarray) -> np.ndarray:
        """(len(slots), n_classes) True where the type is in that home's inventory."""
        out = np.zeros((len(slots), len(self.classes)), dtype=bool)
        known = slots < len(self.detected)
        out[known] = ~np.isnan(self.detected[slots[known]])
        return out

    def restore(self, classes: list[str], first_seen, detected, hit_flow) -> None:
        """Take saved tables (rows = slots 0..n-1, columns = ``classes``), then map them
        onto this inventory's own classes by name."""
        target = self.classes
        self.classes = list(classes)
        self._allocate(max(len(first_seen), min(1024, self.max_homes)))
        n = len(first_seen)
        self.first_seen[:n], self.detected[:n], self.hit_flow[:n] = first_seen, detected, hit_flow
        self.remap(target)

    def remap(self, classes: list[str]) -> None:
        """Keep the state of types a new bundle still has; drop the others (logged)."""
        old_index = {name: i for i, name in enumerate(self.classes)}
        dropped = set(self.classes) - set(classes)
        if dropped:
            log.warning("inventory drops types the new bundle lacks: %s", sorted(dropped))
        old = (self.first_seen, self.detected, self.hit_flow)
        capacity = len(self.first_seen)
        self.classes = list(classes)
        self._allocate(capacity)
        for new_i, name in enumerate(classes):
            if name in old_index:
                for new, previous in zip((self.first_seen, self.detected, self.hit_flow), old):
                    new[:, new_i] = previous[:, old_index[name]]
