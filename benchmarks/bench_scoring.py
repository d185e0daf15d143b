"""Scoring speed of the compiled forest through cffi against scikit-learn's
predict_proba on the same forest: rows/s in batch and one row's latency.

``python -m benchmarks.bench_scoring [--quick]`` or ``run(quick) -> dict``. The forest is
trained on synthetic rows shaped like the features (28 columns, 26 classes), bounded as
the bundle's default (256 leaves per tree); ``quick`` uses 20 trees of 64 leaves. Both
backends of ``compile train`` are timed: our generator (the default) and TL2cgen (also
row by row through its own ``predict``, as a library without the batch entry point is).
``bench_engines`` is the full comparison, on the testbed's rows.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = (rng.random((n, 28)) ** 3 * 1e5).astype(np.float32)
    X[:, 22:] = rng.integers(0, 2, (n, 6))
    y = (X[:, 0] // 3000 + X[:, 1] // 20000 + 7 * X[:, 23]).astype(int) % 26
    return X, y


def _rate(fn, rows: int, repeat: int) -> float:
    """Best rows/s over ``repeat`` runs of fn()."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return rows / best


def _latency_us(fn, calls: int) -> float:
    """Median microseconds of one call of fn()."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e6)


def run(quick: bool) -> dict:
    """Train, compile and time both engines; the figures as a dict."""
    from sklearn.ensemble import RandomForestClassifier

    from agent.predictor import Predictor

    trees, leaves = (20, 64) if quick else (100, 256)
    X, y = _rows(20_000 if quick else 60_000, 0)
    held_out, _ = _rows(10_000 if quick else 50_000, 1)
    forest = RandomForestClassifier(
        n_estimators=trees, max_features=5, max_leaf_nodes=leaves, random_state=0, n_jobs=1
    ).fit(X, y)

    figures = {"trees": trees, "max_leaves": leaves}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("forestc", "tl2cgen"):
            started = time.perf_counter()
            library = _build(backend, forest, Path(tmp) / backend)
            figures[f"{backend}_build_seconds"] = round(time.perf_counter() - started, 1)
            predict = Predictor(library).predict_proba
            rows_per_s = _rate(lambda p=predict: p(held_out), len(held_out), 3)
            latency = _latency_us(lambda p=predict: p(held_out[:1]), 2000)
            figures[f"{backend}_batch_rows_per_s"] = int(rows_per_s)
            figures[f"{backend}_one_row_us"] = round(latency, 1)
        predictor = Predictor(library)
        predictor._batch = None
        part = held_out[:5000]
        figures["tl2cgen_row_by_row_rows_per_s"] = int(
            _rate(lambda: predictor.predict_proba(part), len(part), 1)
        )

    sk_rate = _rate(lambda: forest.predict_proba(held_out), len(held_out), 3)
    sk_latency = _latency_us(lambda: forest.predict_proba(held_out[:1]), 50 if quick else 200)
    figures["sklearn_batch_rows_per_s"] = int(sk_rate)
    figures["sklearn_one_row_us"] = round(sk_latency, 1)
    return figures


def _build(backend: str, forest, folder: Path) -> Path:
    """The forest's shared library from one backend."""
    import treelite

    from compile import build, forestc

    folder.mkdir()
    if backend == "tl2cgen":
        return build.build(build.generate(forest, folder / "gen"), folder / "model.so")
    source = folder / "model.c"
    source.write_text(
        forestc.generate_c(forestc.from_treelite(treelite.sklearn.import_model(forest)))
    )
    return forestc.build_library(source, folder / "model.so")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))
