"""``python -m compile cross``: build a bundle's model library for another CPU.

The bundle carries the forest's C sources as ``srcpkg.zip`` (TL2cgen's source package plus
the batch entry point, see ``compile.build``). This command compiles those sources with a
cross compiler - Debian's ``<triple>-gcc`` by default, or an OpenWrt SDK's through
``--cc`` - checks that the result is an ELF library for the requested CPU, byte order and
float ABI, and adds it to the bundle as ``lib/<triple>/model.so`` with its sha256 in the
manifest. ``--verify`` then runs it under qemu-user on random rows against the bundle's
host library (see ``compile.cross_check``).
"""

import argparse
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from agent.target import TRIPLES, UnknownTarget, elf_triple, host_triple

log = logging.getLogger(__name__)

SRCPKG = "srcpkg.zip"
MANIFEST = "manifest.json"
DEFAULT_CFLAGS = ("-O1",)


class CrossError(RuntimeError):
    """The bundle, the source package or the compiler did not give a usable library."""


def library_relpath(triple: str) -> str:
    """Where a target's library lives inside a bundle."""
    return f"lib/{triple}/model.so"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_sources(srcpkg: Path, into: Path) -> list[Path]:
    """Unpack the source package; the C files to compile, in the recipe's order."""
    with zipfile.ZipFile(srcpkg) as archive:
        for name in archive.namelist():
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts:
                raise CrossError(f"{srcpkg}: unsafe path {name!r} in the archive")
        archive.extractall(into)

    headers = sorted(into.rglob("header.h")) or sorted(into.rglob("*.h"))
    folders = {path.parent for path in headers} or {p.parent for p in into.rglob("*.c")}
    if len(folders) != 1:
        raise CrossError(f"{srcpkg}: expected one source folder, found {len(folders)}")
    folder = folders.pop()

    recipe = folder / "recipe.json"
    if recipe.exists():
        names = [entry["name"] for entry in json.loads(recipe.read_text())["sources"]]
        sources = [folder / f"{name}.c" for name in names]
    else:
        sources = sorted(folder.glob("*.c"))
    missing = [path.name for path in sources if not path.exists()]
    if missing or not sources:
        raise CrossError(f"{srcpkg}: sources missing: {', '.join(missing) or 'no .c files'}")
    return sources


def build_library(
    srcpkg: Path,
    out: Path,
    cc: str,
    *,
    cflags: tuple[str, ...] = DEFAULT_CFLAGS,
    jobs: int | None = None,
) -> Path:
    """Compile the source package into the shared library ``out`` with ``cc``."""
    if shutil.which(cc) is None:
        raise CrossError(f"compiler {cc!r} not found (install it or pass --cc)")
    with tempfile.TemporaryDirectory(prefix="iotwatch-cross-") as tmp:
        sources = extract_sources(srcpkg, Path(tmp))

        def compile_one(source: Path) -> Path:
            obj = source.with_suffix(".o")
            _run([cc, "-c", *cflags, "-fPIC", "-o", str(obj), str(source)], source.name)
            return obj

        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            objects = list(pool.map(compile_one, sources))

        out.parent.mkdir(parents=True, exist_ok=True)
        _run([cc, "-shared", *cflags, "-o", str(out), *map(str, objects), "-lm"], "link")
    log.info("built lib=%s cc=%s sources=%d bytes=%d", out, cc, len(sources), out.stat().st_size)
    return out


def _run(cmd: list[str], step: str) -> None:
    """Run a compiler step; CrossError with the compiler's own words when it fails."""
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}
    )
    if proc.returncode != 0:
        raise CrossError(f"{step}: {shlex.join(cmd[:3])} ... failed:\n{proc.stderr[-3000:]}")


def read_manifest(bundle: Path) -> dict:
    """The bundle's manifest; CrossError when it is missing or not JSON."""
    try:
        return json.loads((bundle / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CrossError(f"{bundle / MANIFEST}: cannot read the manifest: {exc}") from exc


def file_digests(manifest: dict) -> dict:
    """The manifest's ``files`` table (relative path -> sha256)."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CrossError(f"{MANIFEST}: no 'files' table of relative path -> sha256")
    return files


def add_library(
    bundle: Path,
    triple: str,
    *,
    cc: str | None = None,
    cflags: tuple[str, ...] = DEFAULT_CFLAGS,
    jobs: int | None = None,
) -> Path:
    """Build ``lib/<triple>/model.so`` from the bundle's sources and record its digest."""
    manifest = read_manifest(bundle)
    files = file_digests(manifest)
    srcpkg = bundle / SRCPKG
    if files.get(SRCPKG) is None or not srcpkg.exists():
        raise CrossError(f"{bundle}: no {SRCPKG} listed in the manifest")
    if sha256_file(srcpkg) != files[SRCPKG]:
        raise CrossError(f"{srcpkg}: sha256 does not match the manifest")

    relpath = library_relpath(triple)
    final = bundle / relpath
    staged = final.with_name(final.name + ".new")
    try:
        build_library(srcpkg, staged, cc or f"{triple}-gcc", cflags=cflags, jobs=jobs)
        built_for = elf_triple(staged)
        if built_for != triple:
            raise CrossError(f"{cc or triple + '-gcc'} built for {built_for}, not {triple}")
    except (CrossError, UnknownTarget) as exc:
        staged.unlink(missing_ok=True)
        raise CrossError(str(exc)) from exc

    staged.replace(final)
    files[relpath] = sha256_file(final)
    provenance = manifest.setdefault("provenance", {})
    if isinstance(provenance, dict):
        provenance.setdefault("cross", {})[triple] = {
            "cc": cc or f"{triple}-gcc",
            "cflags": list(cflags),
            "library_bytes": final.stat().st_size,
        }
    tmp_manifest = bundle / (MANIFEST + ".new")
    tmp_manifest.write_text(json.dumps(manifest, indent=1))
    tmp_manifest.replace(bundle / MANIFEST)
    log.info("added lib=%s sha256=%s", relpath, files[relpath][:12])
    return final


def verify_library(bundle: Path, triple: str, cc: str, rows: int = 2000, seed: int = 0):
    """Score random rows with the target library under qemu and the host library natively."""
    from compile import cross_check

    host_lib = bundle / library_relpath(host_triple())
    if not host_lib.exists():
        raise CrossError(f"{bundle}: no host library {host_lib.name} to compare with")
    with tempfile.TemporaryDirectory(prefix="iotwatch-verify-") as tmp:
        tmp = Path(tmp)
        n_features = len(read_manifest(bundle).get("feature_names") or []) or 28
        rng = np.random.default_rng(seed)
        X = (rng.random((rows, n_features)) * 10.0 ** rng.integers(0, 6, (rows, 1))).round()
        rows_file = cross_check.write_rows(tmp / "rows.txt", X.astype(np.float32))

        host_exe = cross_check.build_checker("gcc", tmp / "host")
        target_exe = cross_check.build_checker(cc, tmp / "target")
        reference = cross_check.run_checker(host_exe, host_lib, rows_file, tmp / "host.txt")
        candidate = cross_check.run_checker(
            target_exe,
            bundle / library_relpath(triple),
            rows_file,
            tmp / "target.txt",
            triple=triple,
        )
    return cross_check.compare(reference, candidate)


def main(argv: list[str] | None = None) -> int:
    """Command line: build (and optionally verify) one target's library."""
    parser = argparse.ArgumentParser(prog="python -m compile cross", description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="the model bundle folder")
    parser.add_argument("--target", required=True, choices=TRIPLES, help="target triple")
    parser.add_argument("--cc", help="C compiler for the target (default: TARGET-gcc)")
    parser.add_argument(
        "--cflags", default=" ".join(DEFAULT_CFLAGS), help="compiler flags (default: -O1)"
    )
    parser.add_argument("--jobs", type=int, help="parallel compiler processes (default: CPUs)")
    parser.add_argument(
        "--verify",
        type=int,
        metavar="ROWS",
        default=0,
        help="compare with the host library on ROWS random rows under qemu-user",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    cc = args.cc or f"{args.target}-gcc"
    try:
        path = add_library(
            args.bundle,
            args.target,
            cc=cc,
            cflags=tuple(shlex.split(args.cflags)),
            jobs=args.jobs,
        )
        print(f"{path} ({path.stat().st_size} bytes)")
        if args.verify:
            agreement = verify_library(args.bundle, args.target, cc, rows=args.verify)
            print(
                f"verified on {agreement.rows} rows: max abs diff {agreement.max_abs_diff:.3g},"
                f" argmax {'identical' if agreement.argmax_equal else 'DIFFERENT'}"
            )
            if not agreement.ok():
                return 1
    except (CrossError, RuntimeError, UnknownTarget) as exc:
        print(f"compile cross: {exc}", file=sys.stderr)
        return 1
    return 0
