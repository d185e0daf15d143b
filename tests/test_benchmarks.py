"""Each benchmark runs end to end on tiny inputs (how fast is not checked here)."""

import json
import math

import pytest

from benchmarks import __main__ as bench_main


def test_engines_benchmark_runs_on_a_tiny_forest():
    """Every scoring engine scores the same rows and agrees with scikit-learn."""
    from benchmarks import bench_engines

    result = bench_engines.run(quick=True)
    names = {row["engine"] for row in result["rows"]}
    assert "iotwatch forestc via cffi (ours)" in names
    assert "scikit-learn predict_proba" in names and "ONNX Runtime (skl2onnx)" in names
    for row in result["rows"]:
        assert row["batch rows/s"] > 0 and row["one row p50 us"] > 0
        assert row["max abs diff"] < 1e-4, row
    assert result["floor_us_per_row"] > 0


def test_runner_writes_markdown_and_json(tmp_path, monkeypatch):
    """The runner writes both result files, with the machine's description."""
    monkeypatch.setattr(bench_main, "available", lambda: ["fake"])
    import sys
    import types

    fake = types.ModuleType("benchmarks.bench_fake")
    fake.run = lambda quick: {"rows": [{"engine": "x", "rows/s": 12345.0}], "note": "n"}
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", fake)
    assert bench_main.main(["--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["benchmarks"]["fake"]["rows"][0]["rows/s"] == 12345.0
    assert "cpus" in data["machine"]
    assert "| engine | rows/s |" in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize(
    "name", ["decode", "writer", "agent", "store", "openwrt", "testbed", "scoring", "meter"]
)
def test_each_stage_benchmark_runs_quick(name):
    """Every stage's benchmark runs on tiny inputs and returns figures, not an error."""
    import importlib

    result = importlib.import_module(f"benchmarks.bench_{name}").run(quick=True)
    assert isinstance(result, dict) and result
    assert "error" not in result
    numbers = [v for v in _walk(result) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert numbers and not any(math.isnan(v) for v in numbers)


def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value
