"""The decode-alternatives, compile and scaling benchmarks run on tiny inputs and return
sane figures (how fast is not checked here)."""

import numpy as np
import pytest

from benchmarks import bench_compile, bench_decode_alternatives, bench_scaling


def test_decode_alternatives_agree_on_the_records():
    """Every decoder that can read the file returns all its records, and the `ipfix`
    package with its list walk gives exactly our feature matrix."""
    result = bench_decode_alternatives.run(quick=True)
    rows = {row["decoder"]: row for row in result["rows"]}
    n = result["records_in_file"]
    assert n > 0 and result["data_sets"] >= 1
    assert rows["iotwatch Decoder (ours)"]["records"] == n
    assert rows["ipfix 0.9.7 + list walk"]["records"] == n
    assert rows["ipfix 0.9.7 + list walk"]["features equal ours"] == "yes"
    assert rows["scapy 2.8, plain re-encoding"]["records"] == n
    assert result["all_full_decoders_same_count"] is True
    for row in result["rows"]:
        if row["records"]:
            assert row["to features records/s"] > 0 and row["decode records/s"] > 0
        else:
            assert row["note"], "a decoder that read nothing must say why"


def test_scapy_reads_the_plain_re_encoding_field_for_field():
    """The forward-only file scapy is measured on carries the flows' own main fields."""
    flows = bench_scaling.synthetic_flows(50, homes=3, seed=4)
    got = bench_decode_alternatives.scapy_plain(bench_decode_alternatives.plain_file(flows))
    assert len(got) == len(flows)
    for name in (
        "flowStartMilliseconds",
        "octetTotalCount",
        "destinationTransportPort",
        "protocolIdentifier",
        "sourceAddress",
        "destinationAddress",
    ):
        assert np.array_equal(got[name], flows[name]), name


def test_ipfix_package_dicts_become_our_flow_rows(tmp_path):
    """python-ipfix's records with the list walk convert to the rows our decoder gives."""
    from agent.ipfix.writer import write_yaf_file

    flows = bench_scaling.synthetic_flows(40, homes=2, seed=9)
    path = tmp_path / "f.ipfix"
    write_yaf_file(path, flows, export_time=1_700_000_000)
    data = path.read_bytes()
    bench_decode_alternatives.ipfix_setup()
    theirs = bench_decode_alternatives.dicts_to_flows(
        bench_decode_alternatives.ipfix_records(data, walk_lists=True)
    )
    ours = bench_decode_alternatives.ours(data)
    for name in (
        "flowEndMilliseconds",
        "sourceAddress",
        "reverseOctetTotalCount",
        "smallPacketCount",
        "reverseMaxPacketSize",
        "sourceMacAddress",
    ):
        assert np.array_equal(theirs[name], ours[name]), name


@pytest.mark.timeout(300)
def test_compile_benchmark_builds_both_backends():
    """Both backends build a library matching scikit-learn, with sizes, peaks and scores."""
    result = bench_compile.run(quick=True)
    backends = {row["backend"] for row in result["rows"]}
    assert backends == set(bench_compile.BACKENDS)
    for row in result["rows"]:
        assert row["note"] == "", row
        assert row["compile s"] > 0 and row["library MB"] > 0
        assert row["python peak MB"] > 0 and row["largest compiler MB"] > 0
        assert row["max abs diff"] < 1e-4
        assert 0.0 <= row["macro accuracy"] <= 1.0
        assert 0.0 <= row["discard rate lambda1"] <= 1.0


@pytest.mark.timeout(300)
def test_scaling_benchmark_sees_every_home():
    """Each setting scores every record and tracks as many homes as the flows came from."""
    result = bench_scaling.run(quick=True)
    assert [row["homes"] for row in result["rows"]] == list(bench_scaling.QUICK["homes"])
    for row in result["rows"]:
        assert row["records/s"] > 0 and row["records"] > 0
        assert row["homes seen"] == row["homes"]
        assert row["summaries"] >= row["homes"]
        assert row["peak RSS MB"] >= row["RSS before MB"] > 0


def test_agent_rate_search_stops_at_the_first_loss(monkeypatch):
    """The search raises the rate by its step while runs lose nothing, and reports the
    last rate held with zero loss; a first run that loses reports none."""
    from benchmarks import bench_agent

    ceiling = 180_000
    asked = []

    def fake_scenario(bundle, rate, seconds):
        asked.append(rate)
        return {"sent_rate": rate, "records_lost": 0 if rate <= ceiling else 17}

    monkeypatch.setattr(bench_agent, "scenario", fake_scenario)
    rows, best = bench_agent.search(None, 1.0, 100_000, 1.25, 6)
    assert asked == [100_000, 125_000, 156_250, 195_312]
    assert best == 156_250 and rows[-1]["records_lost"] == 17

    asked.clear()
    rows, best = bench_agent.search(None, 1.0, 200_000, 1.25, 6)
    assert best is None and asked == [200_000]

    asked.clear()
    rows, best = bench_agent.search(None, 1.0, 1_000, 2.0, 3)
    assert asked == [1_000, 2_000, 4_000] and best == 4_000
