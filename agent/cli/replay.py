"""``python -m agent replay --bundle B PATH...``: the daemon's pipeline over files.

Reads IPFIX files (messages back to back) or Super Mediator JSON lines, runs the same
pipeline as the daemon with trust windows moved on by flow end times, and writes each
summary as a JSON line on stdout, or pushes them to ``--upstream``.

Homes come from ``--config`` (its [homes], [model], [trust] and [agent] sections) or
``--prefix``; with neither, every initiator address is a home. Without a hash key file
the home ids are keyed with a random per-run key.
"""

import argparse
import json
import logging
import secrets
import sys
import tempfile
from pathlib import Path

import numpy as np

from agent.errors import AgentError, DecodeError

log = logging.getLogger(__name__)
READ_BATCH = 8192


def read_flows(path: Path, decoder=None):
    """Yield flow-table arrays from an IPFIX or Super Mediator JSON file, in file order."""
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if path.suffix in (".json", ".jsonl") or head.startswith(b"{"):
        from agent.ipfix.smjson import read_smjson

        yield read_smjson(path)
        return

    from agent.ipfix import Decoder, iter_messages

    decoder = decoder or Decoder()
    parts, rows = [], 0
    with open(path, "rb") as stream:
        try:
            for offset, message in iter_messages(stream):
                result = decoder.decode_message(message, str(path))
                if result.error is not None:
                    log.warning("%s offset %d: %s", path, offset, result.error)
                parts.append(result.flows)
                rows += len(result.flows)
                if rows >= READ_BATCH:
                    yield np.concatenate(parts)
                    parts, rows = [], 0
        except DecodeError as exc:
            log.warning("%s: %s", path, exc)
    if rows:
        yield np.concatenate(parts)


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent replay", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="IPFIX or Super Mediator JSON")
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    parser.add_argument("--config", type=Path, help="agent config: homes, model, trust")
    parser.add_argument(
        "--prefix",
        action="append",
        default=[],
        help="subscriber prefix (CIDR), repeatable; overrides the config's",
    )
    parser.add_argument("--threshold", choices=("lambda1", "lambda2"))
    parser.add_argument("--window", type=float, help="trust window in seconds")
    parser.add_argument("--upstream", help="push summaries to this store url instead")
    parser.add_argument("--secret-file", type=Path, help="secret for --upstream")
    parser.add_argument("--agent-id", help="agent id in the summaries")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the store at the end (default 60)",
    )
    return parser.parse_args(argv)


def _homes(args, config):
    from agent.config import read_or_create_hash_key
    from agent.homes import Homes, SubscriberTable

    if config is not None and not args.prefix:
        from agent.app import build_homes

        return build_homes(config)
    prefixes = args.prefix or ["0.0.0.0/0", "::/0"]
    if config is not None:
        section = config.homes
        table = SubscriberTable.read(section["subscribers"]) if section["subscribers"] else None
        return Homes(
            prefixes,
            hash_key=read_or_create_hash_key(section["hash_key_file"]),
            home_prefix_v4=section["home_prefix_v4"],
            home_prefix_v6=section["home_prefix_v6"],
            max_homes=section["max_homes"],
            subscribers=table,
        )
    return Homes(prefixes, hash_key=secrets.token_bytes(32))


def main(argv: list[str]) -> int:
    """Replay files through the pipeline; 0 on success, 1 if the store kept summaries."""
    args = _options(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    from agent.bundle import load_bundle
    from agent.config import load_config, read_secret
    from agent.metrics import Metrics
    from agent.pipeline import Batcher, Pipeline
    from agent.summaries import Summaries

    try:
        config = load_config(args.config) if args.config else None
        bundle = load_bundle(args.bundle)
        homes = _homes(args, config)
    except AgentError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2

    method = args.threshold or (config.model["threshold"] if config else "lambda1")
    window = args.window or (config.trust["window"] if config else None)
    agent_id = args.agent_id or (config.agent["id"] if config else "replay")
    metrics = Metrics()
    spool = uploader = None
    with tempfile.TemporaryDirectory(prefix="agent-replay-") as spool_dir:
        if args.upstream:
            from agent.spool import Spool
            from agent.upstream import Uploader, make_target

            secret_file = args.secret_file or (config.upstream["secret_file"] if config else None)
            secret = read_secret(secret_file) if secret_file else None
            spool = Spool(spool_dir, 1 << 30, "drop-newest", metrics)
            uploader = Uploader(make_target(args.upstream, agent_id, secret, 5.0), spool, metrics)
            uploader.start()

            def sink(records):
                spool.append([(seq, payload) for seq, payload, _ in records])
                uploader.wake.set()
        else:

            def sink(records):
                for _, _, body in records:
                    sys.stdout.write(json.dumps(body) + "\n")
                sys.stdout.flush()

        summaries = Summaries(agent_id, bundle.digest, metrics, sink)
        pipeline = Pipeline(
            bundle, homes, summaries, metrics, method=method, window=window, by_flow_time=True
        )
        batcher = Batcher(pipeline, config.model["batch_size"] if config else 4096)
        for path in args.paths:
            for flows in read_flows(path):
                metrics.inc("records_in", len(flows))
                batcher.add(flows)
        batcher.flush()
        pipeline.finish()
        log.info("replay done: %s", metrics.snapshot())
        if uploader is None:
            return 0
        delivered = uploader.drain(args.drain_timeout)
        uploader.stop()
        if not delivered:
            print(
                f"replay: store kept refusing; {spool.depth} summaries not delivered",
                file=sys.stderr,
            )
            return 1
        return 0
