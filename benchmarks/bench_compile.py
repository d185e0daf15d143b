"""Compiling the forest: time, peak memory and library size per tree-size bound and backend,
with the test period's macro accuracy at each bound.

The forest is the paper's best setting (100 trees, 5 features per split; ``compile.train``'s
grid picks among a few at training time) fitted on the testbed's training period at demo
scale, for each leaf bound (and, last, without a leaf bound but with a depth cap). Each
backend builds in a child process of its own so its peak resident memory is its own:

- TL2cgen (``compile.build.generate`` + ``build``, quantized, as the bundle ships it): the
  peak of the Python process (Treelite import and C generation) and of its compilers;
- the compact generator (``compile.forestc``: ``from_treelite``, ``generate_c``,
  ``build_library``): the same two peaks.

Accuracy is the evaluation's: macro recall of the model alone, and with lambda1 per true
class the share of accepted predictions that are correct, averaged. lambda1 comes from the
forest's out-of-bag probabilities (one fit) rather than ``compile.train``'s k-fold
out-of-fold ones, to keep the benchmark short.

    python -m benchmarks.bench_compile --child BACKEND FOREST.pkl WORKDIR RESULT.json
is the child's entry point (used by ``run``).
"""

import json
import logging
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TREES, FEATURES = 100, 5
BOUNDS = (64, 128, 256, 512)
DEPTH_CAP = 20
BACKENDS = ("tl2cgen", "forestc")
CHILD_TIMEOUT = 900.0
QUICK = {"trees": 5, "bounds": (16,), "rows": 3_000, "classes": 5}


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def _measured_gcc(workdir: Path) -> tuple[Path, Path]:
    """A ``gcc`` that runs the real one under GNU time, appending its peak KiB to a log.

    A compiler's peak is taken by ``time`` (which waits for the driver, and so includes
    cc1 and the linker) rather than from this process's RUSAGE_CHILDREN, whose figure a
    forked child inherits from the Python process it was copied from.
    """
    gnu_time, gcc = Path("/usr/bin/time"), shutil.which("gcc")
    if not gnu_time.is_file() or gcc is None:
        raise RuntimeError("need gcc and GNU time (/usr/bin/time, Debian package 'time')")
    bindir, peaks = workdir / "bin", workdir / "cc-peaks.txt"
    bindir.mkdir(parents=True, exist_ok=True)
    wrapper = bindir / "gcc"
    wrapper.write_text(f'#!/bin/sh\nexec {gnu_time} -f %M -a -o "{peaks}" {gcc} "$@"\n')
    wrapper.chmod(0o755)
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    return wrapper, peaks


def child(backend: str, forest_path: Path, workdir: Path, result_path: Path) -> None:
    """Generate and build one library; write seconds, size and peaks to ``result_path``."""
    with open(forest_path, "rb") as f:
        forest = pickle.load(f)
    workdir.mkdir(parents=True, exist_ok=True)
    gcc, peaks = _measured_gcc(workdir)

    start = time.perf_counter()
    if backend == "tl2cgen":
        from compile import build

        gendir = build.generate(forest, workdir / "gen", quantize=True)
        generated = time.perf_counter()
        lib = build.build(gendir, workdir / "model.so", nthread=os.cpu_count() or 1)
        source_bytes = sum(p.stat().st_size for p in gendir.glob("*.c"))
    elif backend == "forestc":
        import treelite

        from compile import forestc

        flat = forestc.from_treelite(treelite.sklearn.import_model(forest))
        source = workdir / "forest.c"
        source.write_text(forestc.generate_c(flat))
        generated = time.perf_counter()
        lib = forestc.build_library(source, workdir / "model.so", cc=str(gcc))
        source_bytes = source.stat().st_size
    else:
        raise ValueError(f"unknown backend {backend!r}; use one of {BACKENDS}")
    built = time.perf_counter()

    result_path.write_text(
        json.dumps(
            {
                "generate_s": generated - start,
                "build_s": built - generated,
                "source_bytes": source_bytes,
                "library": str(lib),
                "library_bytes": Path(lib).stat().st_size,
                "python_peak_mb": _peak_mb(resource.RUSAGE_SELF),
                "compiler_peak_mb": max(int(v) for v in peaks.read_text().split()) / 1024.0,
                "compiler_runs": len(peaks.read_text().split()),
            }
        )
    )


def _run_child(backend: str, forest_path: Path, workdir: Path, timeout: float) -> dict:
    """One child build; on timeout the child's whole process group is stopped."""
    result = workdir / f"{backend}.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_compile",
        "--child",
        backend,
        str(forest_path),
        str(workdir / backend),
        str(result),
    ]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"stopped after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {err.strip().splitlines()[-1:]}"}
    return json.loads(result.read_text())


def _data(quick: bool, workdir: Path):
    """(train X, train y, test X, test y, source) as float32 feature rows."""
    if quick:
        rng = np.random.default_rng(0)
        n, k = QUICK["rows"], QUICK["classes"]
        X = rng.gamma(1.5, 300.0, (2 * n, 28)).astype(np.float32)
        y = ((X[:, 0] + 0.5 * X[:, 3] + rng.normal(0, 150, 2 * n)) // 200).astype(int) % k
        return X[:n], y[:n], X[n:], y[n:], "synthetic rows"

    from agent.features import feature_matrix
    from compile import dataset, train
    from compile.testbed import cli as testbed_cli

    data = workdir / "testbed"
    testbed_cli.main(["--out", str(data), "--scale", "0.02", "--seed", "1"])
    train_set = dataset.load(data, "train")
    test_set = dataset.load(data, "test", classes=train_set.classes)
    train_set, test_set, _ = train.drop_rare_classes(
        train_set, test_set, train.Options.min_class_rows
    )
    return (
        feature_matrix(train_set.flows),
        train_set.y,
        feature_matrix(test_set.flows),
        test_set.y,
        "testbed scale 0.02",
    )


def accuracy(forest, test_X, test_y) -> dict:
    """Macro recall alone and with lambda1 (from out-of-bag probabilities), discard rate."""
    from agent.score import apply_thresholds
    from compile import thresholds
    from compile.train import macro_recall

    n = len(forest.classes_)
    proba = forest.predict_proba(test_X)
    out = {"macro accuracy": macro_recall(test_y, proba.argmax(axis=1), n)}
    oob = np.nan_to_num(forest.oob_decision_function_)
    seen = oob.sum(axis=1) > 0
    lambdas = thresholds.as_arrays(thresholds.class_thresholds(oob[seen], forest.oob_y_[seen]))
    label, _, accepted = apply_thresholds(proba, lambdas, "lambda1")
    rows = np.bincount(test_y[accepted], minlength=n)
    hits = np.bincount(test_y[accepted & (label == test_y)], minlength=n)
    per_class = hits[rows > 0] / rows[rows > 0]
    out["macro accuracy lambda1"] = float(per_class.mean()) if len(per_class) else None
    out["discard rate lambda1"] = float(1.0 - accepted.mean())
    return out


def _fit(X, y, trees: int, leaves: int | None, depth: int | None, jobs: int):
    """The forest for one bound, with out-of-bag probabilities (a row every tree trained
    on has none, likely with few trees; such rows are skipped when setting lambda1)."""
    from sklearn.ensemble import RandomForestClassifier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
        forest = RandomForestClassifier(
            n_estimators=trees,
            max_features=FEATURES,
            max_leaf_nodes=leaves,
            max_depth=depth,
            oob_score=True,
            random_state=0,
            n_jobs=jobs,
        ).fit(X, y)
    forest.oob_y_ = y
    return forest


def _check_library(path: str, forest, rows: np.ndarray) -> float:
    """Largest difference of the library's probabilities from scikit-learn's."""
    from agent.predictor import Predictor

    got = Predictor(path).predict_proba(rows)
    return float(np.abs(got - forest.predict_proba(rows)).max())


def run(quick: bool = False) -> dict:
    """Fit, compile with both backends and score at each bound; one row per bound x backend."""
    trees = QUICK["trees"] if quick else TREES
    bounds = [(b, None) for b in (QUICK["bounds"] if quick else BOUNDS)]
    if not quick:
        bounds.append((None, DEPTH_CAP))
    timeout = 120.0 if quick else CHILD_TIMEOUT
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        X, y, test_X, test_y, source = _data(quick, workdir)
        for leaves, depth in bounds:
            started = time.perf_counter()
            forest = _fit(X, y, trees, leaves, depth, 1 if quick else os.cpu_count())
            fit_s = time.perf_counter() - started
            scores = accuracy(forest, test_X, test_y)
            nodes = int(sum(e.tree_.node_count for e in forest.estimators_))
            bound = f"{leaves} leaves" if leaves else f"depth {depth}, leaves unbounded"
            forest_path = workdir / "forest.pkl"
            with open(forest_path, "wb") as f:
                pickle.dump(forest, f)
            for backend in BACKENDS:
                got = _run_child(backend, forest_path, workdir / f"b{len(table)}", timeout)
                row = {"bound": bound, "backend": backend, "nodes": nodes, "fit s": fit_s}
                if "error" in got:
                    row.update({"compile s": None, "note": got["error"]})
                else:
                    row.update(
                        {
                            "compile s": got["generate_s"] + got["build_s"],
                            "generate s": got["generate_s"],
                            "python peak MB": got["python_peak_mb"],
                            "largest compiler MB": got["compiler_peak_mb"],
                            "compiler runs": got["compiler_runs"],
                            "library MB": got["library_bytes"] / 1e6,
                            "C source MB": got["source_bytes"] / 1e6,
                            "max abs diff": _check_library(got["library"], forest, test_X[:2000]),
                            "note": "",
                        }
                    )
                row.update(scores)
                table.append(row)
                log.info("bound=%s backend=%s compile_s=%s", bound, backend, row.get("compile s"))
    keys = list(dict.fromkeys(k for row in table for k in row))
    table = [{k: row.get(k) for k in keys} for row in table]
    return {
        "rows": table,
        "source": source,
        "trees": trees,
        "max_features": FEATURES,
        "train_rows": len(y),
        "test_rows": len(test_y),
        "classes": len(np.unique(y)),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
    else:
        sys.exit("usage: python -m benchmarks.bench_compile --child BACKEND FOREST WORKDIR OUT")
