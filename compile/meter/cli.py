"""``python -m compile meter CAPTURE --out FILE [--json]``: a capture to YAF-format records.

Writes the biflow records YAF 2.16 would write with ``--flow-stats --mac`` for the same
capture: YAF-format IPFIX by default (streamed: written as flows close, so the capture's length
does not bound memory), Super Mediator JSON lines with ``--json``. A
summary (packets read, metered, skipped by reason, flows) goes to standard error.
"""

import argparse
import logging
import sys
import time

import numpy as np

from agent.flows import FLOW_DTYPE
from compile.meter.capture import CaptureError
from compile.meter.meter import ACTIVE_TIMEOUT, IDLE_TIMEOUT, iter_meter


def _write_ipfix(path: str, parts) -> None:
    """Stream the flows into one IPFIX file; each part re-sends its templates."""
    from agent.ipfix.writer import yaf_messages

    written, export_time = 0, int(time.time())
    with open(path, "wb") as out:
        for flows in parts:
            out.writelines(yaf_messages(flows, sequence_start=written, export_time=export_time))
            written += len(flows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compile meter",
        description="Meter a pcap/pcapng capture into YAF 2.16 biflow records.",
    )
    parser.add_argument("capture", help="pcap or pcapng file (Ethernet)")
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument(
        "--json", action="store_true", help="write Super Mediator JSON lines instead of IPFIX"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=IDLE_TIMEOUT,
        help=f"seconds (default {IDLE_TIMEOUT:g}, as YAF)",
    )
    parser.add_argument(
        "--active-timeout",
        type=float,
        default=ACTIVE_TIMEOUT,
        help=f"seconds (default {ACTIVE_TIMEOUT:g}, as YAF)",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "native", "python"),
        default="auto",
        help="flow table engine (default: the C one when built)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the process exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    counters: dict[str, int] = {}
    try:
        parts = iter_meter(
            args.capture,
            idle_timeout=args.idle_timeout,
            active_timeout=args.active_timeout,
            engine=args.engine,
            counters=counters,
        )
        if args.json:
            from agent.ipfix.smjson import write_smjson

            flows = list(parts)
            write_smjson(args.out, np.concatenate(flows) if flows else np.zeros(0, FLOW_DTYPE))
        else:
            _write_ipfix(args.out, parts)
    except (CaptureError, ValueError, RuntimeError) as exc:
        print(f"meter: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"meter: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return 2

    summary = " ".join(f"{name}={value}" for name, value in counters.items() if value)
    print(f"meter: {args.capture} -> {args.out}: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
