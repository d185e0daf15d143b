"""The evaluation report's output: figures numbered as the paper's (matplotlib, Agg
backend, PNG files) and the ``report.md`` page that shows them with the tables."""

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


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _draws(max_samples) -> str:
    """How many rows each tree's bootstrap drew, as the report's first line says it."""
    if not max_samples:
        return ", each grown from a bootstrap of all training rows"
    return f", each grown from a bootstrap of at most {max_samples:,} rows"


def write_report(path: Path, m: dict, manifest: dict, methods=("lambda1", "lambda2")) -> None:
    """report.md: headline figures, Table III, per-class and per-service tables, figures."""
    prov = manifest.get("provenance", {})
    params = prov.get("parameters", {})
    bound = m.get("bound_cost") or {}
    lines = [
        "# Evaluation of model bundle " + m["bundle"],
        "",
        (
            f"Test rows: {m['test_rows']}. Forest: {params.get('trees')} trees, "
            f"{params.get('max_features')} features per split, at most "
            f"{params.get('max_leaves')} leaves per tree"
            f"{_draws(params.get('max_samples'))}; thresholds: {m['threshold_method']}."
        ),
        "",
        _row(["figure", "value", "paper (section V)"]),
        _row(["---", "---", "---"]),
    ]
    headline = [
        ("CV macro accuracy (training, tuning)", m["cv_macro_accuracy"], "90%"),
        ("test macro accuracy, model alone", m["test_macro_accuracy_model"], "82%"),
        ("test macro accuracy, lambda1", m["test_macro_accuracy_lambda1"], "96%"),
        ("test discard rate, lambda1 (all flows)", m["test_discard_rate_lambda1"], "-"),
        (
            "mean discard rate per class, lambda1",
            m["test_mean_class_discard_rate_lambda1"],
            "about 16%",
        ),
        ("test macro accuracy, lambda2", m["test_macro_accuracy_lambda2"], "-"),
        ("test discard rate, lambda2 (all flows)", m["test_discard_rate_lambda2"], "-"),
        ("model alone, bounded forest", bound.get("test_macro_accuracy_bounded"), "-"),
        (
            "model alone, unbounded forest (all rows, no leaf bound)",
            bound.get("test_macro_accuracy_unbounded"),
            "-",
        ),
    ]
    lines += [_row([name, _pct(value), paper]) for name, value, paper in headline]
    for method in methods:
        if m[f"classes_without_accepted_{method}"]:
            names = ", ".join(m[f"classes_without_accepted_{method}"])
            lines += ["", f"No accepted prediction with {method} (left out of its mean): {names}."]
    lines += ["", "## Table III: accepted / discarded x correct / incorrect", ""]
    lines += [
        _row(
            ["set", "method", "acc. correct", "acc. incorrect", "disc. correct", "disc. incorrect"]
        ),
        _row(["---"] * 6),
    ]
    for name, table in (
        ("training (out of fold)", m.get("table3_training")),
        ("test", m["table3_test"]),
    ):
        for method, t in (table or {}).items():
            lines.append(
                _row(
                    [name, method]
                    + [
                        str(t[k])
                        for k in (
                            "accepted_correct",
                            "accepted_incorrect",
                            "discarded_correct",
                            "discarded_incorrect",
                        )
                    ]
                )
            )
    lines += [
        "",
        "## Per class",
        "",
        _row(
            [
                "device type",
                "flows",
                "model recall",
                "lambda1 accuracy",
                "lambda1 discard",
                "lambda2 accuracy",
                "lambda2 discard",
            ]
        ),
        _row(["---"] * 7),
    ]
    for name, c in m["per_class"].items():
        lines.append(
            _row(
                [
                    name,
                    str(c["flows"]),
                    _pct(c.get("model_recall")),
                    _pct(c.get("accuracy_lambda1")),
                    _pct(c.get("discard_rate_lambda1")),
                    _pct(c.get("accuracy_lambda2")),
                    _pct(c.get("discard_rate_lambda2")),
                ]
            )
        )
    lines += [
        "",
        f"## Per service ({m['threshold_method']})",
        "",
        _row(["service", "flows", "accuracy", "discard rate"]),
        _row(["---"] * 4),
    ]
    for name, s in m["per_service"].items():
        lines.append(_row([name, str(s["flows"]), _pct(s["accuracy"]), _pct(s["discard_rate"])]))
    trust = m["trust"]
    lines += ["", "## Behaviour changes", ""]
    rule = f"A window is flagged when trust is below {trust['flag_below']:.3g}"
    if trust.get("run_below"):
        rule += (
            f", or when it and one of the two windows before it have raw trust under 1 and "
            f"trust below {trust['run_below']:.3g}"
        )
    lines += [rule + ".", ""]
    if trust["changes"]:
        lines += [
            _row(["device type", "kind", "start", "flagged on", "delay (days)"]),
            _row(["---"] * 5),
        ]
        for c in trust["changes"]:
            delay = "-" if c["delay_days"] is None else f"{c['delay_days']:.0f}"
            name = str(c.get("device_type"))
            if "types" in c:
                name = f"every type ({c['flagged_types']} of {c['types']} flagged)"
            flagged_on = str(c["flagged_day"] or "not flagged")
            lines.append(_row([name, str(c.get("kind")), str(c.get("start")), flagged_on, delay]))
    else:
        lines.append("No injected changes listed (changes.json absent or empty).")
    lines += [
        "",
        (
            f"Highest share of flagged windows of a device type without a change (outside "
            f"lab-wide changes): {_pct(trust['unchanged_max_flag_rate'])}."
        ),
    ]
    if trust.get("sweep"):
        lines += [
            "",
            (
                "Other rules (one window: raw trust this many sigma from 1; run: two windows"
                " in three more than two sigma below 1):"
            ),
            "",
            _row(["sigma", "trust below", "run rule", "worst unchanged type",
                  "all outside changes", "changes within a day", "delays (days)"]),
            _row(["---"] * 7),
        ]  # fmt: skip
        for r in trust["sweep"]:
            delays = ", ".join("-" if d is None else f"{d:.0f}" for d in r["delays_days"])
            lines.append(
                _row(
                    [
                        f"{r['sigmas']:g}",
                        f"{r['flag_below']:.3g}",
                        "yes" if r.get("run_rule") else "no",
                        _pct(r["unchanged_max_flag_rate"]),
                        _pct(r["outside_change_flag_rate"]),
                        f"{r['changes_within_a_day']} of {r['changes']}",
                        delays,
                    ]
                )
            )
    lines += [
        "",
        "## Figures",
        "",
    ]
    for key, name in sorted(m.get("figures", {}).items()):
        lines.append(f"![{key}]({name})")
    path.write_text("\n".join(lines) + "\n")
