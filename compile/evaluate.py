"""``python -m compile evaluate --bundle B --data DIR --report OUT``: the test period
scored through the agent's own path (``agent.features``, ``agent.bundle``,
``agent.score``) and reported as the paper does: Table III, Fig. 4-7, accuracy and
discard rate per class and per service, and which injected behaviour changes
(``DIR/changes.json``) the trust metric flagged, and when.

Accuracy with a threshold is the paper's: per true class, the share of its accepted
predictions that are correct, averaged over the classes with any accepted prediction (the
diagonal of Fig. 5; classes with none are listed in the metrics). Hit-time
and hit-flow use the true labels, as the paper: per day and class, from the class's first
flow to its first correct accepted prediction.

A window is flagged (``baselines.flags``) when a class's trust falls below
``--flag-below``, by default exp(-3^2 / 2) = 0.011: raw trust more than three sigma from
1, a control chart's usual limits; or when raw trust is more than two sigma below 1
(trust under ``--run-below``, exp(-2) = 0.135) in that window and in one of the two
windows before it. The paper sets no level. At two sigma alone a device that behaves as
in training would be flagged on about 5% of its days by chance, more where its daily
count is small and skewed; asking for two such days in three keeps that rare while a
sustained drop too small for the three-sigma limit is still caught on its second day.
The report also gives the trade-off at other levels.

A change listed for device type ``*`` (``EVERY_TYPE``) concerns the whole lab, such as
the capture server's early shutdown on 20 April: it is reported with how many types were
flagged, and its days are left out of every type's rate of flags without a change.
"""

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np

from agent.bundle import load_bundle
from agent.errors import BundleError
from agent.features import FEATURE_NAMES, feature_matrix
from agent.score import METHODS, apply_thresholds
from compile import baselines, dataset, report_plots
from compile.testbed.changes import EVERY_TYPE
from compile.thresholds import table3

log = logging.getLogger(__name__)

#: The other rules the report compares: single-window limits in sigmas of raw trust from
#: 1, without (False) or with (True) the run rule.
SWEEP = ((2.0, False), (2.5, False), (3.0, False), (3.5, False), (3.0, True))
DAY_S = 86_400
SERVICES = ("HTTP", "HTTPS", "DNS", "NTP", "other TCP", "other UDP")


def _per_class(y, label, keep, n_classes) -> np.ndarray:
    """Per true class, share of kept rows predicted correctly (NaN where none kept)."""
    rows = np.bincount(y[keep], minlength=n_classes)
    hits = np.bincount(y[keep & (label == y)], minlength=n_classes)
    return np.where(rows > 0, hits / np.maximum(rows, 1), np.nan)


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def _clean(values) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=float)]


def service_of(X: np.ndarray) -> np.ndarray:
    """Index into SERVICES of each row (its first set flag), -1 for ICMP/IGMP and others."""
    flags = X[:, len(FEATURE_NAMES) - len(SERVICES) :] > 0
    return np.where(flags.any(axis=1), flags.argmax(axis=1), -1)


def hit_times(start_ms, y, good, day, n_classes) -> tuple[list, list]:
    """Per day: mean hit-time (s) and hit-flow over classes detected that day."""
    times, flows = [], []
    for d in np.unique(day):
        today = day == d
        t_day, y_day, good_day = start_ms[today], y[today], good[today]
        hit_t, hit_n = [], []
        for k in np.unique(y_day):
            rows = np.flatnonzero(y_day == k)
            first_good = np.flatnonzero(good_day[rows])
            if len(first_good):
                hit_t.append((t_day[rows[first_good[0]]] - t_day[rows[0]]) / 1000.0)
                hit_n.append(first_good[0] + 1)
        times.append(_mean(hit_t))
        flows.append(_mean(hit_n))
    return times, flows


def _when(value) -> float:
    """A change's start/end (epoch s or ms, or an ISO date/time) as epoch seconds."""
    if isinstance(value, (int, float)):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    return float(np.datetime64(str(value).rstrip("Z"), "s").astype(np.int64))


def _change_span(change: dict, window_s: float) -> tuple[float, float]:
    """First and last window of a change; ``end`` is its last affected day, included."""
    first = np.floor(_when(change["start"]) / window_s)
    if change.get("end") is None:
        return first, np.inf
    return first, np.floor((_when(change["end"]) + DAY_S - 1) / window_s)


def _change_columns(change: dict, classes: list[str]) -> list[int]:
    """The class columns a change concerns: one type, every type (``*``), or none."""
    name = change.get("device_type")
    if name == EVERY_TYPE:
        return list(range(len(classes)))
    return [classes.index(name)] if name in classes else []


def flagged_changes(changes, flagged, windows, window_s, classes) -> list[dict]:
    """Each injected change with the first window at or after its start that is flagged
    (``flagged``: windows x classes); for a lab-wide change, also how many of the types
    were flagged during it."""
    out = []
    for change in changes:
        entry = {k: change[k] for k in change}
        entry.update(flagged=False, flagged_day=None, delay_days=None, within_a_day=False)
        columns = _change_columns(change, classes)
        if not columns or "start" not in change:
            out.append(entry)
            continue
        first, last = _change_span(change, window_s)
        span = (windows >= first) & (windows <= last)
        low = span[:, None] & flagged[:, columns]
        if change.get("device_type") == EVERY_TYPE:
            entry.update(flagged_types=int(low.any(axis=0).sum()), types=len(columns))
        hits = np.flatnonzero(low.any(axis=1))
        if len(hits):
            w = windows[hits[0]]
            delay = (w - first) * window_s / DAY_S
            entry.update(
                flagged=True,
                flagged_day=str(np.datetime64(int(w * window_s), "s").astype("datetime64[D]")),
                delay_days=float(delay),
                within_a_day=bool(delay <= 1.0),
            )
        out.append(entry)
    return out


def change_windows(changes, windows, window_s, classes) -> np.ndarray:
    """(n_windows, n_classes) True where an injected change is in effect."""
    inside = np.zeros((len(windows), len(classes)), bool)
    for change in changes:
        columns = _change_columns(change, classes)
        if not columns or "start" not in change:
            continue
        first, last = _change_span(change, window_s)
        inside[:, columns] |= ((windows >= first) & (windows <= last))[:, None]
    return inside


def trust_flags(changes, flagged, windows, window_s, classes) -> dict:
    """What the flags find: each change, and how often the types without a change of
    their own are flagged outside lab-wide changes."""
    inside = change_windows(changes, windows, window_s, classes)
    own = {c.get("device_type") for c in changes if c.get("device_type") in classes}
    unchanged = [k for k, c in enumerate(classes) if c not in own]
    rates = {}
    for k in unchanged:
        days = ~inside[:, k]
        if days.any():
            rates[classes[k]] = float(flagged[days, k].mean())
    found = flagged_changes(changes, flagged, windows, window_s, classes)
    return {
        "changes": found,
        "unchanged_flag_rate": rates,
        "unchanged_max_flag_rate": max(rates.values()) if rates else None,
        "outside_change_flag_rate": float(flagged[~inside].mean()) if (~inside).any() else None,
        "changes_flagged_within_a_day": all(c["within_a_day"] for c in found) if found else None,
    }


def flag_sweep(changes, raw, trust, windows, window_s, classes) -> list[dict]:
    """``trust_flags`` under each rule of ``SWEEP``, in brief: the report's trade-off table."""
    rows = []
    for z, run in SWEEP:
        level = math.exp(-(z**2) / 2)
        flagged = baselines.flags(raw, trust, level, baselines.RUN_BELOW if run else 0.0)
        got = trust_flags(changes, flagged, windows, window_s, classes)
        rows.append(
            {
                "sigmas": z,
                "run_rule": run,
                "flag_below": level,
                "unchanged_max_flag_rate": got["unchanged_max_flag_rate"],
                "outside_change_flag_rate": got["outside_change_flag_rate"],
                "changes_within_a_day": sum(c["within_a_day"] for c in got["changes"]),
                "changes": len(got["changes"]),
                "delays_days": [c["delay_days"] for c in got["changes"]],
            }
        )
    return rows


def evaluate(
    bundle_dir,
    data_dir,
    report_dir,
    *,
    test_dates=None,
    fmt="auto",
    method="lambda1",
    flag_below=baselines.FLAG_BELOW,
    run_below=baselines.RUN_BELOW,
) -> dict:
    """Score the test period, write report.md, metrics.json and figures; the metrics."""
    bundle = load_bundle(bundle_dir)
    classes, n = bundle.classes, len(bundle.classes)
    ranges = dataset.parse_ranges(test_dates) if test_dates else None
    test = dataset.load(data_dir, "test", ranges=ranges, classes=classes, fmt=fmt)
    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)

    X = feature_matrix(test.flows)
    proba = bundle.predictor.predict_proba(X)
    y = test.y
    scored = {m: apply_thresholds(proba, bundle.thresholds, m) for m in METHODS}
    label = scored[method][0]
    everything = np.ones(len(y), bool)

    metrics = {
        "bundle": bundle.digest,
        "test_rows": len(y),
        "threshold_method": method,
        "cv_macro_accuracy": bundle.manifest.get("provenance", {}).get("cv_macro_accuracy"),
        "test_macro_accuracy_model": _mean(_per_class(y, label, everything, n)),
        "per_class": {c: {"flows": int(v)} for c, v in zip(classes, np.bincount(y, minlength=n))},
        "table3_test": table3(proba, y, {m: _as_manifest(bundle.thresholds[m]) for m in METHODS}),
        "table3_training": bundle.manifest.get("training", {}).get("table3"),
        "bound_cost": bundle.manifest.get("provenance", {}).get("bound_cost"),
    }
    model_recall = _per_class(y, label, everything, n)
    for m, (lab, _, acc) in scored.items():
        accuracy = _per_class(y, lab, acc, n)
        discard = 1.0 - np.bincount(y[acc], minlength=n) / np.maximum(
            np.bincount(y, minlength=n), 1
        )
        metrics[f"test_macro_accuracy_{m}"] = _mean(accuracy)
        present = np.bincount(y, minlength=n) > 0
        metrics[f"classes_without_accepted_{m}"] = [
            classes[k] for k in np.flatnonzero(present & np.isnan(accuracy))
        ]
        metrics[f"test_discard_rate_{m}"] = float(1.0 - acc.mean())
        metrics[f"test_mean_class_discard_rate_{m}"] = _mean(discard)
        for c, a, d, r in zip(classes, _clean(accuracy), _clean(discard), _clean(model_recall)):
            metrics["per_class"][c].update({f"accuracy_{m}": a, f"discard_rate_{m}": d})
            metrics["per_class"][c]["model_recall"] = r

    accepted = scored[method][2]
    service = service_of(X)
    metrics["per_service"] = {}
    for s, name in enumerate(SERVICES):
        rows = service == s
        kept = rows & accepted
        metrics["per_service"][name] = {
            "flows": int(rows.sum()),
            "accuracy": float(np.mean(label[kept] == y[kept])) if kept.any() else None,
            "discard_rate": float(1.0 - kept.sum() / rows.sum()) if rows.any() else None,
        }

    start_ms = test.flows["flowStartMilliseconds"]
    day = start_ms // (DAY_S * 1000)
    days = [str(np.datetime64(int(d), "D")) for d in np.unique(day)]
    daily_accuracy = [
        _mean(_per_class(y, label, accepted & (day == d), n)) for d in np.unique(day)
    ]
    hit_time, hit_flow = hit_times(start_ms, y, accepted & (label == y), day, n)

    window_s = bundle.window_seconds
    win = baselines.window_index(test.flows["flowStartMilliseconds"], window_s)
    windows, counts = baselines.counts_per_window(win, label, n, accepted)
    raw, trust = baselines.trust(counts, bundle.baselines_for(method), classes)
    changes = _read_changes(Path(data_dir))
    flags = baselines.flags(raw, trust, flag_below, run_below)
    flagged = trust_flags(changes, flags, windows, window_s, classes)

    metrics["daily"] = {
        "days": days,
        "accuracy": daily_accuracy,
        "hit_time_s": hit_time,
        "hit_flow": hit_flow,
    }
    metrics["trust"] = {
        "window_seconds": window_s,
        "windows": [str(np.datetime64(int(w * window_s), "s")) for w in windows],
        "mean": _clean(trust.mean(axis=1)),
        "per_class": {c: _clean(trust[:, k]) for k, c in enumerate(classes)},
        "raw_per_class": {c: _clean(raw[:, k]) for k, c in enumerate(classes)},
        "flag_below": flag_below,
        "run_below": run_below,
        **{k: v for k, v in flagged.items() if k != "changes_flagged_within_a_day"},
        "sweep": flag_sweep(changes, raw, trust, windows, window_s, classes),
    }
    metrics["changes_flagged_within_a_day"] = flagged["changes_flagged_within_a_day"]

    figures = _figures(report, metrics, bundle, y, label, accepted, classes, changes, windows)
    metrics["figures"] = figures
    (report / "metrics.json").write_text(json.dumps(metrics, indent=1))
    report_plots.write_report(report / "report.md", metrics, bundle.manifest, METHODS)
    return metrics


def _as_manifest(pair) -> dict:
    return {"low": list(pair[0]), "high": list(pair[1])}


def _read_changes(data_dir: Path) -> list[dict]:
    path = data_dir / "changes.json"
    if not path.is_file():
        return []
    changes = json.loads(path.read_text())
    if isinstance(changes, dict):
        changes = changes.get("changes", [])
    return [c for c in changes if isinstance(c, dict)]


def _figures(report, metrics, bundle, y, label, accepted, classes, changes, windows) -> dict:
    n = len(classes)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y[accepted], label[accepted]), 1)
    figures = {
        "fig5": report_plots.confusion(
            matrix,
            classes,
            report / "fig5_confusion.png",
            f"Accepted predictions ({metrics['threshold_method']}), test period",
        )
    }
    confidence = bundle.manifest.get("training", {}).get("confidence_by_class")
    if confidence:
        figures["fig4"] = report_plots.confidence_bars(
            confidence["correct"],
            confidence["incorrect"],
            classes,
            report / "fig4_confidence.png",
        )
    daily = metrics["daily"]
    trust = metrics["trust"]
    figures["fig6"] = report_plots.daily(
        daily["days"],
        {
            "accuracy": daily["accuracy"],
            "trust": _trust_by_day(trust, daily["days"]),
            "hit-time (s)": daily["hit_time_s"],
            "hit-flow": daily["hit_flow"],
        },
        report / "fig6_daily.png",
    )
    changed = {c["device_type"] for c in changes if c.get("device_type") in classes}
    spans: dict = {}
    for c in changes:
        if c.get("device_type") in changed and "start" in c:
            first = str(np.datetime64(int(_when(c["start"])), "s").astype("datetime64[D]"))
            end = c.get("end")
            last = (
                str(np.datetime64(int(_when(end)), "s").astype("datetime64[D]")) if end else None
            )
            idx = daily["days"]
            a = idx.index(first) if first in idx else 0
            b = idx.index(last) if last in idx else len(idx) - 1
            spans.setdefault(c["device_type"], []).append((a, b))
    figures["fig7"] = report_plots.trust_of_changes(
        daily["days"],
        {name: _trust_by_day(trust, daily["days"], name) for name in sorted(changed)},
        spans,
        report / "fig7_trust_changes.png",
    )
    return figures


def _trust_by_day(trust: dict, days: list[str], name: str | None = None) -> list:
    """Trust per day for the day-long windows (mean over classes without a name)."""
    values = trust["mean"] if name is None else trust["per_class"][name]
    by_day = {}
    for when, value in zip(trust["windows"], values):
        by_day.setdefault(when[:10], []).append(np.nan if value is None else value)
    return [_mean(by_day[d]) if d in by_day else None for d in days]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m compile evaluate``."""
    p = argparse.ArgumentParser(
        prog="python -m compile evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--bundle", required=True, help="model bundle folder")
    p.add_argument("--data", required=True, help="lab folder: devices.csv, flow files")
    p.add_argument("--report", required=True, help="folder for report.md, metrics, figures")
    p.add_argument("--format", choices=("auto", "ipfix", "json"), default="auto")
    p.add_argument("--test-dates", help="YYYY-MM-DD:YYYY-MM-DD,... (default: the paper's)")
    p.add_argument("--threshold", choices=METHODS, default="lambda1")
    p.add_argument(
        "--flag-below",
        type=float,
        default=baselines.FLAG_BELOW,
        help="flag a window with trust below this (default: 3 sigma)",
    )
    p.add_argument(
        "--run-below",
        type=float,
        default=baselines.RUN_BELOW,
        help="flag two windows in three with raw trust under 1 and trust below this "
        "(default: 2 sigma; 0 = off)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        m = evaluate(
            args.bundle,
            args.data,
            args.report,
            test_dates=args.test_dates,
            fmt=args.format,
            method=args.threshold,
            flag_below=args.flag_below,
            run_below=args.run_below,
        )
    except (BundleError, dataset.DatasetError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    print(
        f"test macro accuracy: model {m['test_macro_accuracy_model']:.3f}, "
        f"lambda1 {m['test_macro_accuracy_lambda1']:.3f} "
        f"(discard {m['test_discard_rate_lambda1']:.1%}), "
        f"lambda2 {m['test_macro_accuracy_lambda2']:.3f}; "
        f"report: {Path(args.report) / 'report.md'}"
    )
    return 0
