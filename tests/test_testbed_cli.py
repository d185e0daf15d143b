"""``python -m compile testbed`` writes the documented layout, deterministically."""

import csv
import json

import numpy as np
import pytest

from agent.features import remote_mask
from agent.flows import unpack_address
from agent.ipfix import decode_file
from agent.ipfix.smjson import read_smjson
from compile.testbed import cli
from compile.testbed.devices import DEVICES

SCALE = "0.002"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A tiny testbed with two homes and JSON copies."""
    path = tmp_path_factory.mktemp("tb") / "a"
    assert (
        cli.main(["--out", str(path), "--scale", SCALE, "--seed", "7", "--homes", "3", "--json"])
        == 0
    )
    return path


def test_layout(out):
    """Every documented file is there: one IPFIX (and JSON) file per captured day."""
    for name in (
        "devices.csv",
        "changes.json",
        "testbed.json",
        "isp/homes.json",
        "isp/stream.ipfix",
    ):
        assert (out / name).is_file(), name
    days = sorted(p.stem for p in (out / "lab").glob("*.ipfix"))
    assert len(days) == 88 and days[0] == "2020-01-01" and days[-1] == "2020-04-30"
    assert sorted(p.stem for p in (out / "lab").glob("*.json")) == days


def test_devices_csv_labels_every_record(out):
    """devices.csv maps each lab MAC to its device type; every lab record has a known MAC."""
    with open(out / "devices.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["mac", "device_type", "category", "remote_only"]
    assert len(rows) == len(DEVICES)
    macs = {int(r["mac"].replace(":", ""), 16) for r in rows}
    flows = decode_file(out / "lab" / "2020-03-03.ipfix")
    assert len(flows) and np.isin(flows["sourceMacAddress"], list(macs)).all()


def test_files_round_trip(out):
    """The IPFIX and JSON copies of a day decode to the same, time-ordered records."""
    a = decode_file(out / "lab" / "2020-01-07.ipfix")
    b = read_smjson(out / "lab" / "2020-01-07.json")
    assert len(a) == len(b) > 0
    for name in (
        "flowStartMilliseconds",
        "reverseDataByteCount",
        "sourceMacAddress",
        "averageInterarrivalTime",
        "firstEightNonEmptyPacketDirections",
    ):
        assert np.array_equal(a[name], b[name]), name
    assert (np.diff(a["flowStartMilliseconds"]) >= 0).all()


def test_isp_stream_is_post_nat(out):
    """The ISP stream has only remote flows from the homes' public addresses, no MACs."""
    homes = json.loads((out / "isp" / "homes.json").read_text())
    assert len(homes) == 3
    publics = {h["public_address"] for h in homes}
    for h in homes:
        assert h["home_id"] and h["subscriber_id"] and h["general_purpose"]
        assert set(h["iot_device_types"]) <= {d.name for d in DEVICES if not d.local_only}
    stream = decode_file(out / "isp" / "stream.ipfix")
    assert len(stream) > 100
    assert (stream["sourceMacAddress"] == 0).all() and remote_mask(stream).all()
    sources = {unpack_address(a, 4) for a in np.unique(stream["sourceAddress"], axis=0)}
    assert sources == publics
    assert (np.diff(stream["flowStartMilliseconds"]) >= 0).all()


def test_summary_counts(out):
    """testbed.json holds the parameters and per-day counts adding up to the records."""
    summary = json.loads((out / "testbed.json").read_text())
    assert summary["scale"] == float(SCALE) and summary["seed"] == 7
    per_day = [d["records"] for d in summary["days"].values()]
    assert sum(per_day) == summary["records"]
    day = summary["days"]["2020-01-07"]
    counted = sum(v["remote"] + v["local"] for v in day["devices"].values())
    assert counted == day["records"] == len(decode_file(out / "lab" / "2020-01-07.ipfix"))


def test_same_seed_same_bytes(out, tmp_path):
    """The same seed writes byte-identical files; another seed writes different ones."""
    again = tmp_path / "b"
    assert (
        cli.main(["--out", str(again), "--scale", SCALE, "--seed", "7", "--homes", "3", "--json"])
        == 0
    )
    for path in sorted(out.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (again / path.relative_to(out)).read_bytes(), path
    other = tmp_path / "c"
    assert cli.main(["--out", str(other), "--scale", SCALE, "--seed", "8"]) == 0
    name = "lab/2020-01-07.ipfix"
    assert (out / name).read_bytes() != (other / name).read_bytes()


@pytest.mark.parametrize(
    "args",
    [["--scale", "0"], ["--scale", "-1"], ["--homes", "-2"], ["--plug-onset", "1.5"]],
)
def test_bad_arguments(tmp_path, capsys, args):
    """Bad arguments give exit status 2 and a message naming the option."""
    assert cli.main(["--out", str(tmp_path / "x"), *args]) == 2
    assert args[0] in capsys.readouterr().err
