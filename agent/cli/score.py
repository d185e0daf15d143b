"""``python -m agent score --bundle B PATH``: each remote record's prediction as JSON.

One line per remote record of an IPFIX or Super Mediator JSON file: its index in the
file, start time, protocol and ends, the predicted device type, the confidence and
whether the class thresholds accepted it. Local flows (never seen by an edge router) are
skipped, as the agent skips them.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from agent.errors import AgentError
from agent.flows import unpack_address


def main(argv: list[str]) -> int:
    """Score every remote record of one file and print the predictions."""
    parser = argparse.ArgumentParser(prog="python -m agent score", description=__doc__)
    parser.add_argument("path", type=Path, help="IPFIX or Super Mediator JSON file")
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    parser.add_argument("--threshold", choices=("lambda1", "lambda2"), default="lambda1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from agent.bundle import load_bundle
    from agent.cli.replay import read_flows
    from agent.features import feature_matrix, remote_mask
    from agent.score import score

    try:
        bundle = load_bundle(args.bundle)
    except AgentError as exc:
        print(f"score: {exc}", file=sys.stderr)
        return 2

    first = 0
    for flows in read_flows(args.path):
        index = np.flatnonzero(remote_mask(flows))
        remote = flows[index]
        label, confidence, accepted = score(bundle, feature_matrix(remote), args.threshold)
        for i, row in enumerate(remote):
            version = int(row["ipVersion"])
            line = {
                "index": first + int(index[i]),
                "flowStartMilliseconds": int(row["flowStartMilliseconds"]),
                "protocolIdentifier": int(row["protocolIdentifier"]),
                "sourceAddress": unpack_address(row["sourceAddress"], version),
                "sourceTransportPort": int(row["sourceTransportPort"]),
                "destinationAddress": unpack_address(row["destinationAddress"], version),
                "destinationTransportPort": int(row["destinationTransportPort"]),
                "device_type": bundle.classes[int(label[i])],
                "confidence": round(float(confidence[i]), 6),
                "accepted": bool(accepted[i]),
            }
            sys.stdout.write(json.dumps(line) + "\n")
        first += len(flows)
    return 0
