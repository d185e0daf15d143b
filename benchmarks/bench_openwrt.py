"""What the agent costs on a router: model library size per CPU, resident memory, footprint.

- Library size: a stand-in for the default model (``compile train`` defaults: 100 trees,
  at most 256 leaves per tree, quantized thresholds; 26 classes and 28 features on
  synthetic rows, since no trained default bundle is at hand) is generated once and built
  by ``compile.cross`` for the host and each router CPU. ``quick`` uses 10 trees.
- Resident memory: a fresh interpreter imports the agent's modules, loads the host library
  through ``agent.predictor`` and scores 1,024 rows; VmRSS / VmHWM from /proc.
- Footprint: the agent package as the OpenWrt package installs it (byte-compiled, sources
  removed) plus the package's own files, excluding Python, numpy, cffi and msgpack.

    .venv/bin/python -m benchmarks.bench_openwrt [--quick]
"""

import argparse
import json
import py_compile
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from compile import build, cross

ROOT = Path(__file__).resolve().parent.parent
TARGETS = [
    "x86_64-linux-gnu",
    "aarch64-linux-gnu",
    "arm-linux-gnueabihf",
    "mipsel-linux-gnu",
    "mips-linux-gnu",
]
N_CLASSES, N_FEATURES = 26, 28

_RSS_PROBE = """
import json, sys, numpy as np
def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out
import agent.config, agent.features, agent.ipfix, agent.score, agent.bundle, agent.upstream
before = status()
from agent.predictor import Predictor
p = Predictor(sys.argv[1])
X = (np.random.default_rng(0).random((1024, p.n_features)) * 1000).astype(np.float32)
p.predict_proba(X)
print(json.dumps({"imports": before, "loaded": status()}))
"""


def stand_in_forest(trees: int, seed: int = 0):
    """A forest shaped like the default model, fit on synthetic counts and sizes."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    n = 60_000
    X = (rng.random((n, N_FEATURES)) * 10.0 ** rng.integers(0, 6, (n, 1))).round()
    mix = X[:, :6] @ rng.random(6) + rng.normal(0, 50, n)
    y = np.digitize(np.log1p(np.abs(mix)), np.linspace(0, 14, N_CLASSES - 1))
    forest = RandomForestClassifier(
        n_estimators=trees, max_features=5, max_leaf_nodes=256, random_state=seed, n_jobs=2
    )
    return forest.fit(X.astype(np.float32), y)


def library_sizes(srcpkg: Path, work: Path) -> dict:
    """Build the source package for every target; bytes and seconds per target."""
    figures = {}
    for triple in TARGETS:
        cc = "gcc" if triple == "x86_64-linux-gnu" else f"{triple}-gcc"
        out = work / triple / "model.so"
        started = time.monotonic()
        cross.build_library(srcpkg, out, cc)
        figures[triple] = {
            "library_bytes": out.stat().st_size,
            "build_seconds": round(time.monotonic() - started, 1),
        }
    return figures


def resident_memory(library: Path) -> dict:
    """VmRSS after importing the agent, and after loading the library and scoring."""
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(library)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def footprint() -> dict:
    """Installed bytes of the agent package (.pyc only) and the OpenWrt package's files."""
    sources = [p for p in (ROOT / "agent").rglob("*.py") if "__pycache__" not in p.parts]
    with tempfile.TemporaryDirectory() as tmp:
        pyc = 0
        for i, source in enumerate(sources):
            target = Path(tmp) / f"{i}.pyc"
            py_compile.compile(str(source), cfile=str(target), doraise=True)
            pyc += target.stat().st_size
    data = sum(
        p.stat().st_size
        for p in (ROOT / "agent").rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    )
    package = sum(
        (ROOT / "openwrt" / "files" / n).stat().st_size
        for n in ("iotwatch.init", "iotwatch.config", "iotwatch.keep")
    )
    return {
        "agent_modules": len(sources),
        "agent_source_bytes": sum(p.stat().st_size for p in sources),
        "agent_pyc_bytes": pyc,
        "agent_other_bytes": data,
        "package_files_bytes": package,
        "installed_bytes": pyc + data + package,
    }


def run(quick: bool) -> dict:
    """All three figures; ``quick`` builds a 10-tree stand-in instead of 100 trees."""
    trees = 10 if quick else 100
    with tempfile.TemporaryDirectory(prefix="bench-openwrt-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        forest = stand_in_forest(trees)
        gendir = build.generate(forest, work / "gen")
        build.write_srcpkg(gendir, work / "srcpkg.zip")
        generate_seconds = round(time.monotonic() - started, 1)
        libraries = library_sizes(work / "srcpkg.zip", work / "lib")
        memory = resident_memory(work / "lib" / "x86_64-linux-gnu" / "model.so")
        srcpkg_bytes = (work / "srcpkg.zip").stat().st_size

    return {
        "rows": [{"target": triple, **figures} for triple, figures in libraries.items()],
        "trees": trees,
        "max_leaf_nodes": 256,
        "leaves": int(sum(e.tree_.n_leaves for e in forest.estimators_)),
        "classes": N_CLASSES,
        "srcpkg_bytes": srcpkg_bytes,
        "generate_seconds": generate_seconds,
        "rss_after_imports_bytes": memory["imports"]["VmRSS"],
        "rss_with_model_bytes": memory["loaded"]["VmRSS"],
        "peak_rss_with_model_bytes": memory["loaded"]["VmHWM"],
        **footprint(),
    }


def main() -> None:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=1))


if __name__ == "__main__":
    main()
