"""``python -m benchmarks [--quick] [--only NAME ...] --out DIR``.

Runs each ``benchmarks/bench_<name>.py`` (its ``run(quick) -> dict``) in this process,
one after the other so that no two compete for the cores, and writes ``results.json``
(figures plus a description of the machine) and ``results.md`` (one table per benchmark).
"""

import argparse
import importlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the benchmarks in this folder, in a stable order."""
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def machine() -> dict:
    """What the figures were measured on."""
    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    return info


def to_markdown(results: dict) -> str:
    """One section per benchmark: its rows as a table, scalars as a list."""
    lines = ["# Benchmark results", ""]
    lines += [f"- {k}: {v}" for k, v in results["machine"].items()]
    for name, figures in results["benchmarks"].items():
        lines += ["", f"## {name}", ""]
        rows = figures.get("rows") if isinstance(figures, dict) else None
        if rows:
            keys = list(rows[0])
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            for row in rows:
                lines.append("| " + " | ".join(_cell(row.get(k)) for k in keys) + " |")
            lines.append("")
        for key, value in figures.items() if isinstance(figures, dict) else []:
            if key != "rows":
                lines.append(f"- {key}: {_cell(value)}")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--out", default="out/bench", help="folder for results")
    parser.add_argument("--quick", action="store_true", help="tiny inputs (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=available(), help="these benchmarks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    results = {"machine": machine(), "quick": args.quick, "benchmarks": {}}
    failed = []
    for name in args.only or available():
        module = importlib.import_module(f"benchmarks.bench_{name}")
        start = time.perf_counter()
        log.info("benchmark %s: running", name)
        try:
            results["benchmarks"][name] = module.run(quick=args.quick)
        except Exception as exc:
            log.exception("benchmark %s failed", name)
            results["benchmarks"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
        log.info("benchmark %s: %.1f s", name, time.perf_counter() - start)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(to_markdown(results))
    print(f"wrote {out / 'results.md'} and {out / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
