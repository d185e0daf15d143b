"""The report's figures, numbered as the paper's (matplotlib, Agg backend, PNG files)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> str:
    """Fig. 5: row-normalised confusion matrix (true class rows, predicted columns)."""
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(5.0, 0.32 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted (accepted)")
    ax.set_ylabel("true device type")
    ax.set_title(title)
    if len(classes) <= 30:
        for i, j in zip(*np.nonzero(share >= 0.005)):
            color = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=5, color=color)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _save(fig, path)


def confidence_bars(correct: list, incorrect: list, classes: list[str], path: Path) -> str:
    """Fig. 4: mean confidence of correct and of incorrect predictions per class."""
    at = np.arange(len(classes))
    to_array = lambda values: np.array([np.nan if v is None else v for v in values])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(classes) + 2), 4))
    ax.bar(at - 0.2, to_array(correct), 0.4, color="tab:green", label="correct")
    ax.bar(at + 0.2, to_array(incorrect), 0.4, color="tab:red", label="incorrect")
    ax.set_xticks(at, classes, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean confidence")
    ax.set_title("Out-of-fold confidence on the training set")
    ax.legend()
    return _save(fig, path)


def daily(days: list[str], series: dict[str, list], path: Path) -> str:
    """Fig. 6: daily accuracy, trust, hit-time and hit-flow, one panel each."""
    fig, axes = plt.subplots(len(series), 1, figsize=(9, 2.0 * len(series)), sharex=True)
    axes = np.atleast_1d(axes)
    at = np.arange(len(days))
    for ax, (name, values) in zip(axes, series.items()):
        values = np.array([np.nan if v is None else v for v in values], dtype=float)
        ax.plot(at, values, marker="o", markersize=3)
        ax.set_ylabel(name, fontsize=8)
        ax.grid(alpha=0.3)
    step = max(1, len(days) // 15)
    axes[-1].set_xticks(at[::step], [days[i] for i in at[::step]], rotation=60, fontsize=7)
    return _save(fig, path)


def trust_of_changes(days: list[str], trust: dict[str, list], spans: dict, path: Path) -> str:
    """Fig. 7: daily trust of the device types whose behaviour was changed, change shaded."""
    names = list(trust) or ["(no changes)"]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.8 * len(names)), sharex=True)
    axes = np.atleast_1d(axes)
    at = np.arange(len(days))
    for ax, name in zip(axes, names):
        ax.plot(at, trust.get(name, [np.nan] * len(days)), marker="o", markersize=3)
        for first, last in spans.get(name, []):
            ax.axvspan(first - 0.5, last + 0.5, color="tab:orange", alpha=0.2)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(name, fontsize=7)
        ax.grid(alpha=0.3)
    step = max(1, len(days) // 15)
    axes[-1].set_xticks(at[::step], [days[i] for i in at[::step]], rotation=60, fontsize=7)
    return _save(fig, path)
