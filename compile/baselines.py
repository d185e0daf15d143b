"""Trust baselines per class (paper, section IV-A), and the trust of observed windows.

For class L over the training windows (only windows holding any flow: days the lab was
not capturing say nothing about a device):
- n_expected: mean number of flows of L per window (true labels);
- accept_rate: accepted predictions of L / flows of L over the whole training period,
  so that n_expected x accept_rate is the expected number of accepted predictions of L
  per window (the paper writes the "discard rate" here; only the acceptance rate makes
  raw trust 1 mean normal behaviour);
- sigma_trust: standard deviation of raw trust T = accepted / (n_expected x accept_rate)
  over the training windows, floored at ``MIN_SIGMA``.

Out-of-fold predictions come from forests fit on part of the training rows, so they can
misjudge how often the forest fit on all of them accepts a class (at full testbed scale
Google Home's out-of-fold rate is 0.73, on the test period the shipped forest accepts
0.84: its trust sat at 1.14 and was flagged on 90% of days). When a second estimate is
given (the final forest's out-of-bag predictions, 0.82 there), accept_rate is the mean
of the two, and their difference, relative to that mean, joins sigma as the baseline's
own uncertainty: trust then does not flag what the baseline cannot tell apart.
"""

import math

import numpy as np

MIN_SIGMA = 0.05
#: A window is flagged when raw trust is more than FLAG_SIGMAS sigma from 1 either way
#: (one window far off), or when it and one of the two windows before it are both more than
#: RUN_SIGMAS sigma below 1 (a run of low windows: a sustained drop).
FLAG_SIGMAS = 3.0
RUN_SIGMAS = 2.0
RUN_WINDOWS = 3
FLAG_BELOW = math.exp(-(FLAG_SIGMAS**2) / 2)
RUN_BELOW = math.exp(-(RUN_SIGMAS**2) / 2)


def window_index(time_ms: np.ndarray, window_seconds: float) -> np.ndarray:
    """Window number of each flow by its start time (windows aligned to the epoch, UTC)."""
    return np.floor(time_ms / 1000.0 / window_seconds).astype(np.int64)


def counts_per_window(
    windows: np.ndarray, classes: np.ndarray, n_classes: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted window numbers present, counts (n_windows, n_classes)) of rows in mask."""
    present, position = np.unique(windows, return_inverse=True)
    counts = np.zeros((len(present), n_classes), dtype=np.int64)
    keep = np.ones(len(windows), bool) if mask is None else mask
    np.add.at(counts, (position[keep], classes[keep]), 1)
    return present, counts


def trust(accepted: np.ndarray, baselines: dict, classes: list[str]):
    """(raw trust, trust) for accepted counts (n_windows, n_classes) under baselines."""
    n_expected = np.array([baselines[c]["n_expected"] for c in classes])
    accept_rate = np.array([baselines[c]["accept_rate"] for c in classes])
    sigma = np.array([baselines[c]["sigma_trust"] for c in classes])
    expected = n_expected * accept_rate

    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(expected > 0, accepted / expected, np.where(accepted > 0, np.inf, 1.0))
        value = np.exp(-((raw - 1.0) ** 2) / (2.0 * sigma**2))
    return raw, np.nan_to_num(value, nan=0.0)


def flags(
    raw: np.ndarray, value: np.ndarray, flag_below=FLAG_BELOW, run_below=RUN_BELOW
) -> np.ndarray:
    """(n_windows, n_classes) True where a class's window is flagged.

    ``raw`` and ``value`` are raw trust and trust per window (rows in time order, only the
    windows that hold flows). The single-window limit catches a change that is large on
    its first day; the run rule, two of three consecutive windows beyond two sigma (the
    second of the Western Electric rules for control charts), catches a drop too small
    for one window, such as a device whose flows now mostly look like another type's.
    The run rule looks at drops only: a type whose count rises moderately may be seeing
    another device's changed flows predicted as it, and blaming it would be wrong. A
    ``run_below`` of 0 turns the run rule off.
    """
    raw, value = np.asarray(raw, dtype=float), np.asarray(value, dtype=float)
    flagged = value < flag_below
    low = (raw < 1.0) & (value < run_below)
    for w in range(len(low)):
        recent = low[max(0, w - RUN_WINDOWS + 1) : w + 1].sum(axis=0)
        flagged[w] |= low[w] & (recent >= 2)
    return flagged


def trust_baselines(
    time_ms: np.ndarray,
    y: np.ndarray,
    label: np.ndarray,
    accepted: np.ndarray,
    classes: list[str],
    window_seconds: float,
    *,
    time_ms_all: np.ndarray | None = None,
    y_all: np.ndarray | None = None,
    accept_rate_other: np.ndarray | None = None,
) -> dict:
    """Per class {n_expected, accept_rate, sigma_trust} from labelled, scored training rows.

    When the scored rows are a stratified sample of all training rows (``time_ms_all``,
    ``y_all``), n_expected and the windows come from all rows, each sampled row stands for
    the rows of its class, and the accepted counts per window are estimated from all rows'
    counts and the sample's acceptance matrix (plus their Poisson variance).
    ``accept_rate_other`` is the second estimate of each class's acceptance rate (see
    the module's docstring).
    """
    n_classes = len(classes)
    if time_ms_all is None or y_all is None:
        time_ms_all, y_all = time_ms, y
    total = np.bincount(y_all, minlength=n_classes)
    sampled = np.bincount(y, minlength=n_classes)
    weight = np.where(sampled > 0, total / np.maximum(sampled, 1), 0.0)[y]

    present, flows = counts_per_window(window_index(time_ms_all, window_seconds), y_all, n_classes)
    n_expected = flows.mean(axis=0)
    accepted_total = np.bincount(label[accepted], weight[accepted], minlength=n_classes)
    accept_rate = np.where(total > 0, accepted_total / np.maximum(total, 1), 0.0)
    uncertainty = np.zeros(n_classes)
    if accept_rate_other is not None:
        other = np.asarray(accept_rate_other, dtype=float)
        both = (accept_rate + other) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            uncertainty = np.where(both > 0, np.abs(accept_rate - other) / both, 0.0)
        accept_rate = both
    expected = n_expected * accept_rate

    if len(y) == len(y_all):
        position = np.searchsorted(present, window_index(time_ms, window_seconds))
        hits = np.zeros(flows.shape)
        np.add.at(hits, (position[accepted], label[accepted]), 1.0)
        noise = 0.0
    else:
        # A sample's accepted counts per window would carry its own sampling noise: take
        # each window's flows per true class times the sample's acceptance matrix instead,
        # and add the Poisson variance of the accepted counts analytically.
        moves = np.zeros((n_classes, n_classes))
        np.add.at(moves, (y[accepted], label[accepted]), 1.0)
        moves /= np.maximum(sampled, 1)[:, None]
        hits = flows @ moves
        with np.errstate(divide="ignore", invalid="ignore"):
            noise = np.where(expected > 0, hits.mean(axis=0) / expected**2, 0.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(expected > 0, hits / expected, 0.0)
    sigma = np.maximum(np.sqrt(raw.var(axis=0) + noise + uncertainty**2), MIN_SIGMA)

    return {
        name: {
            "n_expected": float(n_expected[k]),
            "accept_rate": float(accept_rate[k]),
            "sigma_trust": float(sigma[k]),
        }
        for k, name in enumerate(classes)
    }
