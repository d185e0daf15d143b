"""Tests of the training side: data sets, tuning, thresholds, trust baselines, bundle."""

import json

import numpy as np
import pytest
from model_fixtures import (  # noqa: F401
    CLASSES,
    DAY_MS,
    JAN,
    datasets,
    device_mac,
    tiny_bundle,
    tiny_options,
    write_lab,
)

from agent.bundle import load_bundle
from agent.flows import empty
from compile import baselines, dataset, thresholds, train


def test_parse_grid_reads_trees_by_features():
    """``100x5,50x3`` is a list of (trees, features); nonsense is refused."""
    assert train.parse_grid("100x5,50x3") == [(100, 5), (50, 3)]
    for bad in ("100", "0x5", "10x29", "ax5"):
        with pytest.raises(ValueError, match="grid"):
            train.parse_grid(bad)


def test_thresholds_from_correct_confidences():
    """lambda1 = [mean, 1] and lambda2 = mean -+ std of correct confidences per class."""
    proba = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 0, 0, 1, 1])
    result = thresholds.class_thresholds(proba, y)
    correct0, correct1 = np.array([0.9, 0.7]), np.array([0.8])
    np.testing.assert_allclose(result["lambda1"]["low"], [correct0.mean(), correct1.mean()])
    np.testing.assert_allclose(result["lambda1"]["high"], [1, 1])
    np.testing.assert_allclose(
        result["lambda2"]["low"], [correct0.mean() - correct0.std(), correct1.mean()]
    )
    np.testing.assert_allclose(
        result["lambda2"]["high"], [correct0.mean() + correct0.std(), correct1.mean()]
    )


def test_table3_counts_every_row_once():
    """Accepted/discarded x correct/incorrect partition the rows, per method."""
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), 500)
    y = rng.integers(0, 3, 500)
    t = thresholds.table3(proba, y, thresholds.class_thresholds(proba, y))
    correct = int(np.sum(proba.argmax(axis=1) == y))
    for counts in t.values():
        assert sum(counts.values()) == 500
        assert counts["accepted_correct"] + counts["discarded_correct"] == correct
    assert t["lambda1"]["accepted_incorrect"] >= 0


def test_trust_baselines_from_known_windows():
    """n_expected, accept_rate and sigma follow their definitions on hand-made windows."""
    day = 86_400_000
    end_ms = np.array([0, 1, 2, 3, day, day + 1, 2 * day, 2 * day + 1, 2 * day + 2])
    y = np.zeros(9, int)
    label = np.zeros(9, int)
    accepted = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0], bool)
    base = baselines.trust_baselines(end_ms, y, label, accepted, ["a"], 86_400)["a"]
    assert base["n_expected"] == pytest.approx(3.0)
    assert base["accept_rate"] == pytest.approx(7 / 9)
    raw = np.array([3, 2, 2]) / (3.0 * 7 / 9)
    assert base["sigma_trust"] == pytest.approx(max(raw.std(), baselines.MIN_SIGMA))
    raw_now, trust_now = baselines.trust(np.array([[7 / 3], [0]]), {"a": base}, ["a"])
    assert raw_now[0, 0] == pytest.approx(1.0) and trust_now[0, 0] == pytest.approx(1.0)
    assert trust_now[1, 0] < 0.01


def test_a_second_acceptance_estimate_moves_the_rate_and_widens_sigma():
    """With an out-of-bag estimate, accept_rate is the mean of both and sigma takes their
    difference relative to it; a shipped model that accepts like the second estimate
    is then not flagged, 20 accepted against 70 expected still is."""
    day = 86_400_000
    end_ms = np.repeat(np.arange(4) * day, 100)
    y = np.zeros(400, int)
    label = np.zeros(400, int)
    accepted = np.tile(np.arange(100) < 60, 4)
    alone = baselines.trust_baselines(end_ms, y, label, accepted, ["a"], 86_400)["a"]
    base = baselines.trust_baselines(
        end_ms, y, label, accepted, ["a"], 86_400, accept_rate_other=np.array([0.8])
    )["a"]
    assert alone["accept_rate"] == pytest.approx(0.6)
    assert alone["sigma_trust"] == pytest.approx(baselines.MIN_SIGMA)
    assert base["accept_rate"] == pytest.approx(0.7)
    assert base["sigma_trust"] == pytest.approx(0.2 / 0.7)

    like_other = np.array([[80.0], [20.0]])
    _, before = baselines.trust(like_other, {"a": alone}, ["a"])
    _, after = baselines.trust(like_other, {"a": base}, ["a"])
    assert before[0, 0] < 0.1 < after[0, 0]
    assert after[1, 0] < 0.1


def test_accept_rates_skip_rows_without_out_of_bag_votes():
    """accept_rates counts accepted predictions per class over that class's rows, leaving
    out rows whose probabilities are all zero (no tree left them out)."""
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.0, 0.0], [0.3, 0.7]])
    y = np.array([0, 0, 1, 1, 0])
    arrays = thresholds.as_arrays(
        {
            "lambda1": {"low": [0.7, 0.75], "high": [1.0, 1.0]},
            "lambda2": {"low": [0.0, 0.0], "high": [1.0, 1.0]},
        }
    )
    rates = train.accept_rates(proba, y, arrays, "lambda1")
    assert rates[0] == pytest.approx(1 / 3)
    assert rates[1] == pytest.approx(1.0)


def test_labels_by_source_mac_then_destination_mac():
    """A record takes its source MAC's type, else its destination MAC's, else -1."""
    flows = empty(3)
    flows["sourceMacAddress"] = [device_mac(1), 0x0A, 0x0B]
    flows["destinationMacAddress"] = [device_mac(2), device_mac(3), 0x0C]
    devices = {device_mac(k): c for k, c in enumerate(CLASSES)}
    np.testing.assert_array_equal(dataset.label_flows(flows, devices, CLASSES), [1, 3, -1])


def test_paper_split_and_given_ranges():
    """Default split: January and 1-15 March train, 16 March to April test; ranges inclusive."""
    days = np.array(["2020-01-31", "2020-02-10", "2020-03-15", "2020-03-16", "2020-04-30"])
    ms = days.astype("datetime64[D]").astype("datetime64[ms]").astype(np.int64) + 3_600_000
    np.testing.assert_array_equal(dataset.period_mask(ms, "train"), [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(dataset.period_mask(ms, "test"), [0, 0, 0, 1, 1])
    ranges = dataset.parse_ranges("2020-02-10:2020-03-15")
    np.testing.assert_array_equal(dataset.period_mask(ms, "train", ranges), [0, 1, 1, 0, 0])
    with pytest.raises(dataset.DatasetError, match="date range"):
        dataset.parse_ranges("2020-01-01")


def test_devices_csv_errors_name_the_line(tmp_path):
    """A bad MAC in devices.csv fails with file and line number."""
    path = tmp_path / "devices.csv"
    path.write_text("mac,device_type\n02:00:00:00:00:01,plug\nzz:00,camera\n")
    with pytest.raises(dataset.DatasetError, match="devices.csv:3"):
        dataset.read_devices(path)


def test_tuning_is_deterministic_for_a_seed():
    """The same seed gives the same CV scores; the best setting comes first."""
    data, _ = datasets(120)
    from agent.features import feature_matrix

    X = feature_matrix(data.flows)
    kwargs = {
        "folds": 2,
        "tune_rows": 200,
        "max_leaves": 8,
        "max_samples": 0,
        "seed": 3,
        "jobs": 1,
    }
    first = train.tune(X, data.y, [(3, 2), (5, 4)], **kwargs)
    second = train.tune(X, data.y, [(3, 2), (5, 4)], **kwargs)
    assert [r["cv_macro_accuracy"] for r in first] == [r["cv_macro_accuracy"] for r in second]
    assert first[0]["cv_macro_accuracy"] >= first[1]["cv_macro_accuracy"]


def test_bundle_manifest_records_provenance(tiny_bundle):  # noqa: F811
    """The manifest holds parameters, CV score, bound cost, versions and Table III."""
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    prov = manifest["provenance"]
    assert 0.5 < prov["cv_macro_accuracy"] <= 1.0
    assert prov["parameters"]["max_leaves"] == 16
    assert prov["parameters"]["max_samples"] == train.DEFAULTS["max_samples"]
    assert prov["bound_cost"]["bounded_leaves"]["max"] <= 16
    assert "test_macro_accuracy_unbounded" in prov["bound_cost"]
    assert prov["compile"]["verify"]["max_abs_diff"] < 1e-5
    assert set(prov["versions"]) >= {"scikit-learn", "treelite", "tl2cgen"}
    assert prov["training_rows"] == sum(prov["rows_per_class"])
    t3 = manifest["training"]["table3"]["lambda1"]
    assert sum(t3.values()) == prov["training_rows"]


def test_cli_trains_from_an_ipfix_lab_folder(tmp_path):
    """``python -m compile train`` reads IPFIX files and devices.csv and writes a bundle."""
    train_set, test_set = datasets(80, seed=5)
    write_lab(tmp_path / "lab", np.concatenate([train_set.flows, test_set.flows]))
    out = tmp_path / "bundle"
    argv = [
        "--data",
        str(tmp_path / "lab"),
        "--out",
        str(out),
        "--grid",
        "3x3",
        "--folds",
        "2",
        "--max-leaves",
        "8",
        "--jobs",
        "1",
        "--no-unbounded",
        "--max-samples",
        "40",
    ]
    assert train.main(argv) == 0
    bundle = load_bundle(out)
    assert bundle.classes == CLASSES
    prov = json.loads((out / "manifest.json").read_text())["provenance"]
    assert prov["training_rows"] == len(train_set.y) > 2 * 40
    assert prov["parameters"]["max_samples"] == 40


def test_each_tree_draws_at_most_max_samples_rows():
    """A cap below the training rows makes each tree's bootstrap draw that many rows (the
    weighted root count), for a whole set and for the training part of k folds; no cap,
    or one at or above the rows, leaves sklearn's classic bootstrap of all rows."""
    data, _ = datasets(120)
    from agent.features import feature_matrix

    X = feature_matrix(data.flows)
    rows = len(data.y)
    assert train.draw_share(0, rows) is None
    assert train.draw_share(rows, rows) is None
    assert train.draw_share(rows // 2, rows, folds=2) is None
    assert train.draw_share(100, 1000, folds=5) == pytest.approx(100 / 800)

    forest = train.make_forest(4, 3, 8, 0, 1, train.draw_share(60, rows)).fit(X, data.y)
    assert [t.tree_.weighted_n_node_samples[0] for t in forest.estimators_] == [60] * 4
    forest = train.make_forest(4, 3, 8, 0, 1, train.draw_share(0, rows)).fit(X, data.y)
    assert [t.tree_.weighted_n_node_samples[0] for t in forest.estimators_] == [rows] * 4


def test_cli_rejects_a_negative_max_samples(tmp_path, capsys):
    """--max-samples below 0 fails with the flag named, exit status 1, nothing written."""
    train_set, test_set = datasets(40, seed=5)
    write_lab(tmp_path / "lab", np.concatenate([train_set.flows, test_set.flows]))
    argv = ["--data", str(tmp_path / "lab"), "--out", str(tmp_path / "b"), "--max-samples", "-1"]
    assert train.main(argv) == 1
    assert "--max-samples must be 0" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_cli_reports_a_folder_without_records(tmp_path, capsys):
    """A folder without flow files fails with a message naming it, exit status 1."""
    (tmp_path / "devices.csv").write_text("02:00:00:00:00:01,plug\n")
    assert train.main(["--data", str(tmp_path), "--out", str(tmp_path / "b")]) == 1
    assert "no flow record files" in capsys.readouterr().err


def test_subsample_keeps_rare_classes():
    """A stratified sample keeps at least the floor of each class, or all of a rare one."""
    y = np.array([0] * 5000 + [1] * 30 + [2] * 3)
    keep = train.subsample(y, 500, seed=0, floor=50)
    counts = np.bincount(y[keep])
    assert counts[1] == 30 and counts[2] == 3 and 50 <= counts[0] <= 600
    assert np.all(np.diff(keep) > 0)
    assert len(train.subsample(y, 0, seed=0)) == len(y)


def test_rare_classes_are_left_out_and_renumbered():
    """Classes under the minimum leave training and test; the rest are renumbered."""
    train_set, test_set = datasets(40)
    rare = np.flatnonzero(train_set.y == 1)[5:]
    keep = np.setdiff1d(np.arange(len(train_set.y)), rare)
    small = dataset.Dataset(train_set.flows[keep], train_set.y[keep], CLASSES, "x")
    data, test, dropped = train.drop_rare_classes(small, test_set, 10)
    assert dropped == [CLASSES[1]] and data.classes == [c for c in CLASSES if c != CLASSES[1]]
    assert set(np.unique(data.y)) == {0, 1, 2} and set(np.unique(test.y)) == {0, 1, 2}
    assert len(test.y) == np.sum(test_set.y != 1)


def test_unbounded_forest_grown_in_chunks():
    """The chunked unbounded forest gives probabilities over all classes and its leaves."""
    from agent.features import feature_matrix

    train_set, test_set = datasets(60)
    X, Xt = feature_matrix(train_set.flows), feature_matrix(test_set.flows)
    proba, leaves = train.unbounded_proba(X, train_set.y, Xt, 5, 3, 0, 1, chunk=2)
    assert proba.shape == (len(Xt), len(CLASSES))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert leaves["total"] >= leaves["max"] >= 2


def test_trust_baselines_from_a_sample_stand_for_all_rows():
    """Scored on a class-stratified sample, counts are scaled back to all rows."""
    rng = np.random.default_rng(4)
    end_ms = np.sort(rng.integers(0, 10 * 86_400_000, 4000))
    y = rng.integers(0, 2, 4000)
    label = y.copy()
    accepted = rng.random(4000) < 0.7
    full = baselines.trust_baselines(end_ms, y, label, accepted, ["a", "b"], 86_400)
    sample = np.concatenate([np.flatnonzero(y == 0)[::2], np.flatnonzero(y == 1)[::4]])
    part = baselines.trust_baselines(
        end_ms[sample],
        y[sample],
        label[sample],
        accepted[sample],
        ["a", "b"],
        86_400,
        time_ms_all=end_ms,
        y_all=y,
    )
    for name in ("a", "b"):
        assert part[name]["n_expected"] == full[name]["n_expected"]
        assert part[name]["accept_rate"] == pytest.approx(full[name]["accept_rate"], abs=0.05)


def test_both_backends_give_the_forests_probabilities(tmp_path):
    """A bundle built by TL2cgen and one built by forestc score the same rows alike."""
    from agent.features import feature_matrix
    from compile.train import fit_bundle

    train, test = datasets(n_per_class=120)
    X = feature_matrix(test.flows[:300])
    probabilities = {}
    for backend in ("forestc", "tl2cgen"):
        out = tmp_path / backend
        fit_bundle(train, test, out, tiny_options(backend=backend, no_unbounded=True))
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["provenance"]["backend"] == backend
        probabilities[backend] = load_bundle(out).predictor.predict_proba(X)
    assert np.abs(probabilities["forestc"] - probabilities["tl2cgen"]).max() < 1e-5
