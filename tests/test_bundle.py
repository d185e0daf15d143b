"""Tests of agent.bundle and agent.score: verification before loading, and thresholds."""

import json
import shutil

import numpy as np
import pytest
from model_fixtures import datasets, tiny_bundle  # noqa: F401

from agent.bundle import host_triple, lib_path, load_bundle, sha256_file
from agent.errors import BundleError
from agent.features import FEATURE_NAMES, feature_matrix
from agent.score import apply_thresholds, score


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):  # noqa: F811
    """A private copy of the tiny bundle, free to damage."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def edit_manifest(path, change):
    """Rewrite manifest.json through ``change(manifest)``."""
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_load_gives_classes_features_thresholds_baselines(tiny_bundle):  # noqa: F811
    """A good bundle loads with every field the agent reads."""
    bundle = load_bundle(tiny_bundle)
    n = len(bundle.classes)
    assert bundle.classes == ["camera", "plug", "speaker", "tv"]
    assert bundle.feature_names == list(FEATURE_NAMES)
    for method in ("lambda1", "lambda2"):
        low, high = bundle.thresholds[method]
        assert low.shape == high.shape == (n,) and np.all(low <= high)
        assert set(bundle.baselines_for(method)) == set(bundle.classes)
    assert np.all(bundle.thresholds["lambda1"][1] == 1.0)
    assert bundle.baselines == bundle.baselines_for("lambda1")
    assert set(bundle.baselines["tv"]) == {"n_expected", "accept_rate", "sigma_trust"}
    assert bundle.window_seconds == 86400.0
    assert len(bundle.digest) == 12
    assert bundle.predictor.n_classes == n


def test_every_file_is_listed_with_its_digest(tiny_bundle):  # noqa: F811
    """The manifest lists the library and source package with their sha256."""
    files = json.loads((tiny_bundle / "manifest.json").read_text())["files"]
    assert lib_path(host_triple()) in files and "srcpkg.zip" in files
    for name, digest in files.items():
        assert sha256_file(tiny_bundle / name) == digest


def test_tampered_library_is_refused(bundle_copy):
    """A library whose bytes changed fails with its name in the error."""
    library = bundle_copy / lib_path(host_triple())
    library.write_bytes(library.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="model.so.*sha256"):
        load_bundle(bundle_copy)


def test_missing_file_is_refused(bundle_copy):
    """A listed file that is absent fails naming that file."""
    (bundle_copy / "srcpkg.zip").unlink()
    with pytest.raises(BundleError, match="srcpkg.zip.*missing"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: m.update(format_version=99), "format_version"),
        (lambda m: m.update(feature_names=m["feature_names"][::-1]), "feature_names"),
        (lambda m: m.pop("classes"), "classes"),
        (lambda m: m.update(window_seconds=0), "window_seconds"),
        (lambda m: m["thresholds"]["lambda2"].update(low=[0.5]), "lambda2"),
        (lambda m: m["baselines"]["lambda1"].pop("tv"), "baselines.lambda1.tv"),
        (lambda m: m["files"].update({"../escape": "00"}), "leaves the bundle"),
        (lambda m: m["files"].pop(lib_path(host_triple())), "no model library"),
    ],
)
def test_bad_manifest_fields_are_named(bundle_copy, change, field):
    """Each bad field fails with an error naming it."""
    edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=field):
        load_bundle(bundle_copy)


def test_class_count_must_match_library(bundle_copy):
    """A manifest naming more classes than the library has is refused."""

    def add_class(m):
        m["classes"].append("fridge")
        for method in ("lambda1", "lambda2"):
            m["thresholds"][method]["low"].append(0.5)
            m["thresholds"][method]["high"].append(1.0)
            m["baselines"][method]["fridge"] = m["baselines"][method]["tv"]

    edit_manifest(bundle_copy, add_class)
    with pytest.raises(BundleError, match="classes"):
        load_bundle(bundle_copy)


def test_unreadable_manifest_is_refused(bundle_copy):
    """A manifest that is not JSON fails naming manifest.json."""
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json"):
        load_bundle(bundle_copy)


def test_other_triple_without_library_is_refused(tiny_bundle):  # noqa: F811
    """Asking for a CPU the bundle has no library for fails naming the triple."""
    with pytest.raises(BundleError, match="mips-linux-gnu"):
        load_bundle(tiny_bundle, triple="mips-linux-gnu")


def test_score_applies_class_intervals(tiny_bundle):  # noqa: F811
    """Accepted means the confidence lies in the predicted class's interval."""
    bundle = load_bundle(tiny_bundle)
    _, test = datasets()
    X = feature_matrix(test.flows)
    for method in ("lambda1", "lambda2"):
        label, confidence, accepted = score(bundle, X, method)
        low, high = bundle.thresholds[method]
        assert label.dtype == np.int32 and accepted.dtype == bool
        expected = (confidence >= low[label]) & (confidence <= high[label])
        np.testing.assert_array_equal(accepted, expected)
    proba = bundle.predictor.predict_proba(X)
    np.testing.assert_array_equal(label, proba.argmax(axis=1))
    np.testing.assert_array_equal(confidence, proba.max(axis=1))


def test_apply_thresholds_on_known_values():
    """Hand-made probabilities and intervals give the expected decisions."""
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.55, 0.45], [0.2, 0.8]])
    thresholds = {"lambda1": (np.array([0.6, 0.75]), np.ones(2))}
    label, _confidence, accepted = apply_thresholds(proba, thresholds)
    np.testing.assert_array_equal(label, [0, 1, 0, 1])
    np.testing.assert_array_equal(accepted, [True, False, False, True])
    with pytest.raises(ValueError, match="lambda3"):
        apply_thresholds(proba, thresholds, "lambda3")


@pytest.mark.parametrize("seed", range(3))
def test_compiled_thresholds_match_numpy(seed):
    """Argmax, confidence and the interval test of the compiled helper are numpy's, also
    with ties (the first class wins), NaN, confidences on a bound, and float32 input."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(7), 3000)
    proba[::10] = np.round(proba[::10], 1)
    proba[5, :] = 1 / 7
    proba[7, 3] = np.nan
    low = np.round(rng.uniform(0.2, 0.6, 7), 1)
    high = np.where(rng.random(7) < 0.5, 1.0, low + 0.2)
    thresholds = {"lambda1": (low, high)}
    for table in (proba, proba.astype(np.float32)):
        fast = apply_thresholds(table, thresholds, native=True)
        slow = apply_thresholds(table, thresholds, native=False)
        for a, b in zip(fast, slow):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    assert fast[2].any() and not fast[2].all() and fast[0][5] == 0
