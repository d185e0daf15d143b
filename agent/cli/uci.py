"""``python -m agent uci UCI_FILE``: write the agent's TOML config from OpenWrt's UCI file.

The init script runs this before each start and reload; a bad option stops the start with
a message naming the option and its line, and the previous TOML file is left in place.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from agent.errors import ConfigError
from agent.uci import uci_file_to_toml


def write_atomically(path: Path, text: str, mode: int = 0o640) -> None:
    """Replace ``path`` with ``text`` so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    """Command line: UCI file in, TOML to ``--output`` (or standard output)."""
    parser = argparse.ArgumentParser(prog="python -m agent uci", description=__doc__)
    parser.add_argument("uci_file", type=Path, help="UCI config, e.g. /etc/config/iotwatch")
    parser.add_argument("-o", "--output", type=Path, help="TOML file to write (default: stdout)")
    parser.add_argument("--section", help="name of the 'config agent' section to use")
    args = parser.parse_args(argv)

    try:
        text = uci_file_to_toml(args.uci_file, args.section)
    except ConfigError as exc:
        print(f"agent uci: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text)
    return 0
