"""``python -m agent run --config FILE``: the edge agent daemon."""

import argparse
import asyncio
import logging
import sys

from agent.errors import AgentError


def setup_logging(level: str) -> None:
    """One line per event on stderr, for procd or systemd to collect."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str]) -> int:
    """Parse arguments, check the config and the bundle, serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m agent run", description=__doc__)
    parser.add_argument("--config", required=True, help="the agent's TOML config file")
    args = parser.parse_args(argv)

    from agent.app import Agent
    from agent.config import load_config

    try:
        config = load_config(args.config)
        setup_logging(config.agent["log_level"])
        agent = Agent(config)
    except AgentError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    asyncio.run(agent.run())
    return 0
