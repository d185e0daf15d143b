"""How long the testbed takes: the demo scale (quick) or the paper's volume (scale 1).

python -m benchmarks.bench_testbed [--full]
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from compile.testbed import cli

DEMO_SCALE = 0.02


def run(quick: bool) -> dict:
    """Write a whole testbed into a temporary folder; figures of time and volume."""
    scale = DEMO_SCALE if quick else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        cpu = time.process_time()
        summary = cli.run(Path(tmp) / "tb", scale, seed=1, n_homes=0, with_json=False)
        wall = time.monotonic() - started
        cpu = time.process_time() - cpu
        size = sum(p.stat().st_size for p in (Path(tmp) / "tb").rglob("*") if p.is_file())
    return {
        "scale": scale,
        "records": summary["records"],
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "records_per_s": round(summary["records"] / wall),
        "bytes": size,
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=1))
