"""Check a cross-built model library against the host's, running it under qemu-user.

``predict_rows.c`` (beside this module) is built for the target with the same cross
compiler as the library; it loads the library with ``dlopen`` and writes one line of
class probabilities per feature row. Run under ``qemu-<cpu> -L /usr/<triple>`` its output
is compared with the host library's on the same rows.
"""

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("predict_rows.c")

# qemu-user binary per target triple. The sysroot is /usr/<triple> (Debian's layout) or
# $QEMU_SYSROOT, e.g. an OpenWrt SDK's staging_dir/target-*/root-* for its musl builds.
QEMU = {
    "aarch64-linux-gnu": "qemu-aarch64",
    "arm-linux-gnueabihf": "qemu-arm",
    "arm-linux-gnueabi": "qemu-arm",
    "mipsel-linux-gnu": "qemu-mipsel",
    "mips-linux-gnu": "qemu-mips",
    "mipsel-linux-gnusf": "qemu-mipsel",
    "mips-linux-gnusf": "qemu-mips",
    "x86_64-linux-gnu": "qemu-x86_64",
}


@dataclass
class Agreement:
    """How closely two libraries' probabilities agree on the same rows."""

    rows: int
    max_abs_diff: float
    argmax_equal: bool

    def ok(self, tolerance: float = 1e-5) -> bool:
        """True when every probability is within ``tolerance`` and every argmax equal."""
        return self.argmax_equal and self.max_abs_diff < tolerance


def build_checker(cc: str, out: Path, cflags: tuple[str, ...] = ()) -> Path:
    """Compile ``predict_rows.c`` with ``cc`` (a cross gcc for a target, gcc for the host)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, "-O2", *cflags, "-o", str(out), str(SOURCE), "-ldl"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cc} could not build {SOURCE.name}:\n{proc.stderr[-2000:]}")
    return out


def write_rows(path: Path, rows: np.ndarray) -> Path:
    """Write float32 feature rows as text: exact, and the same on every byte order."""
    rows = np.asarray(rows, dtype=np.float32)
    np.savetxt(path, rows, fmt="%.9g")
    return path


def run_checker(
    checker: Path,
    library: Path,
    rows_file: Path,
    out: Path,
    *,
    triple: str | None = None,
    entry: str = "batch",
) -> np.ndarray:
    """Run the checker on ``library`` (under qemu for ``triple``); the probabilities.

    ``entry`` is ``batch`` (the agent's ``iotwatch_predict_batch``, TL2cgen's ``predict``
    when missing) or ``predict`` (TL2cgen's own entry point).
    """
    cmd = [str(checker), str(library), str(rows_file), str(out)]
    if entry == "predict":
        cmd.append("predict")
    if triple is not None:
        cmd = qemu_command(triple) + cmd
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return np.atleast_2d(np.loadtxt(out, dtype=np.float64))


def qemu_command(triple: str) -> list[str]:
    """``qemu-<cpu> -L <sysroot>`` for a target; RuntimeError when it cannot be run."""
    name = QEMU.get(triple)
    if name is None or shutil.which(name) is None:
        raise RuntimeError(f"no qemu-user emulator for {triple} (install Debian's qemu-user)")
    sysroot = Path(os.environ.get("QEMU_SYSROOT", f"/usr/{triple}"))
    return [name, "-L", str(sysroot)]


def compare(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """Largest probability difference and whether every row's argmax is the same."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {reference.shape} against {candidate.shape}")
    return Agreement(
        rows=len(reference),
        max_abs_diff=float(np.max(np.abs(reference - candidate), initial=0.0)),
        argmax_equal=bool(np.array_equal(reference.argmax(axis=1), candidate.argmax(axis=1))),
    )
