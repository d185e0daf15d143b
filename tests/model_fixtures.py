"""Shared model fixtures: a small synthetic lab (flow tables with known device types) and
one tiny bundle trained on it, built once per test process (compiling takes seconds).
"""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from agent.flows import empty, pack_address

CLASSES = ["camera", "plug", "speaker", "tv"]
DAY_MS = 86_400_000
#: 2020-01-06, 2020-03-02 and 2020-03-20 at 00:00 UTC: train, train, test days.
JAN = 1_578_268_800_000
MAR_TRAIN = 1_583_107_200_000
MAR_TEST = 1_584_662_400_000

#: Per class: (protocol, remote port, mean packets, mean payload bytes, interarrival ms).
PROFILES = {
    "camera": (6, 443, 40, 900, 50),
    "plug": (17, 123, 2, 48, 1_000),
    "speaker": (6, 443, 12, 300, 400),
    "tv": (17, 8_000, 80, 1_200, 20),
}


def device_mac(k: int) -> int:
    """MAC of the k-th class's one device."""
    return 0x02_00_00_00_00_10 + int(k)


def synthetic_flows(n_per_class: int, start_ms: int, days: int, seed: int):
    """(flows, y): remote flows of each class over ``days`` days, features overlapping."""
    rng = np.random.default_rng(seed)
    n = n_per_class * len(CLASSES)
    flows = empty(n)
    y = np.repeat(np.arange(len(CLASSES), dtype=np.int32), n_per_class)

    proto, port, packets, payload, gap = (
        np.array([PROFILES[c][i] for c in CLASSES])[y] for i in range(5)
    )
    pkts = np.maximum(1, rng.poisson(packets)).astype(np.uint64)
    size = np.maximum(1, rng.normal(payload, payload * 0.4)).astype(np.uint64)
    flows["flowStartMilliseconds"] = start_ms + rng.integers(0, days * DAY_MS, n)
    flows["flowEndMilliseconds"] = flows["flowStartMilliseconds"] + pkts * gap
    flows["ipVersion"] = 4
    flows["protocolIdentifier"] = proto
    flows["sourceTransportPort"] = rng.integers(32_768, 60_999, n)
    flows["destinationTransportPort"] = port
    flows["sourceAddress"] = pack_address("192.168.1.20")
    flows["destinationAddress"] = pack_address("203.0.113.7")
    flows["sourceMacAddress"] = [device_mac(k) for k in y]
    flows["packetTotalCount"] = pkts
    flows["octetTotalCount"] = pkts * (size + 40)
    flows["reversePacketTotalCount"] = pkts
    flows["reverseOctetTotalCount"] = pkts * (size // 2 + 40)
    flows["dataByteCount"] = pkts * size
    flows["nonEmptyPacketCount"] = pkts
    flows["averageInterarrivalTime"] = rng.exponential(gap, n).astype(np.uint64)
    flows["maxPacketSize"] = np.minimum(size * 2, 1_460)
    flows["firstNonEmptyPacketSize"] = np.minimum(size, 1_460)
    order = np.argsort(flows["flowStartMilliseconds"])
    return flows[order], y[order]


def datasets(n_per_class: int = 300, seed: int = 1):
    """(train, test) ``compile.dataset.Dataset`` objects from synthetic flows."""
    from compile.dataset import Dataset

    jan, y_jan = synthetic_flows(n_per_class, JAN, 3, seed)
    mar, y_mar = synthetic_flows(n_per_class // 2, MAR_TRAIN, 2, seed + 1)
    test, y_test = synthetic_flows(n_per_class, MAR_TEST, 3, seed + 2)
    train = Dataset(
        np.concatenate([jan, mar]), np.concatenate([y_jan, y_mar]), list(CLASSES), "synthetic"
    )
    return train, Dataset(test, y_test, list(CLASSES), "synthetic")


def tiny_options(**changes):
    """Training options small enough for a unit test."""
    from compile.train import Options

    base = {"grid": "4x3,6x5", "folds": 2, "tune_rows": 0, "max_leaves": 16, "jobs": 1}
    return Options(**{**base, **changes})


@functools.cache
def build_tiny_bundle() -> Path:
    """Train and compile one tiny bundle per process; the folder is removed at exit."""
    from compile.train import fit_bundle

    root = Path(tempfile.mkdtemp(prefix="iotwatch-bundle-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    train, test = datasets()
    fit_bundle(train, test, root / "bundle", tiny_options())
    return root / "bundle"


@pytest.fixture(scope="session")
def tiny_bundle() -> Path:
    """Path of the shared tiny bundle (read it, never change it: copy first)."""
    return build_tiny_bundle()


def write_lab(root: Path, flows: np.ndarray, fmt: str = "ipfix") -> Path:
    """A lab folder as the testbed writes it: devices.csv and lab/YYYY-MM-DD.<fmt>."""
    from agent.flows import int_to_mac

    (root / "lab").mkdir(parents=True, exist_ok=True)
    lines = ["mac,device_type"] + [
        f"{int_to_mac(device_mac(k))},{c}" for k, c in enumerate(CLASSES)
    ]
    (root / "devices.csv").write_text("\n".join(lines) + "\n")

    day = flows["flowStartMilliseconds"] // DAY_MS
    for d in np.unique(day):
        name = str(np.datetime64(int(d), "D"))
        part = flows[day == d]
        if fmt == "ipfix":
            from agent.ipfix.writer import write_yaf_file

            write_yaf_file(root / "lab" / f"{name}.ipfix", part)
        else:
            from agent.ipfix.smjson import write_smjson

            write_smjson(root / "lab" / f"{name}.json", part)
    return root
