"""``python -m compile COMMAND``: each command lives in its own module, imported on use."""

import importlib
import sys

COMMANDS = {
    "testbed": ("compile.testbed.cli", "write the synthetic lab capture as YAF-format IPFIX"),
    "meter": ("compile.meter.cli", "turn a pcap into YAF-format biflow records"),
    "train": ("compile.train", "tune, train and compile the forest into a model bundle"),
    "evaluate": ("compile.evaluate", "score the test period and write the report"),
    "cross": ("compile.cross", "build a bundle's model library for another CPU"),
    "demo": ("compile.demo", "testbed -> train -> evaluate -> agent -> store, end to end"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m compile COMMAND [ARGS]\n\ncommands:", file=sys.stderr)
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:9} {text}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
