"""Scoring engines side by side on one forest: batch rows/s and one row's latency.

Every engine runs on one thread (scikit-learn ``n_jobs=1``, ONNX Runtime and TL2cgen's
Predictor with one thread, BLAS/OpenMP pools capped) in one process, one after another,
so the ratios hold on a noisy machine. The floor is one pass over the nodes a row visits,
at the measured cost of a dependent compare-and-branch step (``_FLOOR_C``).
"""

import ctypes
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: A chain of dependent "load node, compare, pick child" steps through an L1-resident
#: array: the cost of one node visit when nothing else gets in the way.
_FLOOR_C = r"""
#include <stdint.h>
typedef struct { uint16_t f; uint16_t k; uint32_t c; } node_t;
uint32_t chain(const node_t *nodes, const uint16_t *bins, long steps) {
    uint32_t i = 0;
    for (long s = 0; s < steps; s++) {
        node_t n = nodes[i];
        i = n.c + (bins[n.f] > n.k);
    }
    return i;
}
"""


def _forest_and_rows(quick: bool, workdir: Path):
    """A forest of the default shape and held-out float32 feature rows to score."""
    from sklearn.ensemble import RandomForestClassifier

    from compile.train import DEFAULTS

    rng = np.random.default_rng(0)
    if quick:
        n, trees, leaves, classes = 3_000, 10, 32, 6
    else:
        n, trees, leaves, classes = 60_000, 100, DEFAULTS["max_leaves"], 26
    X, y = _testbed_rows(workdir, quick)
    if X is None:
        X = (rng.gamma(1.5, 300.0, (n, 28))).astype(np.float32)
        y = ((X[:, 0] + 0.3 * X[:, 5] + rng.normal(0, 200, n)) // 120).astype(int) % classes
    forest = RandomForestClassifier(
        n_estimators=trees, max_features=5, max_leaf_nodes=leaves, random_state=0, n_jobs=2
    ).fit(X, y)
    forest.n_jobs = 1
    rows = X[rng.permutation(len(X))[: 2_000 if quick else 20_000]]
    return forest, np.ascontiguousarray(rows, dtype=np.float32)


def _testbed_rows(workdir: Path, quick: bool):
    """Remote-flow features of the testbed at demo scale (None in quick mode)."""
    if quick:
        return None, None
    from agent.features import feature_matrix
    from compile import dataset
    from compile.testbed import cli as testbed_cli

    data = workdir / "testbed"
    testbed_cli.main(["--out", str(data), "--scale", "0.02", "--seed", "1"])
    train = dataset.load(data, "train")
    return feature_matrix(train.flows), train.y


def _batch_rate(fn, rows: np.ndarray, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(rows)
        best = min(best, time.perf_counter() - start)
    return len(rows) / best


def _latency_us(fn, rows: np.ndarray, calls: int) -> tuple[float, float]:
    samples = np.empty(calls)
    for i in range(calls):
        row = rows[i % len(rows)][None, :]
        start = time.perf_counter()
        fn(row)
        samples[i] = time.perf_counter() - start
    return float(np.percentile(samples, 50) * 1e6), float(np.percentile(samples, 99) * 1e6)


def _floor_ns_per_node(workdir: Path) -> float:
    """Measured cost of one dependent compare-and-branch node step, in ns."""
    src, lib = workdir / "floor.c", workdir / "floor.so"
    src.write_text(_FLOOR_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", lib, src], check=True)
    chain = ctypes.CDLL(str(lib)).chain
    chain.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]

    rng = np.random.default_rng(1)
    n = 256  # 2 KiB of nodes: in L1
    nodes = np.zeros(n, dtype=[("f", "u2"), ("k", "u2"), ("c", "u4")])
    nodes["f"] = rng.integers(0, 28, n)
    nodes["k"] = rng.integers(0, 200, n)
    nodes["c"] = rng.integers(0, n - 1, n)
    bins = rng.integers(0, 200, 29).astype(np.uint16)
    steps = 20_000_000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        chain(nodes.ctypes.data, bins.ctypes.data, steps)
        best = min(best, time.perf_counter() - start)
    return best / steps * 1e9


def _engines(forest, rows, workdir: Path, quick: bool) -> dict:
    """name -> (batch function, single-row function)."""
    import treelite

    from agent.predictor import Predictor
    from compile import build, forestc

    engines = {}
    flat = forestc.from_treelite(treelite.sklearn.import_model(forest))
    (workdir / "forestc.c").write_text(forestc.generate_c(flat))
    ours = Predictor(forestc.build_library(workdir / "forestc.c", workdir / "forestc.so"))
    engines["iotwatch forestc via cffi (ours)"] = ours.predict_proba

    for quantize in (False, True):
        gen = build.generate(forest, workdir / f"tl2cgen-q{int(quantize)}", quantize=quantize)
        lib = build.build(gen, workdir / f"tl2cgen-q{int(quantize)}.so", nthread=2)
        name = "TL2cgen C via cffi" + (", quantize=1" if quantize else "")
        engines[name] = Predictor(lib).predict_proba
        if quantize:
            import tl2cgen

            tl_pred = tl2cgen.Predictor(str(lib), nthread=1)
            engines["TL2cgen Predictor"] = lambda X, p=tl_pred: p.predict(tl2cgen.DMatrix(X))[
                :, 0, :
            ]

    model = treelite.sklearn.import_model(forest)
    engines["treelite.gtil"] = lambda X: treelite.gtil.predict(model, X, nthread=1)[:, 0, :]
    engines["scikit-learn predict_proba"] = forest.predict_proba
    engines["ONNX Runtime (skl2onnx)"] = _onnx(forest, rows.shape[1])
    return engines


def _onnx(forest, n_features: int):
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        forest,
        initial_types=[("X", FloatTensorType([None, n_features]))],
        options={id(forest): {"zipmap": False}},
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(onx.SerializeToString(), opts)
    return lambda X: session.run(["probabilities"], {"X": X})[0]


def run(quick: bool = False) -> dict:
    """Measure every engine; return rows for the table plus the floor."""
    from threadpoolctl import threadpool_limits

    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1):
        workdir = Path(tmp)
        forest, rows = _forest_and_rows(quick, workdir)
        visited = float(forest.decision_path(rows[:2_000])[0].sum(axis=1).mean())
        visited -= len(forest.estimators_)  # leaves are not compares
        floor_ns = _floor_ns_per_node(workdir)
        floor_us = visited * floor_ns / 1e3

        reference = forest.predict_proba(rows)
        table = []
        for name, fn in _engines(forest, rows, workdir, quick).items():
            diff = float(np.abs(np.asarray(fn(rows[:500])) - reference[:500]).max())
            rate = _batch_rate(fn, rows)
            p50, p99 = _latency_us(fn, rows, 300 if quick else 3_000)
            table.append(
                {
                    "engine": name,
                    "batch rows/s": rate,
                    "one row p50 us": p50,
                    "one row p99 us": p99,
                    "p50 / floor": p50 / floor_us,
                    "max abs diff": diff,
                }
            )
            log.info("engine=%s rows_per_s=%.0f p50_us=%.1f", name, rate, p50)

    return {
        "rows": table,
        "trees": len(forest.estimators_),
        "classes": len(forest.classes_),
        "leaves_per_tree": int(max(e.tree_.n_leaves for e in forest.estimators_)),
        "nodes_visited_per_row": visited,
        "floor_ns_per_node": floor_ns,
        "floor_us_per_row": floor_us,
    }
