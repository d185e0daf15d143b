"""Forest -> C -> shared library, in three separate steps joined by the generated folder:
``generate`` (Treelite import, TL2cgen C generation, batch entry point, source package),
``build`` (the host's shared library) and ``verify`` (compiled probabilities against
scikit-learn's on held-out rows).

The generated folder is TL2cgen's own layout (``recipe.json``, ``header.h``, sources) with
one extra source, ``iotwatch_batch.c``, and both a ``Makefile`` and a ``CMakeLists.txt``,
so a cross build needs only the zip: ``make CC=...`` or CMake with a toolchain file.
"""

import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LIB_NAME = "model"
MAX_ABS_DIFF = 1e-5

_BATCH_SOURCE = """\
/* Scores many rows per call so a caller crosses its foreign-function boundary once per
 * batch. TL2cgen's predict() adds into its result and, with quantized thresholds,
 * overwrites its input, so each row is copied and each result zeroed first. */
#include "header.h"

void iotwatch_predict_batch(const float* rows, int64_t n_rows, double* out) {
  const int32_t n_feature = get_num_feature();
  int32_t n_class[N_TARGET];
  get_num_class(n_class);
  union Entry* entry = (union Entry*)malloc(sizeof(union Entry) * (size_t)n_feature);
  if (entry == NULL) {
    return;
  }
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = rows + r * n_feature;
    double* result = out + r * n_class[0];
    for (int32_t f = 0; f < n_feature; ++f) {
      if (isnan(row[f])) {
        entry[f].fvalue = 0.0;
        entry[f].missing = -1;
      } else {
        entry[f].fvalue = (double)row[f];
      }
    }
    for (int32_t k = 0; k < n_class[0]; ++k) {
      result[k] = 0.0;
    }
    predict(entry, 0, result);
  }
  free(entry);
}
"""

_ZERO_ADD = re.compile(rb"^\s*result\[\d+\] \+= 0;\s*$")
_QUIET = (b"newer Treelite version", b"Currently running Treelite", b"checkpoint was generated")
_log_callback = None
_messages: list[bytes] = []


class BuildError(RuntimeError):
    """The compiled library could not be generated, built or does not match the forest."""


def quiet_tl2cgen() -> None:
    """Route TL2cgen's native log lines to logging, dropping the version-mismatch notice.

    TL2cgen 1.0 embeds Treelite 4.1 and warns about models saved by Treelite 4.8; the
    results are exact (measured), so that notice is noise in every run.
    """
    global _log_callback
    import tl2cgen.libloader as loader

    @ctypes.CFUNCTYPE(None, ctypes.c_char_p)
    def forward(msg: bytes) -> None:
        _messages.append(msg)

    _log_callback = forward
    loader._LIB.TL2cgenRegisterLogCallback(_log_callback)


@contextlib.contextmanager
def _filtered_stderr():
    """Catch what TL2cgen's embedded Treelite writes to fd 2; log all but the version notice."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            _messages.extend(sink.read().splitlines())
            _flush_messages()


def _flush_messages() -> None:
    """Log what TL2cgen said, without the version notice."""
    for line in _messages:
        if line.strip() and not any(text in line for text in _QUIET):
            log.info("tl2cgen: %s", line.decode("utf-8", "replace").strip())
    _messages.clear()


def _strip_zero_adds(path: Path) -> None:
    """Drop ``result[k] += 0;`` lines (pure leaves): most of a forest's C, no effect."""
    tmp = path.with_suffix(".tmp")
    with path.open("rb") as src, tmp.open("wb") as dst:
        for line in src:
            if not _ZERO_ADD.match(line):
                dst.write(line)
    tmp.replace(path)


def generate(forest, dirpath: str | Path, *, quantize: bool = True) -> Path:
    """Write the forest's C sources, batch entry point, Makefile and CMakeLists.txt."""
    import tl2cgen
    import treelite

    quiet_tl2cgen()
    dirpath = Path(dirpath) / LIB_NAME
    if dirpath.exists():
        shutil.rmtree(dirpath)
    dirpath.mkdir(parents=True)

    model = treelite.sklearn.import_model(forest)
    params = {
        "quantize": int(quantize),
        "parallel_comp": int(forest.n_estimators),
        "native_lib_name": LIB_NAME,
    }
    with _filtered_stderr():
        tl2cgen.generate_c_code(model, dirpath, params)
    for source in dirpath.glob("*.c"):
        _strip_zero_adds(source)

    (dirpath / "iotwatch_batch.c").write_text(_BATCH_SOURCE)
    recipe_path = dirpath / "recipe.json"
    recipe = json.loads(recipe_path.read_text())
    recipe["sources"].append({"name": "iotwatch_batch", "length": _BATCH_SOURCE.count("\n")})
    recipe_path.write_text(json.dumps(recipe, indent=2))

    tl2cgen.generate_makefile(dirpath, "gcc")
    tl2cgen.generate_cmakelists(dirpath)
    log.info("generated dir=%s sources=%d", dirpath, len(recipe["sources"]))
    return dirpath


def write_srcpkg(gendir: str | Path, zip_path: str | Path) -> Path:
    """Zip the generated folder as ``model/...``, the layout of TL2cgen's export_srcpkg."""
    gendir, zip_path = Path(gendir), Path(zip_path)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(gendir.iterdir()):
            if path.suffix in (".c", ".h", ".json", ".txt") or path.name == "Makefile":
                archive.write(path, f"{LIB_NAME}/{path.name}")
    return zip_path


def build(gendir: str | Path, lib_path: str | Path, *, nthread: int | None = None) -> Path:
    """Compile the generated folder into ``lib_path`` with the host's gcc."""
    import tl2cgen

    quiet_tl2cgen()
    nthread = nthread or os.cpu_count() or 1
    built = tl2cgen.create_shared(
        "gcc", gendir, nthread=nthread, options=["-O1"], long_build_time_warning=False
    )
    _flush_messages()
    lib_path = Path(lib_path)
    lib_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), lib_path)
    return lib_path


def verify(lib_path: str | Path, forest, X: np.ndarray) -> dict:
    """Compare the library with ``forest.predict_proba`` on rows X; BuildError if apart."""
    from agent.predictor import Predictor

    X = np.ascontiguousarray(X, dtype=np.float32)
    compiled = Predictor(lib_path).predict_proba(X)
    reference = forest.predict_proba(X)
    diff = float(np.max(np.abs(compiled - reference))) if len(X) else 0.0
    argmax_equal = bool(np.array_equal(compiled.argmax(axis=1), reference.argmax(axis=1)))

    report = {"rows": len(X), "max_abs_diff": diff, "argmax_identical": argmax_equal}
    if diff >= MAX_ABS_DIFF or not argmax_equal:
        raise BuildError(f"{lib_path}: compiled forest differs from scikit-learn: {report}")
    log.info("verified lib=%s rows=%d max_abs_diff=%.3g", lib_path, len(X), diff)
    return report
