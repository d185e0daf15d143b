"""``python -m compile testbed``: write the synthetic lab capture and the ISP's view.

Layout of ``--out DIR``:
  devices.csv              mac,device_type,category,remote_only (the only label source)
  lab/YYYY-MM-DD.ipfix     one YAF-format IPFIX file per captured day, pre-NAT
  lab/YYYY-MM-DD.json      the same as Super Mediator JSON lines (with --json)
  changes.json             the injected behaviour changes
  isp/homes.json           ground truth per home (with --homes H)
  isp/stream.ipfix         the homes' post-NAT records, time-ordered (with --homes H)
  testbed.json             parameters, seed and counts per device, service and day
"""

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from agent.features import remote_mask
from agent.flows import int_to_mac
from agent.ipfix.smjson import write_smjson
from agent.ipfix.writer import write_yaf_file

from . import changes, homes
from .calendar import capture_days
from .devices import DEVICES, mac_of
from .generate import SERVICES, Lab, service_of

log = logging.getLogger(__name__)
MAX_SCALE = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m compile testbed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--scale",
        type=float,
        default=0.02,
        help="1 = the paper's volume (about 9 million records); default 0.02",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--homes", type=int, default=0, help="homes of the ISP view (default 0)")
    p.add_argument("--json", action="store_true", help="also write Super Mediator JSON")
    p.add_argument(
        "--plug-onset",
        type=float,
        default=changes.PLUG_ONSET,
        help="share (0..1) of the plug's drift already there on the first test day "
        f"(default {changes.PLUG_ONSET}; 0 = a drift that starts from nothing)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log each day")
    return p


def _check(args) -> str | None:
    if not 0 < args.scale <= MAX_SCALE:
        return f"--scale must be in (0, {MAX_SCALE}], got {args.scale}"
    if args.seed < 0:
        return f"--seed must be >= 0, got {args.seed}"
    if not 0 <= args.plug_onset <= 1:
        return f"--plug-onset must be in [0, 1], got {args.plug_onset}"
    if args.homes < 0:
        return f"--homes must be >= 0, got {args.homes}"
    if args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} exists and is not a folder"
    return None


def write_devices(path: Path) -> None:
    """devices.csv: MAC -> device type; remote_only is 1 for the devices of the remote
    study (they talk to the Internet), 0 for the three local-only ones."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["mac", "device_type", "category", "remote_only"])
        for i, dev in enumerate(DEVICES):
            w.writerow([mac_of(i), dev.name, dev.category, 0 if dev.local_only else 1])


def _write_flows(path: Path, flows: np.ndarray, with_json: bool, domain: int = 0) -> None:
    """One IPFIX file (and its JSON copy); the export time is the last flow end, so that
    the same records always give the same bytes."""
    export = int(flows["flowEndMilliseconds"].max() // 1000) if len(flows) else 0
    write_yaf_file(path, flows, domain=domain, export_time=export)
    if with_json:
        write_smjson(path.with_suffix(".json"), flows)


def _day_counts(day_flows) -> dict:
    flows = day_flows.flows
    remote = remote_mask(flows)
    service = service_of(flows)
    out = {}
    for i, dev in enumerate(DEVICES):
        mine = day_flows.device == i
        counts = np.bincount(service[mine & remote], minlength=len(SERVICES))
        out[dev.name] = {
            "remote": int((mine & remote).sum()),
            "local": int((mine & ~remote).sum()),
            **{s: int(c) for s, c in zip(SERVICES, counts) if c},
        }
    return out


def run(
    out: Path,
    scale: float,
    seed: int,
    n_homes: int = 0,
    with_json: bool = False,
    plug_onset: float = changes.PLUG_ONSET,
) -> dict:
    """Write the whole testbed under ``out``; the summary written as testbed.json."""
    started = time.monotonic()
    (out / "lab").mkdir(parents=True, exist_ok=True)
    write_devices(out / "devices.csv")
    manifest = changes.manifest(plug_onset)
    (out / "changes.json").write_text(json.dumps(manifest, indent=1) + "\n")

    lab = Lab(scale, seed, plug_onset)
    per_day, total = {}, 0
    for day in capture_days():
        day_flows = lab.day(day)
        _write_flows(out / "lab" / f"{day.date.isoformat()}.ipfix", day_flows.flows, with_json)
        per_day[day.date.isoformat()] = {
            "interaction": day.interaction,
            "period": day.period,
            "records": len(day_flows.flows),
            "devices": _day_counts(day_flows),
        }
        total += len(day_flows.flows)
        log.info("day %s: %d records", day.date, len(day_flows.flows))

    home_list = homes.make_homes(n_homes, seed) if n_homes else []
    stream_records = 0
    if home_list:
        (out / "isp").mkdir(exist_ok=True)
        (out / "isp" / "homes.json").write_text(
            json.dumps(homes.homes_manifest(home_list), indent=1) + "\n"
        )
        test_days = [d for d in capture_days() if d.period == "test"]
        parts = [homes.home_day(lab, i, h, d) for d in test_days for i, h in enumerate(home_list)]
        stream = np.concatenate(parts)
        stream = stream[np.argsort(stream["flowStartMilliseconds"], kind="stable")]
        _write_flows(out / "isp" / "stream.ipfix", stream, False, domain=1)
        stream_records = len(stream)

    summary = {
        "scale": scale,
        "seed": seed,
        "plug_onset": plug_onset,
        "homes": n_homes,
        "json": with_json,
        "records": total,
        "stream_records": stream_records,
        "order": "flowStartMilliseconds",
        "devices": {int_to_mac(int(lab.device_mac[i])): d.name for i, d in enumerate(DEVICES)},
        "days": per_day,
    }
    (out / "testbed.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log.info(
        "testbed: %d records, %d in the ISP stream, %.1f s",
        total,
        stream_records,
        time.monotonic() - started,
    )
    return summary


def main(argv: list[str]) -> int:
    """Entry point of ``python -m compile testbed``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    problem = _check(args)
    if problem:
        print(f"testbed: {problem}", file=sys.stderr)
        return 2
    started = time.monotonic()
    summary = run(args.out, args.scale, args.seed, args.homes, args.json, args.plug_onset)
    print(
        f"testbed: {summary['records']} records over {len(summary['days'])} days, "
        f"{summary['stream_records']} in the ISP stream, in {time.monotonic() - started:.1f} s"
        f" -> {args.out}"
    )
    return 0
