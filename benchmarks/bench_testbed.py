"""The testbed's cost and difficulty: how long a capture takes to write, and how well the
paper's forest does on it (macro recall without thresholds and with lambda1).

    python -m benchmarks.bench_testbed [--full]

Quick: writes the demo scale (0.02) and calibrates at scale 0.05. Full: writes scale 1
(the paper's volume) and calibrates at scale 0.25. The calibration trains a Random Forest
(100 trees, 5 features per split) on the remote flows of January and 1-15 March and
tests on 16 March-April, as in section V; lambda1 per class is the mean confidence of the
correct out-of-fold (3-fold) training predictions of that class.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.features import feature_matrix, remote_mask
from compile.testbed import cli
from compile.testbed.calendar import capture_days
from compile.testbed.generate import Lab

DEMO_SCALE = 0.02


def write_time(scale: float) -> dict:
    """Write a whole testbed into a temporary folder; time and volume."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        cpu = time.process_time()
        summary = cli.run(Path(tmp) / "tb", scale, seed=1, n_homes=0, with_json=False)
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu
        size = sum(p.stat().st_size for p in (Path(tmp) / "tb").rglob("*") if p.is_file())
    return {
        "scale": scale,
        "records": summary["records"],
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "records_per_s": round(summary["records"] / wall),
        "bytes": size,
    }


def calibrate(scale: float, seed: int = 1) -> dict:
    """Macro recall of the paper's forest on the testbed, without and with lambda1."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_predict

    lab = Lab(scale, seed)
    xs, ys, test = [], [], []
    for day in capture_days():
        part = lab.day(day)
        m = remote_mask(part.flows)
        xs.append(feature_matrix(part.flows[m]))
        ys.append(part.device[m])
        test.append(np.full(m.sum(), day.period == "test"))
    x, y, test = np.concatenate(xs), np.concatenate(ys), np.concatenate(test)

    forest = RandomForestClassifier(100, max_features=5, n_jobs=2, random_state=0)
    oof = cross_val_predict(forest, x[~test], y[~test], cv=3, method="predict_proba")
    forest.fit(x[~test], y[~test])
    classes = forest.classes_
    oof_pred, oof_conf = classes[oof.argmax(1)], oof.max(1)
    right = oof_pred == y[~test]
    lambda1 = {
        c: oof_conf[right & (oof_pred == c)].mean() if (right & (oof_pred == c)).any() else 1.0
        for c in classes
    }

    proba = forest.predict_proba(x[test])
    pred, conf, truth = classes[proba.argmax(1)], proba.max(1), y[test]
    accepted = conf >= np.array([lambda1[c] for c in pred])

    def macro(mask):
        return float(
            np.mean(
                [
                    (pred[(truth == c) & mask] == c).mean()
                    for c in classes
                    if ((truth == c) & mask).any()
                ]
            )
        )

    return {
        "scale": scale,
        "train_flows": int((~test).sum()),
        "test_flows": int(test.sum()),
        "macro_recall": round(macro(np.ones_like(accepted)), 3),
        "macro_recall_lambda1": round(macro(accepted), 3),
        "accepted": round(float(accepted.mean()), 3),
    }


def run(quick: bool) -> dict:
    """Figures of the testbed: writing time and calibration."""
    return {
        "write": write_time(DEMO_SCALE if quick else 1.0),
        "calibration": calibrate(0.05 if quick else 0.25),
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=1))
