"""Per (home, device type) and window: accepted and discarded counts, and the trust metric.

raw trust T = accepted / expected, expected = n_expected * accept_rate scaled to the
window's length (the bundle's baselines are per ``Bundle.window_seconds``);
trust = exp(-(T - 1)^2 / (2 sigma^2)) (docs/interfaces.md section 5).

Windows are aligned to multiples of their length in unix time. Who moves the window on
is the caller: replay rolls over when flow end times cross a boundary, the daemon when
the clock does. A window cut short (start-up, shutdown) reports its true bounds and
scales the expectation to them.
"""

import math

import numpy as np

from agent.kernels import buffer
from agent.kernels import kernels as _kernels


def baseline_arrays(baselines, classes: list[str]) -> tuple[np.ndarray, ...]:
    """(n_expected, accept_rate, sigma_trust) as arrays in class order.

    Accepts the bundle's baselines either keyed by class name or as a list in class order.
    """
    rows = [baselines[name] for name in classes] if isinstance(baselines, dict) else baselines
    if len(rows) != len(classes):
        raise ValueError(f"baselines hold {len(rows)} classes, the bundle {len(classes)}")
    columns = ("n_expected", "accept_rate", "sigma_trust")
    return tuple(np.array([float(row[c]) for row in rows]) for c in columns)


def trust_values(accepted, n_expected, accept_rate, sigma, scale: float):
    """Raw and normalised trust; raw is 0 where nothing was expected."""
    expected = n_expected * accept_rate * scale
    raw = np.divide(accepted, expected, out=np.zeros(len(expected)), where=expected > 0)
    sigma = np.where(sigma > 0, sigma, 1.0)
    return raw, np.exp(-((raw - 1.0) ** 2) / (2.0 * sigma**2))


class Trust:
    """Counts of the current window, per home slot and class."""

    def __init__(self, classes, baselines, baseline_window: float, window: float, max_homes):
        self.classes = list(classes)
        self.n_expected, self.accept_rate, self.sigma = baseline_arrays(baselines, classes)
        self.baseline_window = float(baseline_window)
        self.window = float(window)
        self.max_homes = max_homes
        self.counts = np.zeros((min(1024, max_homes), len(classes), 2), dtype=np.int64)
        self.start: float | None = None

    def window_of(self, t: float) -> float:
        """Start of the aligned window holding unix time ``t``."""
        return math.floor(t / self.window) * self.window

    def begin(self, t: float) -> None:
        """Open the first window at ``t`` (not before, so restarts never overlap)."""
        self.start = t

    def add(self, slot, label, accepted, *, native: bool = True) -> None:
        """Count scored flows of known homes into the current window (through the
        compiled helper ``agent._kernels`` when it is built)."""
        if len(slot) == 0:
            return
        needed = int(slot.max()) + 1
        if needed > len(self.counts):
            capacity = len(self.counts)
            while capacity < needed:
                capacity = min(capacity * 2, self.max_homes)
            grown = np.zeros((capacity, *self.counts.shape[1:]), dtype=np.int64)
            grown[: len(self.counts)] = self.counts
            self.counts = grown
        if native and _kernels is not None:
            counted = _kernels.lib.iw_count(
                buffer(slot, np.int32), buffer(label, np.int32), buffer(accepted, bool),
                len(slot), len(self.classes), len(self.counts), buffer(self.counts),
            )  # fmt: skip
            if counted < 0:
                raise IndexError("trust counts: a home slot or class is out of the table")
            return
        if int(label.min()) < 0 or int(label.max()) >= len(self.classes) or slot.min() < 0:
            raise IndexError("trust counts: a home slot or class is out of the table")
        flat = slot.astype(np.intp) * (2 * len(self.classes))
        flat += label * 2
        flat += accepted
        np.add.at(self.counts.reshape(-1), flat, 1)

    def close(self, end: float, inventory) -> list[tuple[int, dict, list[dict]]]:
        """End the window at ``end``; per active home, (slot, window, devices). Resets counts.

        A home is active when any flow of it was scored in the window; its devices are
        the types predicted in the window plus those already in its inventory.
        """
        start = self.start if self.start is not None else self.window_of(end)
        scale = max(end - start, 0.0) / self.baseline_window
        active = np.flatnonzero(self.counts.sum(axis=(1, 2)))
        discarded = self.counts[active, :, 0]
        accepted = self.counts[active, :, 1]
        shape = accepted.shape
        raw, trust = trust_values(
            accepted.ravel(),
            np.broadcast_to(self.n_expected, shape).ravel(),
            np.broadcast_to(self.accept_rate, shape).ravel(),
            np.broadcast_to(self.sigma, shape).ravel(),
            scale,
        )
        raw, trust = raw.reshape(shape), trust.reshape(shape)
        listed = (accepted + discarded > 0) | inventory.detected_mask(active)

        window = {"start": float(start), "end": float(end)}
        out = []
        for i, slot in enumerate(active.tolist()):
            columns = np.flatnonzero(listed[i])
            devices = [
                {
                    "device_type": self.classes[c],
                    "accepted": a,
                    "discarded": d,
                    "raw_trust": r,
                    "trust": t,
                }
                for c, a, d, r, t in zip(
                    columns.tolist(),
                    accepted[i, columns].tolist(),
                    discarded[i, columns].tolist(),
                    raw[i, columns].tolist(),
                    trust[i, columns].tolist(),
                )
            ]
            out.append((slot, dict(window), devices))
        self.counts[:] = 0
        self.start = end
        return out

    def remap(self, classes, baselines, baseline_window: float) -> None:
        """Switch to a new bundle's classes and baselines (after closing the window)."""
        self.classes = list(classes)
        self.n_expected, self.accept_rate, self.sigma = baseline_arrays(baselines, classes)
        self.baseline_window = float(baseline_window)
        self.counts = np.zeros((len(self.counts), len(classes), 2), dtype=np.int64)
