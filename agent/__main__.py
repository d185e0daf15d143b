"""``python -m agent COMMAND``: each command lives in its own module, imported on use."""

import importlib
import sys

COMMANDS = {
    "dump": ("agent.cli.dump", "print IPFIX or Super Mediator JSON records as JSON lines"),
    "run": ("agent.cli.run", "the daemon: receive IPFIX, score, push summaries"),
    "replay": ("agent.cli.replay", "the daemon's pipeline over files"),
    "score": ("agent.cli.score", "each remote record's predicted type as JSON lines"),
    "uci": ("agent.cli.uci", "turn an OpenWrt UCI config into the agent's TOML config"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m agent COMMAND [ARGS]\n\ncommands:", file=sys.stderr)
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:8} {text}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
