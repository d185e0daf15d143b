"""Tests of the batch data path with the real tiny bundle: counts, windows, privacy."""

import itertools
import json

import numpy as np
import pytest
from model_fixtures import CLASSES, MAR_TEST, synthetic_flows, tiny_bundle  # noqa: F401

from agent.bundle import load_bundle
from agent.flows import pack_address, unpack_address
from agent.homes import Homes
from agent.metrics import Metrics
from agent.pipeline import Batcher, Pipeline
from agent.summaries import Summaries

HOMES = ["100.64.0.7", "100.64.0.9", "2001:db8:0:100::5"]


@pytest.fixture(scope="module")
def bundle(tiny_bundle):  # noqa: F811
    return load_bundle(tiny_bundle)


def home_flows(n_per_class=40, days=1, seed=5):
    flows, y = synthetic_flows(n_per_class, MAR_TEST, days, seed)
    for i, home in enumerate(HOMES):
        flows["sourceAddress"][i :: len(HOMES)] = pack_address(home)
        flows["ipVersion"][i :: len(HOMES)] = 6 if ":" in home else 4
    v6 = flows["ipVersion"] == 6
    flows["destinationAddress"][v6] = pack_address("2600::7")
    return flows, y


def make(bundle, window=3600.0):
    out, metrics = [], Metrics()
    summaries = Summaries("t", bundle.digest, metrics, lambda r: out.extend(b for *_, b in r))
    homes = Homes(["100.64.0.0/10", "2001:db8::/32"], hash_key=b"k")
    pipeline = Pipeline(bundle, homes, summaries, metrics, window=window, by_flow_time=True)
    return pipeline, out, metrics


def test_counts_add_up(bundle):
    """records = local + remote; remote = outside + inbound + scored; scored = acc + disc."""
    flows, _ = home_flows()
    local = flows[:5].copy()
    local["destinationAddress"] = pack_address("192.168.1.1")
    local["sourceAddress"] = pack_address("192.168.1.20")
    local["ipVersion"] = 4
    outside = flows[:4].copy()
    outside["sourceAddress"] = pack_address("198.51.100.4")
    outside["ipVersion"] = 4
    pipeline, _, metrics = make(bundle)
    pipeline.process(np.concatenate([flows, local, outside]))
    c = metrics.snapshot()
    assert c["local"] == 5 and c["outside_prefixes"] == 4
    assert c["remote"] == len(flows) + 4
    assert c["scored"] == len(flows) == c["accepted"] + c["discarded"]
    assert c["homes"] == 3


def test_detects_the_classes_per_home(bundle):
    """Each home's detections name only bundle classes, each (home, type) once."""
    flows, _ = home_flows()
    pipeline, out, _ = make(bundle)
    Batcher(pipeline, 64).add(flows)
    pipeline.finish()
    events = [e for body in out if body["kind"] == "detections" for e in body["events"]]
    pairs = [(e["home"], e["device_type"]) for e in events]
    assert len(pairs) == len(set(pairs)) > 0
    assert {e["device_type"] for e in events} <= set(CLASSES)
    assert len({e["home"] for e in events}) == 3
    assert all(e["hit_flow"] >= 1 and e["hit_time"] >= 0 for e in events)


def test_windows_follow_flow_time(bundle):
    """Over 3 days with 6-hour windows, trust windows are aligned, ordered, non-overlapping."""
    flows, _ = home_flows(n_per_class=60, days=3)
    pipeline, out, _ = make(bundle, window=6 * 3600.0)
    batcher = Batcher(pipeline, 100)
    for part in np.array_split(flows, 7):
        batcher.add(part)
    batcher.flush()
    pipeline.finish()
    trust = [b for b in out if b["kind"] == "trust"]
    windows = sorted({(b["window"]["start"], b["window"]["end"]) for b in trust})
    assert len(windows) >= 8
    assert all(s % (6 * 3600) == 0 and e - s == 6 * 3600 for s, e in windows)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows))
    per_home_window = [(b["home"], b["window"]["start"]) for b in trust]
    assert len(per_home_window) == len(set(per_home_window))
    total = sum(d["accepted"] + d["discarded"] for b in trust for d in b["devices"])
    assert total == len(flows)


def test_summaries_never_carry_addresses_or_ports(bundle):
    """No home or remote address, and no port, appears anywhere in the summaries."""
    flows, _ = home_flows()
    pipeline, out, _ = make(bundle)
    pipeline.process(flows)
    pipeline.finish()
    text = json.dumps(out)
    addresses = {unpack_address(r["sourceAddress"], int(r["ipVersion"])) for r in flows}
    addresses |= {unpack_address(r["destinationAddress"], int(r["ipVersion"])) for r in flows}
    assert not [a for a in addresses if a in text]
    assert "Port" not in text and "Address" not in text


def test_bundle_switch_closes_window_and_keeps_inventory(bundle):
    """set_bundle closes the open window under the old model; inventory carries over."""
    flows, _ = home_flows()
    pipeline, out, _ = make(bundle)
    pipeline.process(flows)
    before = pipeline.inventory.detected.copy()
    end = float(flows["flowEndMilliseconds"].max()) / 1000 + 1
    pipeline.set_bundle(bundle, end)
    assert any(b["kind"] == "trust" for b in out)
    np.testing.assert_array_equal(np.isnan(before), np.isnan(pipeline.inventory.detected))


class Recorder:
    """A stand-in pipeline that keeps copies of the batches it is given."""

    def __init__(self):
        self.batches = []

    def process(self, flows):
        self.batches.append(flows.copy())


def test_batcher_keeps_every_row_in_order_in_bounded_batches():
    """Parts of any size and layout come out as batches of at most batch_size, rows intact."""
    flows, _ = home_flows(n_per_class=100)
    recorder = Recorder()
    batcher = Batcher(recorder, 64)
    batcher.add(flows[:5])
    batcher.add(flows[5:200])
    batcher.add(flows[200:300][::-1])
    batcher.add(flows[300:])
    assert batcher.rows == len(flows) % 64
    batcher.flush()
    out = np.concatenate(recorder.batches)
    expected = np.concatenate([flows[:200], flows[200:300][::-1], flows[300:]])
    assert out.tobytes() == expected.tobytes()
    assert all(len(b) <= 64 for b in recorder.batches)
    assert [len(b) for b in recorder.batches[:-1]] == [64] * (len(recorder.batches) - 1)
