"""Tests of agent.predictor and compile.build: the TL2cgen library through cffi against
scikit-learn's predict_proba on held-out rows."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from agent.predictor import Predictor
from compile import build


def make_data(n, seed):
    """Rows with counters spanning 0..2**30 (float32-rounded) and 5 classes."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, 28)) ** 4 * 2**30).astype(np.float32)
    X[:, 22:] = rng.integers(0, 2, (n, 6))
    y = (np.log2(X[:, 0] + 1) // 6 + X[:, 23] * 2).astype(int) % 5
    return X, y


@pytest.fixture(scope="module", params=[True, False], ids=["quantize", "float"])
def compiled(request, tmp_path_factory):
    """A small bounded forest and its compiled library (quantized and not)."""
    X, y = make_data(3000, 0)
    forest = RandomForestClassifier(
        n_estimators=8, max_features=5, max_leaf_nodes=64, random_state=0
    ).fit(X, y)
    root = tmp_path_factory.mktemp("lib")
    gendir = build.generate(forest, root / "gen", quantize=request.param)
    lib = build.build(gendir, root / "model.so", nthread=2)
    return forest, lib


def test_compiled_probabilities_equal_scikit_learn(compiled):
    """Held-out rows: max abs difference under 1e-5 and the same argmax."""
    forest, lib = compiled
    X, _ = make_data(2000, 1)
    got = Predictor(lib).predict_proba(X)
    want = forest.predict_proba(X)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) < 1e-5
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


def test_library_reports_its_shape(compiled):
    """The library's feature and class counts are the forest's."""
    forest, lib = compiled
    predictor = Predictor(lib)
    assert predictor.n_features == forest.n_features_in_
    assert predictor.n_classes == len(forest.classes_)


def test_repeated_calls_do_not_accumulate_or_touch_input(compiled):
    """Results are zeroed per call and the caller's rows are left as they were."""
    _, lib = compiled
    predictor = Predictor(lib)
    X, _ = make_data(100, 2)
    before = X.copy()
    first = predictor.predict_proba(X)
    second = predictor.predict_proba(X)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_allclose(first.sum(axis=1), 1.0, atol=1e-9)


def test_row_by_row_path_matches_batch(compiled):
    """A library without the batch entry point scores the same, one row at a time."""
    _, lib = compiled
    X, _ = make_data(50, 3)
    batch = Predictor(lib).predict_proba(X)
    single = Predictor(lib)
    single._batch = None
    np.testing.assert_array_equal(single.predict_proba(X), batch)


def test_wrong_width_is_refused(compiled):
    """Rows with the wrong number of features raise ValueError, not a crash."""
    _, lib = compiled
    with pytest.raises(ValueError, match="28 features"):
        Predictor(lib).predict_proba(np.zeros((3, 27), np.float32))


def test_empty_batch(compiled):
    """Zero rows give a (0, classes) result."""
    _, lib = compiled
    assert Predictor(lib).predict_proba(np.zeros((0, 28), np.float32)).shape == (0, 5)


def test_verify_rejects_a_different_forest(compiled):
    """verify() raises BuildError when the library is not the forest given."""
    forest, lib = compiled
    X, y = make_data(500, 4)
    other = RandomForestClassifier(n_estimators=3, random_state=9).fit(X, (y + 1) % 5)
    assert build.verify(lib, forest, X)["argmax_identical"]
    with pytest.raises(build.BuildError):
        build.verify(lib, other, X)


def test_source_package_holds_sources_and_batch_entry(compiled, tmp_path):
    """srcpkg.zip holds model/ with header, recipe, Makefile, CMakeLists and the batch shim."""
    import zipfile

    forest, _ = compiled
    gendir = build.generate(forest, tmp_path / "gen")
    names = zipfile.ZipFile(build.write_srcpkg(gendir, tmp_path / "srcpkg.zip")).namelist()
    for name in ("header.h", "recipe.json", "Makefile", "CMakeLists.txt", "iotwatch_batch.c"):
        assert f"model/{name}" in names
    assert not any(b"+= 0;" in p.read_bytes() for p in gendir.glob("*.c"))


def test_missing_library_is_a_bundle_error(tmp_path):
    """A library that cannot be loaded raises BundleError naming the path."""
    from agent.errors import BundleError

    bad = tmp_path / "model.so"
    bad.write_bytes(b"not an ELF file")
    with pytest.raises(BundleError, match="model.so"):
        Predictor(bad)
