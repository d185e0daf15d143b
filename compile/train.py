"""``python -m compile train --data DIR --out BUNDLE``: the paper's training procedure
(section V-A) and the model bundle every agent runs.

1. features of the training period's remote, labelled flows (``agent.features``);
2. tuning of trees x features per split by stratified k-fold cross-validation, scoring
   macro recall (the mean of the confusion matrix's diagonal);
3. out-of-fold confidences of the best setting -> lambda1/lambda2 per class, Table III,
   Fig. 4's mean confidences, and trust baselines per window;
4. the final forest on the whole training period, bounded in leaves so TL2cgen's library
   builds in minutes (and, with ``--max-samples``, each tree grown from a smaller
   bootstrap); the bounds' accuracy cost against the unbounded forest (the paper's: all
   rows, no leaf bound) on the test period of the same split;
5. C generation, host build and verification (``compile.build``), then the bundle.

The defaults are sized for the demo (3 folds, tuning on a 20,000-row sample, a small
grid). The paper's settings: ``--folds 10 --tune-rows 0 --grid
50x3,50x5,50x7,100x3,100x5,100x7,150x3,150x5,150x7`` (its best: 100 trees, 5 features).
"""

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.bundle import FORMAT_VERSION, MANIFEST, host_triple, lib_path, sha256_file
from agent.features import FEATURE_NAMES, feature_matrix
from agent.score import METHODS, apply_thresholds
from compile import baselines, build, dataset, forestc, thresholds

log = logging.getLogger(__name__)

DEFAULTS = {
    "grid": "50x5,100x3,100x5",
    "folds": 3,
    "tune_rows": 20_000,
    "max_leaves": 256,
    "max_samples": 0,
    "seed": 0,
    "window": 86_400.0,
}
VERIFY_ROWS = 5_000


def parse_grid(text: str) -> list[tuple[int, int]]:
    """``100x5,50x3`` -> [(trees, features per split), ...]."""
    grid = []
    for part in text.split(","):
        try:
            trees, features = (int(v) for v in part.lower().split("x"))
        except ValueError as exc:
            raise ValueError(f"bad grid entry {part!r}: use TREESxFEATURES") from exc
        if trees < 1 or not 1 <= features <= len(FEATURE_NAMES):
            raise ValueError(f"bad grid entry {part!r}: out of range")
        grid.append((trees, features))
    return grid


def make_forest(
    trees: int, features: int, max_leaves: int | None, seed: int, jobs: int, draw=None
):
    """The Random Forest of the paper, optionally bounded to ``max_leaves`` per tree and
    to bootstraps of a share ``draw`` of the rows (see ``draw_share``)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=trees,
        max_features=features,
        max_leaf_nodes=max_leaves or None,
        max_samples=draw,
        random_state=seed,
        n_jobs=jobs,
    )


def draw_share(max_samples: int, rows: int, folds: int = 1) -> float | None:
    """The share of ``rows`` (of the training part of ``folds`` folds) that each tree's
    bootstrap draws so it holds about ``max_samples`` rows; None draws as many as there
    are (the default). Growing a tree costs time in proportion to its rows, so a cap
    bounds training time on a large capture, at a cost to rare classes (README,
    Limitations)."""
    fitted = rows * (folds - 1) / folds if folds > 1 else rows
    if not max_samples or max_samples >= fitted:
        return None
    return max_samples / fitted


def _folds(y: np.ndarray, folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(y).min())
    k = min(folds, smallest)
    if k < 2:
        raise dataset.DatasetError("a class has fewer than 2 training records")
    if k < folds:
        log.warning("folds reduced from %d to %d: smallest class has %d rows", folds, k, smallest)
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def subsample(y: np.ndarray, rows: int, seed: int, floor: int = 50) -> np.ndarray:
    """Sorted indices of about ``rows`` rows, stratified, keeping at least ``floor`` rows
    of each class (or all it has) so rare classes stay in every fold; all rows if 0."""
    if not rows or rows >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    counts = np.bincount(y)
    share = rows / len(y)
    keep = []
    for k in np.flatnonzero(counts):
        members = np.flatnonzero(y == k)
        quota = min(len(members), max(int(np.ceil(share * len(members))), floor))
        keep.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(keep))


def tune(X, y, grid, *, folds, tune_rows, max_leaves, max_samples, seed, jobs) -> list[dict]:
    """Macro recall of each grid setting by stratified k-fold CV, best first."""
    from sklearn.model_selection import cross_val_score

    rows = subsample(y, tune_rows, seed)
    cv = _folds(y[rows], folds, seed)
    draw = draw_share(max_samples, len(rows), cv.n_splits)
    results = []
    for trees, features in grid:
        started = time.monotonic()
        forest = make_forest(trees, features, max_leaves, seed, jobs, draw)
        scores = cross_val_score(forest, X[rows], y[rows], cv=cv, scoring="balanced_accuracy")
        results.append(
            {
                "trees": trees,
                "max_features": features,
                "cv_macro_accuracy": float(scores.mean()),
                "cv_std": float(scores.std()),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
        log.info("cv trees=%d features=%d macro=%.4f", trees, features, scores.mean())
    return sorted(results, key=lambda r: (-r["cv_macro_accuracy"], r["trees"]))


def out_of_fold(X, y, forest, *, folds, seed) -> np.ndarray:
    """Out-of-fold class probabilities of every training row."""
    from sklearn.model_selection import cross_val_predict

    return cross_val_predict(forest, X, y, cv=_folds(y, folds, seed), method="predict_proba")


def accept_rates(proba: np.ndarray, y: np.ndarray, arrays, method: str) -> np.ndarray:
    """Per class: accepted predictions of it / rows of it, for probabilities of the
    training rows (out-of-bag: rows no tree left out, all zeros, are not counted)."""
    n_classes = proba.shape[1]
    seen = proba.any(axis=1)
    label, _, accepted = apply_thresholds(proba[seen], arrays, method)
    hits = np.bincount(label[accepted], minlength=n_classes)
    total = np.bincount(y[seen], minlength=n_classes)
    return np.where(total > 0, hits / np.maximum(total, 1), 0.0)


def unbounded_proba(X, y, test_X, trees, features, seed, jobs, chunk=10):
    """Test probabilities of an unbounded forest of ``trees`` trees, grown ``chunk`` trees
    at a time and averaged, so memory holds only a chunk of (large) trees at once."""
    total = np.zeros((len(test_X), len(np.unique(y))))
    leaves = []
    for i, first in enumerate(range(0, trees, chunk)):
        n = min(chunk, trees - first)
        part = make_forest(n, features, None, seed + 7919 * i, jobs).fit(X, y)
        total += part.predict_proba(test_X) * n
        leaves += [int(t.tree_.n_leaves) for t in part.estimators_]
        del part
    stats = {"max": max(leaves), "mean": float(np.mean(leaves)), "total": int(sum(leaves))}
    return total / trees, stats


def macro_recall(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean over classes present in y_true of the fraction predicted correctly."""
    present = np.unique(y_true)
    recall = [np.mean(y_pred[y_true == k] == k) for k in present if k < n_classes]
    return float(np.mean(recall)) if recall else float("nan")


def _versions() -> dict:
    import numpy
    import sklearn
    import tl2cgen
    import treelite

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
    }


def _leaves(forest) -> dict:
    counts = [int(t.tree_.n_leaves) for t in forest.estimators_]
    return {"max": max(counts), "mean": float(np.mean(counts)), "total": int(sum(counts))}


@dataclass
class Options:
    """Training settings; the CLI's flags, with the demo-sized defaults."""

    grid: str = DEFAULTS["grid"]
    folds: int = DEFAULTS["folds"]
    tune_rows: int = DEFAULTS["tune_rows"]
    max_leaves: int = DEFAULTS["max_leaves"]
    max_samples: int = DEFAULTS["max_samples"]
    seed: int = DEFAULTS["seed"]
    window: float = DEFAULTS["window"]
    jobs: int = 0
    min_class_rows: int = 10
    oof_rows: int = 0
    compare_rows: int = 0
    no_unbounded: bool = False
    no_quantize: bool = False
    backend: str = "forestc"
    train_dates: str | None = None
    test_dates: str | None = None


def train(args: argparse.Namespace) -> dict:
    """Read the data folder, train and write the bundle folder; returns the manifest."""
    train_ranges = dataset.parse_ranges(args.train_dates) if args.train_dates else None
    test_ranges = dataset.parse_ranges(args.test_dates) if args.test_dates else None
    data = dataset.load(args.data, "train", ranges=train_ranges, fmt=args.format)
    try:
        test = dataset.load(
            args.data, "test", ranges=test_ranges, classes=data.classes, fmt=args.format
        )
    except dataset.DatasetError as exc:
        log.warning("no test period for the bound's cost: %s", exc)
        test = None
    options = Options(**{k: getattr(args, k) for k in Options.__dataclass_fields__})
    return fit_bundle(data, test, Path(args.out), options)


def drop_rare_classes(data, test, min_rows: int):
    """Leave out classes with fewer than ``min_rows`` training records (too few to
    cross-validate or to set a threshold); returns (data, test, dropped names)."""
    counts = np.bincount(data.y, minlength=len(data.classes))
    keep = np.flatnonzero(counts >= max(min_rows, 2))
    dropped = [data.classes[k] for k in np.flatnonzero(counts < max(min_rows, 2))]
    if not dropped:
        return data, test, []
    if not len(keep):
        raise dataset.DatasetError(f"no class has {min_rows} training records")
    log.warning("classes left out (fewer than %d training records): %s", min_rows, dropped)
    remap = np.full(len(data.classes), -1, dtype=np.int32)
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    classes = [data.classes[k] for k in keep]

    def narrow(part):
        y = remap[part.y]
        return dataset.Dataset(part.flows[y >= 0], y[y >= 0], classes, part.digest)

    return narrow(data), None if test is None else narrow(test), dropped


def fit_bundle(data, test, out: Path, args: Options) -> dict:
    """Tune, train, threshold, compile and write the bundle ``out`` from data sets."""
    started = time.monotonic()
    if args.max_samples < 0:
        raise ValueError(f"--max-samples must be 0 (all rows) or more, not {args.max_samples}")
    data, test, dropped = drop_rare_classes(data, test, args.min_class_rows)
    X, y, classes = feature_matrix(data.flows), data.y, data.classes
    jobs = args.jobs or os.cpu_count() or 1

    cv_results = tune(
        X,
        y,
        parse_grid(args.grid),
        folds=args.folds,
        tune_rows=args.tune_rows,
        max_leaves=args.max_leaves,
        max_samples=args.max_samples,
        seed=args.seed,
        jobs=jobs,
    )
    best = cv_results[0]
    trees, features = best["trees"], best["max_features"]
    seconds = {"tune": time.monotonic() - started}

    sample = subsample(y, args.oof_rows, args.seed)
    draw = draw_share(args.max_samples, len(sample), args.folds)
    oof = out_of_fold(
        X[sample],
        y[sample],
        make_forest(trees, features, args.max_leaves, args.seed, jobs, draw),
        folds=args.folds,
        seed=args.seed,
    )
    lambdas = thresholds.class_thresholds(oof, y[sample])
    arrays = thresholds.as_arrays(lambdas)
    seconds["out_of_fold"] = time.monotonic() - started - sum(seconds.values())

    draw = draw_share(args.max_samples, len(y))
    forest = make_forest(trees, features, args.max_leaves, args.seed, jobs, draw)
    forest.set_params(oob_score=True)
    with warnings.catch_warnings():
        # Rows no tree left out (only with tiny forests) are skipped in accept_rates.
        warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
        forest.fit(X, y)
    out_of_bag = forest.oob_decision_function_
    del forest.oob_decision_function_  # (rows x classes) doubles: no need to keep them
    seconds["fit"] = time.monotonic() - started - sum(seconds.values())

    trust_base = {}
    for method in METHODS:
        label, _, accepted = apply_thresholds(oof, arrays, method)
        trust_base[method] = baselines.trust_baselines(
            data.flows["flowStartMilliseconds"][sample],
            y[sample],
            label,
            accepted,
            classes,
            args.window,
            time_ms_all=data.flows["flowStartMilliseconds"],
            y_all=y,
            accept_rate_other=accept_rates(out_of_bag, y, arrays, method),
        )
    del out_of_bag
    test_X = bound = None
    if test is not None:
        test_X, test_y = feature_matrix(test.flows), test.y
        bound = {
            "test_macro_accuracy_bounded": macro_recall(
                test_y, forest.predict(test_X), len(classes)
            )
        }
        if not args.no_unbounded:
            rows = subsample(y, args.compare_rows, args.seed)
            proba, leaves = unbounded_proba(
                X[rows], y[rows], test_X, trees, features, args.seed, jobs
            )
            bound["compare_rows"] = len(rows)
            if len(rows) < len(y):
                draw = draw_share(args.max_samples, len(rows))
                same = make_forest(trees, features, args.max_leaves, args.seed, jobs, draw)
                same.fit(X[rows], y[rows])
                bound["test_macro_accuracy_bounded_same_rows"] = macro_recall(
                    test_y, same.predict(test_X), len(classes)
                )
                del same
            bound["test_macro_accuracy_unbounded"] = macro_recall(
                test_y, proba.argmax(axis=1), len(classes)
            )
            bound["unbounded_leaves"] = leaves
            seconds["unbounded"] = time.monotonic() - started - sum(seconds.values())
    bound = {
        **(bound or {}),
        "max_leaves": args.max_leaves,
        "max_samples": args.max_samples,
        "bounded_leaves": _leaves(forest),
    }
    trained = time.monotonic()
    log.info("phases seconds=%s", {k: round(v, 1) for k, v in seconds.items()})

    staging = Path(
        tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent if out.parent.exists() else None)
    )
    try:
        manifest = _compile(
            forest,
            staging,
            X if test_X is None else test_X,
            args,
            classes=classes,
            lambdas=lambdas,
            trust_base=trust_base,
        )
        manifest["provenance"].update(
            {
                "data_digest": data.digest,
                "training_rows": len(y),
                "classes_left_out": dropped,
                "rows_per_class": np.bincount(y, minlength=len(classes)).tolist(),
                "parameters": {
                    "trees": trees,
                    "max_features": features,
                    "max_leaves": args.max_leaves,
                    "max_samples": args.max_samples,
                    "seed": args.seed,
                    "folds": args.folds,
                    "tune_rows": args.tune_rows,
                    "grid": args.grid,
                    "train_dates": args.train_dates,
                    "test_dates": args.test_dates,
                },
                "cv_macro_accuracy": best["cv_macro_accuracy"],
                "cv_results": cv_results,
                "bound_cost": bound,
                "train_seconds": round(trained - started, 1),
                "phase_seconds": {k: round(v, 1) for k, v in seconds.items()},
            }
        )
        manifest["training"] = {
            "out_of_fold_rows": len(sample),
            "table3": thresholds.table3(oof, y[sample], lambdas),
            "confidence_by_class": thresholds.confidence_by_class(oof, y[sample]),
            "oof_macro_accuracy": macro_recall(y[sample], oof.argmax(axis=1), len(classes)),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info("bundle written out=%s seconds=%.0f", out, time.monotonic() - started)
    return manifest


def _compile(forest, staging: Path, held_out, args, *, classes, lambdas, trust_base) -> dict:
    """Generate, build and verify the library into the staging folder; the manifest."""
    started = time.monotonic()
    library = lib_path(host_triple())
    if args.backend == "forestc":
        gendir = staging / "build" / build.LIB_NAME
        gendir.mkdir(parents=True)
        source = gendir / f"{build.LIB_NAME}.c"
        source.write_text(forestc.generate_c(forestc.from_treelite(_treelite_model(forest))))
        build.write_srcpkg(gendir, staging / "srcpkg.zip")
        generated = time.monotonic()
        forestc.build_library(source, staging / library)
    else:
        gendir = build.generate(forest, staging / "build", quantize=not args.no_quantize)
        build.write_srcpkg(gendir, staging / "srcpkg.zip")
        generated = time.monotonic()
        build.build(gendir, staging / library, nthread=args.jobs or None)
    built = time.monotonic()
    rows = held_out[subsample(np.zeros(len(held_out), int), VERIFY_ROWS, args.seed)]
    verified = build.verify(staging / library, forest, rows)
    shutil.rmtree(staging / "build")

    files = {
        str(p.relative_to(staging)): sha256_file(p)
        for p in sorted(staging.rglob("*"))
        if p.is_file()
    }
    return {
        "format_version": FORMAT_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "classes": classes,
        "thresholds": lambdas,
        "baselines": trust_base,
        "window_seconds": float(args.window),
        "files": files,
        "provenance": {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
            "backend": args.backend,
            "quantize": not args.no_quantize and args.backend == "tl2cgen",
            "compile": {
                "generate_seconds": round(generated - started, 1),
                "build_seconds": round(built - generated, 1),
                "library_bytes": (staging / library).stat().st_size,
                "verify": verified,
            },
        },
    }


def _treelite_model(forest):
    import treelite

    build.quiet_tl2cgen()
    return treelite.sklearn.import_model(forest)


def parser() -> argparse.ArgumentParser:
    """The ``train`` command's options."""
    p = argparse.ArgumentParser(prog="python -m compile train", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="lab folder: devices.csv and flow files")
    p.add_argument("--out", required=True, help="bundle folder to write (replaced)")
    p.add_argument("--format", choices=("auto", "ipfix", "json"), default="auto")
    p.add_argument("--grid", default=DEFAULTS["grid"], help="TREESxFEATURES,... to tune")
    p.add_argument("--folds", type=int, default=DEFAULTS["folds"], help="CV folds (paper: 10)")
    p.add_argument(
        "--tune-rows",
        type=int,
        default=DEFAULTS["tune_rows"],
        help="stratified sample for tuning, 0 = all rows",
    )
    p.add_argument(
        "--max-leaves",
        type=int,
        default=DEFAULTS["max_leaves"],
        help="leaves per tree, 0 = unbounded",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        default=DEFAULTS["max_samples"],
        help="rows each tree's bootstrap draws at most, 0 = as many as training rows",
    )
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--window", type=float, default=DEFAULTS["window"], help="trust window, s")
    p.add_argument("--train-dates", help="YYYY-MM-DD:YYYY-MM-DD,... (default: the paper's)")
    p.add_argument("--test-dates", help="YYYY-MM-DD:YYYY-MM-DD,... (default: the paper's)")
    p.add_argument(
        "--min-class-rows",
        type=int,
        default=10,
        help="leave out device types with fewer training records",
    )
    p.add_argument(
        "--oof-rows",
        type=int,
        default=0,
        help="stratified sample for out-of-fold confidences (thresholds), 0 = all rows",
    )
    p.add_argument(
        "--compare-rows",
        type=int,
        default=0,
        help="stratified sample for the bounded vs unbounded comparison, 0 = all rows",
    )
    p.add_argument("--jobs", type=int, default=0, help="CPU threads, 0 = all")
    p.add_argument(
        "--no-unbounded",
        action="store_true",
        help="skip training the unbounded forest for the bound's cost",
    )
    p.add_argument("--no-quantize", action="store_true", help="float thresholds in C")
    p.add_argument(
        "--backend",
        choices=("forestc", "tl2cgen"),
        default="forestc",
        help="C generator: our compact forest-as-data (default) or TL2cgen's code",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m compile train``."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        manifest = train(args)
    except (dataset.DatasetError, build.BuildError, ValueError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 1
    prov = manifest["provenance"]
    print(
        f"bundle {args.out}: {len(manifest['classes'])} classes, "
        f"CV macro accuracy {prov['cv_macro_accuracy']:.3f}, "
        f"parameters {prov['parameters']['trees']}x{prov['parameters']['max_features']}"
    )
    return 0
