"""``python -m agent dump PATH``: records of an IPFIX file or Super Mediator JSON as JSON lines.

PATH is an IPFIX file (messages back to back), a Super Mediator JSON-lines file, or
``-`` for standard input; the format is told from the first octets. Each flow record
becomes one JSON object keyed by element names: integers as numbers, addresses as
strings, timestamps as ISO-8601 UTC with milliseconds, octet arrays as hex; with
``--options`` each options record follows as ``{"options": {...}}``. Malformed
input is reported on stderr with the message offset and the reason; every record that
could be decoded is still printed, and the exit status is 1.
"""

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from agent.errors import DecodeError
from agent.ipfix import Decoder, iter_messages


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m agent dump", description=__doc__)
    parser.add_argument("path", help="IPFIX file, Super Mediator JSON file, or - for stdin")
    parser.add_argument("--options", action="store_true", help="also print options records")
    args = parser.parse_args(argv)
    logging.getLogger("agent.ipfix").setLevel(logging.ERROR)

    try:
        stream = sys.stdin.buffer if args.path == "-" else open(args.path, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"dump: cannot open {args.path}: {exc.strerror}", file=sys.stderr)
        return 2
    with stream:
        head = _peek(stream)
        if head.lstrip()[:1] == b"{":
            return _dump_smjson(args.path)
        return _dump_ipfix(args.path, stream, args.options)


def _peek(stream) -> bytes:
    if hasattr(stream, "peek"):
        return stream.peek(64)[:64]
    return b""


def _dump_ipfix(path: str, stream, options: bool) -> int:
    decoder = Decoder()
    session = f"file:{path}"
    failed = False
    out = sys.stdout
    try:
        for offset, message in iter_messages(stream):
            result = decoder.decode_message(message, session, records=True)
            for record in result.records:
                out.write(json.dumps(_jsonable(record)) + "\n")
            if options:
                for record in result.options:
                    out.write(json.dumps({"options": _jsonable(record)}) + "\n")
            for error in result.errors:
                failed = True
                print(f"dump: {path}: message at offset {offset}: {error}", file=sys.stderr)
    except DecodeError as exc:
        failed = True
        where = f"message at offset {exc.offset}: " if exc.offset is not None else ""
        print(f"dump: {path}: {where}{exc.reason}", file=sys.stderr)
    out.flush()
    return 1 if failed else 0


def _dump_smjson(path: str) -> int:
    from agent.ipfix.smjson import iter_smjson_records

    counters: dict[str, int] = {}
    try:
        for record in iter_smjson_records(path, counters=counters, strict=False):
            sys.stdout.write(json.dumps(_jsonable(record)) + "\n")
    except DecodeError as exc:
        print(f"dump: {path}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    malformed = counters.get("malformed", 0)
    if malformed:
        print(f"dump: {path}: {malformed} malformed line(s) skipped", file=sys.stderr)
    return 1 if malformed else 0


def _jsonable(value):
    """A record value in the JSON form ``dump`` promises."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if hasattr(value, "item"):
        return value.item()
    return value
