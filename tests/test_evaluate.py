"""Tests of compile.evaluate: the report, its metrics, and flagged behaviour changes."""

import json

import numpy as np
import pytest
from model_fixtures import (  # noqa: F401
    CLASSES,
    DAY_MS,
    MAR_TEST,
    datasets,
    tiny_bundle,
    write_lab,
)

from compile import baselines, evaluate, report_plots
from compile.train import DEFAULTS


@pytest.fixture(scope="module")
def report(tiny_bundle, tmp_path_factory):  # noqa: F811
    """Evaluate the tiny bundle on a lab whose 'tv' nearly stops on the second test day."""
    _, test = datasets()
    day = (test.flows["flowStartMilliseconds"] - MAR_TEST) // DAY_MS
    tv = test.y == CLASSES.index("tv")
    rng = np.random.default_rng(0)
    drop = tv & (day == 1) & (rng.random(len(tv)) < 0.9)
    root = write_lab(tmp_path_factory.mktemp("lab"), test.flows[~drop])
    second_day = str(np.datetime64(MAR_TEST + DAY_MS, "ms").astype("datetime64[D]"))
    change = {"device_type": "tv", "kind": "flow-count", "start": second_day, "end": second_day}
    (root / "changes.json").write_text(json.dumps([change]))
    out = tmp_path_factory.mktemp("report")
    metrics = evaluate.evaluate(tiny_bundle, root, out)
    return out, metrics, second_day


def test_metrics_hold_the_headline_figures(report):
    """metrics.json has the required keys with values in range."""
    out, _metrics, _ = report
    stored = json.loads((out / "metrics.json").read_text())
    for key in (
        "cv_macro_accuracy",
        "test_macro_accuracy_model",
        "test_macro_accuracy_lambda1",
        "test_macro_accuracy_lambda2",
        "test_discard_rate_lambda1",
    ):
        assert 0.0 <= stored[key] <= 1.0
    assert set(stored["per_class"]) == set(CLASSES)
    assert stored["test_rows"] == sum(c["flows"] for c in stored["per_class"].values())
    t3 = stored["table3_test"]["lambda1"]
    assert sum(t3.values()) == stored["test_rows"]


def test_report_and_figures_are_written(report):
    """report.md names Table III and links four PNG figures that exist."""
    out, metrics, _ = report
    text = (out / "report.md").read_text()
    assert "Table III" in text and "Per service" in text
    assert report_plots._draws(DEFAULTS["max_samples"]) in text
    assert report_plots._draws(0) == ", each grown from a bootstrap of all training rows"
    assert report_plots._draws(300_000) == ", each grown from a bootstrap of at most 300,000 rows"
    for key in ("fig4", "fig5", "fig6", "fig7"):
        name = metrics["figures"][key]
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in text


def test_injected_flow_drop_is_flagged_on_its_day(report):
    """The day 'tv' lost most flows is flagged; unchanged types are not flagged."""
    _, metrics, second_day = report
    (change,) = metrics["trust"]["changes"]
    assert change["flagged"] and change["flagged_day"] == second_day
    assert change["within_a_day"] and metrics["changes_flagged_within_a_day"]
    assert metrics["trust"]["unchanged_max_flag_rate"] == 0.0


def test_per_service_rows_match_flags(report):
    """Every TCP/443 flow is counted under HTTPS, every UDP/123 under NTP."""
    _, metrics, _ = report
    services = metrics["per_service"]
    assert services["HTTPS"]["flows"] > 0 and services["NTP"]["flows"] > 0
    assert services["HTTP"]["flows"] == 0 and services["HTTP"]["accuracy"] is None


def test_hit_time_and_hit_flow_from_true_labels():
    """Hit-time runs from a class's first flow to its first good prediction that day."""
    start = np.array([0, 1000, 5000, 7000, 9000])
    y = np.array([0, 0, 0, 1, 1])
    good = np.array([False, False, True, True, False])
    times, flows = evaluate.hit_times(start, y, good, np.zeros(5, int), 2)
    assert times == [pytest.approx((5.0 + 0.0) / 2)]
    assert flows == [pytest.approx((3 + 1) / 2)]


def test_flagged_changes_reports_first_low_window():
    """A change is flagged on the first window in its span with trust under the level."""
    windows = np.arange(18_300, 18_306)
    trust = np.ones((6, 2))
    trust[3, 1] = 0.01
    start = str(np.datetime64(18_302, "D"))
    changes = [{"device_type": "b", "start": start, "end": None}]
    (entry,) = evaluate.flagged_changes(changes, trust < 0.1, windows, 86_400, ["a", "b"])
    assert entry["flagged"] and entry["delay_days"] == 1.0 and entry["within_a_day"]
    assert entry["flagged_day"] == str(np.datetime64(18_303, "D"))


def test_lab_wide_change_counts_types_and_leaves_its_days_out():
    """A change for every type ('*') reports how many types were flagged, and its days
    do not count against the types without a change of their own."""
    windows = np.arange(18_300, 18_306)
    trust = np.ones((6, 3))
    trust[3, :2] = 0.001
    trust[5, 0] = 0.001
    day = str(np.datetime64(18_303, "D"))
    changes = [{"device_type": "*", "kind": "capture", "start": day, "end": day}]
    got = evaluate.trust_flags(changes, trust < 0.01, windows, 86_400, ["a", "b", "c"])
    (entry,) = got["changes"]
    assert entry["flagged"] and entry["delay_days"] == 0.0
    assert entry["flagged_types"] == 2 and entry["types"] == 3
    assert got["unchanged_flag_rate"] == {"a": 1 / 5, "b": 0.0, "c": 0.0}
    assert got["outside_change_flag_rate"] == 1 / 15


def test_flag_sweep_trades_false_flags_for_delay():
    """A stricter level flags a growing change later and an unchanged type less often; the
    run rule catches two low windows in a row that no single-window limit does."""
    windows = np.arange(18_300, 18_304)
    z = np.array([[0.0, 2.2], [2.2, 2.7], [0.0, 3.2], [0.0, 3.7]])
    trust = np.exp(-(z**2) / 2)
    raw = 1.0 - 0.1 * z
    start = str(np.datetime64(18_300, "D"))
    changes = [{"device_type": "b", "start": start, "end": None}]
    rows = evaluate.flag_sweep(changes, raw, trust, windows, 86_400, ["a", "b"])
    assert [(r["sigmas"], r["run_rule"]) for r in rows] == list(evaluate.SWEEP)
    assert [r["delays_days"] for r in rows] == [[0.0], [1.0], [2.0], [3.0], [1.0]]
    assert [r["unchanged_max_flag_rate"] for r in rows] == [0.25, 0.0, 0.0, 0.0, 0.0]
    assert [r["changes_within_a_day"] for r in rows] == [1, 1, 0, 0, 1]


def _series(z):
    """(raw, trust) of windows x classes from signed sigmas (sigma 0.1)."""
    z = np.asarray(z, dtype=float)
    return 1.0 + 0.1 * z, np.exp(-(z**2) / 2)


def test_one_window_beyond_three_sigma_is_flagged_either_way():
    raw, trust = _series([[0.0, 0.0], [-3.1, 3.1], [0.0, 0.0]])
    got = baselines.flags(raw, trust)
    assert got.tolist() == [[False, False], [True, True], [False, False]]


def test_two_low_windows_in_three_are_flagged_on_the_second():
    """Drops of 2-3 sigma: flagged when a second one comes within three windows, not on
    the first, and not after one on its own."""
    raw, trust = _series([[-2.5], [0.0], [-2.2], [0.0], [0.0], [-2.4], [0.0], [0.0], [-2.1]])
    assert baselines.flags(raw, trust)[:, 0].tolist() == [
        False, False, True, False, False, False, False, False, False
    ]  # fmt: skip


def test_run_rule_looks_at_drops_only_and_can_be_turned_off():
    """Two rises of 2.5 sigma are not a run (another device's flows may be predicted as the
    type); two drops are, unless run_below is 0."""
    raw, trust = _series([[2.5, -2.5], [2.5, -2.5]])
    assert baselines.flags(raw, trust).tolist() == [[False, False], [False, True]]
    assert not baselines.flags(raw, trust, run_below=0.0).any()
    assert baselines.flags(raw, trust, flag_below=0.05).all()
