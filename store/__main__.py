"""Command line: ``python -m store serve ...`` and ``python -m store query ...``."""

import argparse
import json
import logging
import sys

from store import app, queries, report
from store.config import load_agents, load_device_types
from store.database import DEFAULT_URL, TRANSIENT_ERRORS, Database
from store.errors import StoreError
from store.summary import EARLIEST_TIME, MAX_CLOCK_SKEW, Rules

QUERIES = {
    "homes": queries.homes,
    "devices": queries.devices,
    "trust": queries.trust,
    "alerts": queries.alerts,
    "agents": queries.agents,
}
FILTERS = {
    "homes": ("home", "since", "limit"),
    "devices": ("home", "device_type", "since", "limit"),
    "trust": ("home", "device_type", "since", "limit"),
    "alerts": ("home", "device_type", "level", "run_level", "limit"),
    "agents": (),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for both commands."""
    parser = argparse.ArgumentParser(prog="python -m store", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ingest service, JSON API and page")
    serve.add_argument("--db", default=DEFAULT_URL, help="sqlite:///path or postgresql://...")
    serve.add_argument("--agents", required=True, help="agents file (TOML) with secrets")
    serve.add_argument("--listen", default=app.DEFAULT_LISTEN, help="host:port")
    types = serve.add_mutually_exclusive_group()
    types.add_argument(
        "--bundle",
        help="model bundle (folder or manifest.json): its classes are the known device types",
    )
    types.add_argument("--device-types", help="text file, one known device type per line")
    serve.add_argument(
        "--replay-window",
        type=float,
        default=app.DEFAULT_REPLAY_WINDOW,
        help="seconds a signed request stays valid",
    )
    serve.add_argument(
        "--max-body",
        type=int,
        default=app.DEFAULT_MAX_BODY,
        help="largest summary accepted, bytes",
    )
    serve.add_argument(
        "--alert-level",
        type=float,
        default=queries.DEFAULT_ALERT_LEVEL,
        help="trust below this is an alert on the page and API",
    )
    serve.add_argument(
        "--alert-run-level",
        type=float,
        default=queries.DEFAULT_RUN_LEVEL,
        help="two windows in three with raw trust under 1 and trust below this are an "
        "alert too (0 = off)",
    )
    serve.add_argument(
        "--earliest-time",
        type=float,
        default=EARLIEST_TIME,
        help="times before this (unix seconds) are rejected as absurd",
    )
    serve.add_argument(
        "--max-clock-skew",
        type=float,
        default=MAX_CLOCK_SKEW,
        help="seconds a time may lie in the store's future",
    )
    serve.add_argument(
        "--processes", type=int, default=1, help="serving processes sharing the port and DB"
    )
    serve.add_argument("--log-level", default="INFO")

    query = commands.add_parser("query", help="print homes, devices, trust, alerts, agents")
    query.add_argument("what", choices=sorted(QUERIES))
    query.add_argument("--db", default=DEFAULT_URL)
    query.add_argument("--json", action="store_true", help="JSON instead of a table")
    query.add_argument("--home")
    query.add_argument("--device-type")
    query.add_argument(
        "--since", type=queries.parse_time, help="unix seconds or ISO 8601 time (UTC unless zoned)"
    )
    query.add_argument("--limit", type=int, default=queries.DEFAULT_LIMIT)
    query.add_argument(
        "--level", type=float, default=queries.DEFAULT_ALERT_LEVEL, help="alert level for 'alerts'"
    )
    query.add_argument(
        "--run-level",
        type=float,
        default=queries.DEFAULT_RUN_LEVEL,
        help="run level for 'alerts' (two low windows in three; 0 = off)",
    )
    return parser


def run_serve(args: argparse.Namespace) -> None:
    """Load the configuration and serve until interrupted."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    device_types = None
    if args.bundle or args.device_types:
        device_types = load_device_types(args.bundle or args.device_types)
    else:
        logging.getLogger("store").warning(
            "no --bundle or --device-types: any device type name is accepted"
        )
    settings = app.Settings(
        db_url=args.db,
        secrets=load_agents(args.agents),
        rules=Rules(device_types, args.earliest_time, args.max_clock_skew),
        replay_window=args.replay_window,
        max_body=args.max_body,
        alert_level=args.alert_level,
        alert_run_level=args.alert_run_level,
    )
    app.serve(settings, args.listen, args.processes)


def run_query(args: argparse.Namespace) -> str:
    """The query's answer as a table or JSON text."""
    db = Database(args.db)
    kwargs = {
        name: getattr(args, name) for name in FILTERS[args.what] if getattr(args, name) is not None
    }
    try:
        conn = db.connect(autocommit=True)
    except TRANSIENT_ERRORS as exc:
        raise StoreError(f"cannot open {args.db}: {exc}") from exc
    try:
        if not _has_schema(conn):
            raise StoreError(f"{args.db}: no store schema (run 'serve' once first)")
        rows = QUERIES[args.what](db, conn, **kwargs)
    finally:
        conn.close()
    return json.dumps(rows, indent=2) if args.json else report.table(rows)


def _has_schema(conn) -> bool:
    """Whether the store's tables exist in this database."""
    try:
        conn.execute("SELECT 1 FROM schema_version").fetchall()
    except Exception:  # noqa: BLE001 - any failure means the tables are not there
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            run_serve(args)
        else:
            print(run_query(args))
    except (StoreError, OSError) as exc:
        print(f"store: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
