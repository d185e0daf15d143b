"""The model bundle: a folder with ``manifest.json``, ``lib/<target triple>/model.so`` and
``srcpkg.zip``, each file named in the manifest with its sha256.

``load_bundle`` checks everything before it builds anything (format version, feature
order, every digest, the shape of thresholds and baselines, the library's own class and
feature counts), so a bundle is either loaded whole or refused with a ``BundleError``
naming the file or field at fault.
"""

import hashlib
import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.errors import BundleError
from agent.features import FEATURE_NAMES
from agent.predictor import Predictor

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METHODS = ("lambda1", "lambda2")
BASELINE_KEYS = ("n_expected", "accept_rate", "sigma_trust")


def host_triple() -> str:
    """The target triple of the running CPU, naming the library folder to load."""
    try:
        from agent.target import host_triple as target_triple
    except ImportError:
        return f"{platform.machine()}-linux-gnu"
    return target_triple()


def lib_path(triple: str) -> str:
    """The bundle-relative path of the library built for ``triple``."""
    return f"lib/{triple}/model.so"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Bundle:
    """A verified model bundle, ready to score."""

    path: Path
    manifest: dict
    classes: list[str]
    feature_names: list[str]
    thresholds: dict[str, tuple[np.ndarray, np.ndarray]]
    baselines: dict[str, dict[str, float]]
    window_seconds: float
    digest: str
    predictor: Predictor
    baselines_by_method: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def baselines_for(self, method: str) -> dict[str, dict[str, float]]:
        """Trust baselines of each class under threshold ``method`` (lambda1 or lambda2)."""
        if method not in self.baselines_by_method:
            raise ValueError(f"unknown threshold method {method!r}; use one of {METHODS}")
        return self.baselines_by_method[method]


def _field(manifest: dict, key: str, kind: type):
    if key not in manifest:
        raise BundleError(f"{MANIFEST}: missing field {key!r}")
    value = manifest[key]
    if not isinstance(value, kind):
        raise BundleError(f"{MANIFEST}: field {key!r} must be {kind.__name__}")
    return value


def _check_files(root: Path, files: dict) -> None:
    for name, expected in files.items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise BundleError(f"{MANIFEST}: files entry {name!r} leaves the bundle")
        path = root / relative
        if not path.is_file():
            raise BundleError(f"{name}: listed in {MANIFEST} but missing")
        if sha256_file(path) != expected:
            raise BundleError(f"{name}: sha256 does not match {MANIFEST}")


def _thresholds(manifest: dict, n_classes: int) -> dict:
    raw = _field(manifest, "thresholds", dict)
    out = {}
    for method in METHODS:
        try:
            low = np.asarray(raw[method]["low"], dtype=np.float64)
            high = np.asarray(raw[method]["high"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{MANIFEST}: field thresholds.{method} is malformed") from exc
        if low.shape != (n_classes,) or high.shape != (n_classes,):
            raise BundleError(f"{MANIFEST}: thresholds.{method} needs {n_classes} values")
        out[method] = (low, high)
    return out


def _baselines(manifest: dict, classes: list[str]) -> dict:
    raw = _field(manifest, "baselines", dict)
    out = {}
    for method in METHODS:
        per_class = raw.get(method)
        if not isinstance(per_class, dict):
            raise BundleError(f"{MANIFEST}: field baselines.{method} is missing")
        out[method] = {}
        for name in classes:
            entry = per_class.get(name)
            try:
                out[method][name] = {key: float(entry[key]) for key in BASELINE_KEYS}
            except (KeyError, TypeError, ValueError) as exc:
                where = f"baselines.{method}.{name}"
                raise BundleError(f"{MANIFEST}: field {where} is malformed") from exc
    return out


def load_bundle(path: str | Path, *, triple: str | None = None) -> Bundle:
    """Verify and load the bundle folder at ``path`` for ``triple`` (default: this CPU)."""
    root = Path(path)
    manifest_path = root / MANIFEST
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw)
    except OSError as exc:
        raise BundleError(f"{manifest_path}: cannot read: {exc}") from exc
    except ValueError as exc:
        raise BundleError(f"{manifest_path}: not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: not a JSON object")

    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{MANIFEST}: format_version {version!r}, expected {FORMAT_VERSION}")
    features = _field(manifest, "feature_names", list)
    if features != list(FEATURE_NAMES):
        raise BundleError(f"{MANIFEST}: feature_names differ from this agent's features")
    classes = _field(manifest, "classes", list)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise BundleError(f"{MANIFEST}: field 'classes' must be a list of names")
    window = _field(manifest, "window_seconds", (int, float))
    if window <= 0:
        raise BundleError(f"{MANIFEST}: field 'window_seconds' must be positive")
    thresholds = _thresholds(manifest, len(classes))
    baselines = _baselines(manifest, classes)

    files = _field(manifest, "files", dict)
    triple = triple or host_triple()
    library = lib_path(triple)
    if library not in files:
        raise BundleError(f"{library}: no model library for {triple} in {MANIFEST}")
    _check_files(root, files)

    predictor = Predictor(root / library)
    if predictor.n_features != len(features) or predictor.n_classes != len(classes):
        raise BundleError(
            f"{library}: library has {predictor.n_features} features and "
            f"{predictor.n_classes} classes, {MANIFEST} says {len(features)} and {len(classes)}"
        )

    digest = hashlib.sha256(raw).hexdigest()[:12]
    log.info("bundle loaded path=%s digest=%s classes=%d", root, digest, len(classes))
    return Bundle(
        path=root,
        manifest=manifest,
        classes=list(classes),
        feature_names=list(features),
        thresholds=thresholds,
        baselines=baselines["lambda1"],
        window_seconds=float(window),
        digest=digest,
        predictor=predictor,
        baselines_by_method=baselines,
    )
