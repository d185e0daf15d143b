"""The compact forest generator against scikit-learn's own probabilities."""

import json

import cffi
import numpy as np
import pytest
import treelite
from sklearn.ensemble import RandomForestClassifier

from compile import forestc


@pytest.fixture(scope="module")
def forest(tmp_path_factory):
    """A small bounded forest, its flattened form and its compiled library."""
    rng = np.random.default_rng(7)
    X = (rng.random((3000, 9)) * 1000).astype(np.float32)
    X[:, 3] = np.round(X[:, 3] / 100)  # a feature with ties, as counters have
    y = ((X[:, 0] + 0.5 * X[:, 1] + 300 * rng.random(3000)) // 150).astype(int) % 6
    clf = RandomForestClassifier(
        n_estimators=13, max_features=3, max_leaf_nodes=40, random_state=0
    ).fit(X, y)
    flat = forestc.from_treelite(treelite.sklearn.import_model(clf))
    folder = tmp_path_factory.mktemp("forestc")
    (folder / "model.c").write_text(forestc.generate_c(flat))
    lib_path = forestc.build_library(folder / "model.c", folder / "model.so")
    ffi = cffi.FFI()
    ffi.cdef(
        "int32_t iotwatch_abi_version(void); int32_t get_num_feature(void);"
        "void get_num_class(int32_t *); int32_t iotwatch_num_tree(void);"
        "void iotwatch_predict_batch(const float *, int64_t, double *);"
    )
    return clf, flat, ffi, ffi.dlopen(str(lib_path))


def _predict(ffi, lib, rows):
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    n_class = ffi.new("int32_t[1]")
    lib.get_num_class(n_class)
    out = np.full((len(rows), n_class[0]), np.nan)
    lib.iotwatch_predict_batch(
        ffi.from_buffer("float[]", rows), len(rows), ffi.from_buffer("double[]", out)
    )
    return out


def test_library_reports_its_shape(forest):
    """The library states its ABI version, features, classes and trees."""
    clf, _, ffi, lib = forest
    n_class = ffi.new("int32_t[1]")
    lib.get_num_class(n_class)
    assert lib.iotwatch_abi_version() == forestc.ABI_VERSION
    assert lib.get_num_feature() == clf.n_features_in_
    assert n_class[0] == len(clf.classes_)
    assert lib.iotwatch_num_tree() == len(clf.estimators_)


@pytest.mark.parametrize("n_rows", [1, 7, 8, 9, 64, 65, 1000])
def test_probabilities_equal_scikit_learn(forest, n_rows):
    """Every row count (lone rows, partial groups and blocks) matches predict_proba."""
    clf, _, ffi, lib = forest
    rows = (np.random.default_rng(n_rows).random((n_rows, 9)) * 1100 - 50).astype(np.float32)
    rows[:, 3] = np.round(rows[:, 3] / 100)
    got = _predict(ffi, lib, rows)
    want = clf.predict_proba(rows)
    assert np.abs(got - want).max() < 1e-5
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


def test_values_on_thresholds_go_left(forest):
    """A feature exactly equal to a split threshold takes the left branch, as in sklearn."""
    clf, flat, ffi, lib = forest
    rows = np.tile(np.float32(500.0), (len(flat.thresholds[0]), 9))
    rows[:, 0] = flat.thresholds[0].astype(np.float32)
    assert np.abs(_predict(ffi, lib, rows) - clf.predict_proba(rows)).max() < 1e-5


def test_numpy_reference_matches_layout(forest):
    """The numpy walk over the flattened arrays (float32 leaves) gives predict_proba."""
    clf, flat, _, _ = forest
    rows = (np.random.default_rng(1).random((200, 9)) * 1000).astype(np.float32)
    assert np.abs(forestc.predict_reference(flat, rows) - clf.predict_proba(rows)).max() < 1e-7


def test_rejects_models_it_cannot_represent(forest):
    """A forest that is not an averaged classifier with <= tests is refused by name."""
    clf, _, _, _ = forest
    model = json.loads(treelite.sklearn.import_model(clf).dump_as_json(pretty_print=False))
    model["trees"][0]["nodes"][0]["comparison_op"] = "<"
    with pytest.raises(ValueError, match="unsupported comparison"):
        forestc.flatten(model)
    model["task_type"] = "kBinaryClf"
    with pytest.raises(ValueError, match="averaged multi-class"):
        forestc.flatten(model)


def test_build_failure_names_the_compiler_error(tmp_path):
    """A compiler that fails is reported with its own message."""
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    with pytest.raises(RuntimeError, match="failed on"):
        forestc.build_library(bad, tmp_path / "bad.so")


def test_agent_predictor_loads_the_library(forest, tmp_path):
    """The agent's predictor scores through this library as through a TL2cgen one."""
    from agent.predictor import Predictor

    clf, flat, _, _ = forest
    (tmp_path / "model.c").write_text(forestc.generate_c(flat))
    predictor = Predictor(forestc.build_library(tmp_path / "model.c", tmp_path / "model.so"))
    rows = (np.random.default_rng(3).random((100, 9)) * 1000).astype(np.float32)
    assert predictor.n_classes == len(clf.classes_)
    assert np.abs(predictor.predict_proba(rows) - clf.predict_proba(rows)).max() < 1e-5
