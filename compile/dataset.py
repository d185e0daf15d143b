"""A labelled data set of remote flows, read from a lab capture folder.

The folder holds flow records, either YAF-format IPFIX files (``*.ipfix``) or Super
Mediator JSON lines (``*.json``), below its ``lab`` folder (or below the folder itself),
and ``devices.csv`` (``mac,device_type``), the only source of labels: a record belongs to
the device type of its source MAC, else of its destination MAC; records of neither are
dropped, and so are local flows, which an ISP's edge never sees. The split is by time,
as in the paper (training: January and 1-15 March; testing: 16 March to the end of
April, any year), or by date ranges given as ``YYYY-MM-DD:YYYY-MM-DD[,...]`` (both ends included).
"""

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.features import remote_mask
from agent.flows import FLOW_DTYPE, mac_to_int

log = logging.getLogger(__name__)

DEVICES = "devices.csv"
FORMATS = {"ipfix": ("*.ipfix",), "json": ("*.json", "*.jsonl")}
DAY_MS = 86_400_000


class DatasetError(ValueError):
    """A data folder that cannot be read or yields no usable records."""


@dataclass
class Dataset:
    """Remote, labelled flows of one period; ``y`` indexes ``classes``."""

    flows: np.ndarray
    y: np.ndarray
    classes: list[str]
    digest: str


def read_devices(path: str | Path) -> dict[int, str]:
    """MAC (48-bit int) -> device type, from ``mac,device_type`` lines (header optional)."""
    devices = {}
    with open(path, newline="") as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            if not row or row[0].strip().lower() in ("mac", "macaddress") or row[0][:1] == "#":
                continue
            if len(row) < 2 or not row[1].strip():
                raise DatasetError(f"{path}:{number}: expected mac,device_type")
            try:
                devices[mac_to_int(row[0])] = row[1].strip()
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: bad MAC {row[0]!r}") from exc
    if not devices:
        raise DatasetError(f"{path}: no devices")
    return devices


def flow_files(data_dir: str | Path, fmt: str = "auto") -> list[Path]:
    """The record files below ``data_dir/lab`` (or ``data_dir`` without a ``lab`` folder);
    ``auto`` takes IPFIX if any, else JSON."""
    root = Path(data_dir) / "lab" if (Path(data_dir) / "lab").is_dir() else Path(data_dir)
    kinds = ("ipfix", "json") if fmt == "auto" else (fmt,)
    for kind in kinds:
        found = sorted(p for pattern in FORMATS[kind] for p in root.rglob(pattern))
        found = [p for p in found if p.name != "changes.json"]
        if found:
            return found
    raise DatasetError(f"{root}: no flow record files ({', '.join(kinds)})")


def read_flows(files: list[Path]) -> np.ndarray:
    """All records of the files, concatenated, as a flow table."""
    from agent.ipfix import decode_file
    from agent.ipfix.smjson import read_smjson

    parts = []
    for path in files:
        reader = decode_file if path.suffix == ".ipfix" else read_smjson
        parts.append(reader(path))
        log.info("read file=%s records=%d", path, len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros(0, FLOW_DTYPE)


def label_flows(flows: np.ndarray, devices: dict[int, str], classes: list[str]) -> np.ndarray:
    """Class index of each flow by source MAC, else destination MAC; -1 if neither."""
    index = {name: k for k, name in enumerate(classes)}
    macs = np.array(sorted(devices), dtype=np.uint64)
    kinds = np.array([index.get(devices[m], -1) for m in macs.tolist()], dtype=np.int32)

    def lookup(column: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(macs, column), 0, len(macs) - 1)
        return np.where(macs[pos] == column, kinds[pos], -1)

    by_source = lookup(flows["sourceMacAddress"])
    by_destination = lookup(flows["destinationMacAddress"])
    return np.where(by_source >= 0, by_source, by_destination).astype(np.int32)


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """``2020-01-01:2020-01-31,...`` -> [(start ms, end ms exclusive)], UTC days."""
    ranges = []
    for part in text.split(","):
        try:
            first, last = (np.datetime64(s.strip(), "D") for s in part.split(":"))
        except ValueError as exc:
            raise DatasetError(f"bad date range {part!r}: use YYYY-MM-DD:YYYY-MM-DD") from exc
        start = int(first.astype("datetime64[ms]").astype(np.int64))
        end = int(last.astype("datetime64[ms]").astype(np.int64)) + DAY_MS
        ranges.append((start, end))
    return ranges


def period_mask(start_ms: np.ndarray, part: str, ranges: list | None = None) -> np.ndarray:
    """Rows in the ``train`` or ``test`` period: the given ranges, else the paper's."""
    if ranges is not None:
        mask = np.zeros(len(start_ms), bool)
        for first, end in ranges:
            mask |= (start_ms >= first) & (start_ms < end)
        return mask

    day = start_ms.astype("datetime64[ms]").astype("datetime64[D]")
    month_start = day.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    mday = (day - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    if part == "train":
        return (month == 1) | ((month == 3) & (mday <= 15))
    return ((month == 3) & (mday >= 16)) | (month == 4)


def digest(paths: list[Path]) -> str:
    """sha256 over the files' names and contents, naming the data a model came from."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load(
    data_dir: str | Path,
    part: str,
    *,
    ranges: list | None = None,
    classes: list[str] | None = None,
    fmt: str = "auto",
) -> Dataset:
    """Remote labelled flows of one period; classes default to every device type seen."""
    root = Path(data_dir)
    devices_path = root / DEVICES
    if not devices_path.is_file():
        raise DatasetError(f"{devices_path}: missing (mac,device_type per line)")
    devices = read_devices(devices_path)
    files = flow_files(root, fmt)
    flows = read_flows(files)

    flows = flows[period_mask(flows["flowStartMilliseconds"], part, ranges)]
    flows = flows[remote_mask(flows)]
    if classes is None:
        known = label_flows(flows, devices, sorted(set(devices.values())))
        classes = sorted({sorted(set(devices.values()))[k] for k in np.unique(known[known >= 0])})
    y = label_flows(flows, devices, classes)
    keep = y >= 0
    log.info(
        "dataset dir=%s part=%s remote=%d labelled=%d classes=%d",
        root,
        part,
        len(flows),
        int(keep.sum()),
        len(classes),
    )
    if not keep.any():
        raise DatasetError(f"{root}: no labelled remote records in the {part} period")
    order = np.argsort(flows["flowStartMilliseconds"][keep], kind="stable")
    return Dataset(
        flows=flows[keep][order],
        y=y[keep][order],
        classes=list(classes),
        digest=digest(files + [devices_path]),
    )
