"""Each benchmark runs end to end on tiny inputs (how fast is not checked here)."""

import json

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
