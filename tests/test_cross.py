"""Cross-built model libraries predict on foreign CPUs (under qemu-user) what the host's does."""

import json
import shutil
import zipfile

import numpy as np
import pytest
from conftest import require_tool
from model_fixtures import tiny_bundle  # noqa: F401

from compile import cross, cross_check

TARGETS = ["aarch64-linux-gnu", "arm-linux-gnueabihf", "mipsel-linux-gnu", "mips-linux-gnu"]
N_FEATURES = 28


def _rows(rng, n):
    """Feature-like rows: counts and sizes over several magnitudes, rounded to float32."""
    scale = 10.0 ** rng.integers(0, 6, (n, 1))
    return (rng.random((n, N_FEATURES)) * scale).round().astype(np.float32)


@pytest.fixture(scope="module")
def forest_data():
    """A small forest (5 trees, at most 24 leaves, 5 classes) and rows it was not fit on."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(7)
    X = _rows(rng, 3000)
    y = (np.log10(X[:, 0] + 1) + (X[:, 3] > X[:, 5])).astype(int) % 5
    forest = RandomForestClassifier(n_estimators=5, max_leaf_nodes=24, random_state=1)
    return forest.fit(X, y), _rows(rng, 2500)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, forest_data):
    """A bundle holding the forest's source package and the host library."""
    from compile import build

    forest, _ = forest_data
    root = tmp_path_factory.mktemp("bundle")
    gendir = build.generate(forest, root / "gen")
    build.write_srcpkg(gendir, root / "srcpkg.zip")
    shutil.rmtree(root / "gen")
    manifest = {"files": {"srcpkg.zip": cross.sha256_file(root / "srcpkg.zip")}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    require_tool("gcc")
    cross.add_library(root, "x86_64-linux-gnu", cc="gcc")
    return root


@pytest.fixture(scope="module")
def host_probabilities(bundle, forest_data, tmp_path_factory):
    """The rows file and the host library's probabilities on it, via the same checker."""
    _, rows = forest_data
    work = tmp_path_factory.mktemp("host")
    rows_file = cross_check.write_rows(work / "rows.txt", rows)
    checker = cross_check.build_checker("gcc", work / "predict_rows")
    proba = cross_check.run_checker(
        checker, bundle / "lib/x86_64-linux-gnu/model.so", rows_file, work / "out.txt"
    )
    return rows_file, proba


def test_host_library_matches_scikit_learn(forest_data, host_probabilities):
    """The checker's output from the host library equals scikit-learn's predict_proba."""
    forest, rows = forest_data
    _, proba = host_probabilities
    agreement = cross_check.compare(forest.predict_proba(rows), proba)
    assert agreement.rows == len(rows)
    assert agreement.ok(), agreement


@pytest.mark.parametrize("triple", TARGETS)
def test_cross_library_matches_host_under_qemu(triple, bundle, host_probabilities, tmp_path):
    """Built with `compile cross` for the target and run under qemu, probabilities match."""
    cc = require_tool(f"{triple}-gcc")
    require_tool(cross_check.QEMU[triple])
    rows_file, reference = host_probabilities

    assert cross.main(["--bundle", str(bundle), "--target", triple]) == 0
    library = bundle / cross.library_relpath(triple)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"][f"lib/{triple}/model.so"] == cross.sha256_file(library)
    assert manifest["provenance"]["cross"][triple]["cc"] == f"{triple}-gcc"

    checker = cross_check.build_checker(cc, tmp_path / "predict_rows")
    proba = cross_check.run_checker(
        checker, library, rows_file, tmp_path / "out.txt", triple=triple
    )
    agreement = cross_check.compare(reference, proba)
    assert agreement.ok(), agreement

    by_row = cross_check.run_checker(
        checker, library, rows_file, tmp_path / "by_row.txt", triple=triple, entry="predict"
    )
    assert cross_check.compare(reference, by_row).ok()


def test_wrong_compiler_for_target_is_refused(bundle):
    """A compiler that builds for another CPU than --target is named and nothing is added."""
    require_tool("gcc")
    before = (bundle / "manifest.json").read_text()
    with pytest.raises(cross.CrossError, match="not aarch64-linux-gnu"):
        cross.add_library(bundle, "aarch64-linux-gnu", cc="gcc")
    assert (bundle / "manifest.json").read_text() == before
    assert not (bundle / "lib/aarch64-linux-gnu/model.so.new").exists()


def test_tampered_source_package_is_refused(bundle, tmp_path):
    """A source package whose digest differs from the manifest's is not compiled."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with zipfile.ZipFile(copy / "srcpkg.zip", "a") as archive:
        archive.writestr("model/extra.c", "int extra;\n")
    with pytest.raises(cross.CrossError, match="sha256"):
        cross.add_library(copy, "x86_64-linux-gnu", cc="gcc")


def test_unsafe_archive_path_is_refused(tmp_path):
    """An archive entry escaping the extraction folder is named and refused."""
    package = tmp_path / "srcpkg.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("../evil.c", "int x;\n")
    with pytest.raises(cross.CrossError, match="unsafe path"):
        cross.extract_sources(package, tmp_path / "out")


def test_missing_compiler_is_named(bundle, capsys):
    """The command exits non-zero naming a compiler that is not installed."""
    code = cross.main(
        ["--bundle", str(bundle), "--target", "mips-linux-gnu", "--cc", "no-such-gcc"]
    )
    assert code == 1
    assert "no-such-gcc" in capsys.readouterr().err


def test_verify_option_compares_under_qemu(bundle, capsys):
    """`--verify ROWS` scores random rows on the target under qemu and reports agreement."""
    require_tool("mipsel-linux-gnu-gcc")
    require_tool("qemu-mipsel")
    argv = ["--bundle", str(bundle), "--target", "mipsel-linux-gnu", "--verify", "400"]
    assert cross.main(argv) == 0
    assert "verified on 400 rows" in capsys.readouterr().out


def test_single_source_package_builds_and_matches_under_qemu(forest_data, tmp_path):
    """A package of one C file (compile.forestc's layout, no recipe) cross-builds and agrees."""
    import treelite

    from compile import forestc

    cc = require_tool("mips-linux-gnu-gcc")
    require_tool("qemu-mips")
    forest, rows = forest_data
    source = forestc.generate_c(forestc.from_treelite(treelite.sklearn.import_model(forest)))
    with zipfile.ZipFile(tmp_path / "srcpkg.zip", "w") as archive:
        archive.writestr("model/model.c", source)
    files = {"srcpkg.zip": cross.sha256_file(tmp_path / "srcpkg.zip")}
    (tmp_path / "manifest.json").write_text(json.dumps({"files": files}))

    host = cross.add_library(tmp_path, "x86_64-linux-gnu", cc="gcc")
    target = cross.add_library(tmp_path, "mips-linux-gnu")
    rows_file = cross_check.write_rows(tmp_path / "rows.txt", rows)
    host_exe = cross_check.build_checker("gcc", tmp_path / "host")
    target_exe = cross_check.build_checker(cc, tmp_path / "target")
    reference = cross_check.run_checker(host_exe, host, rows_file, tmp_path / "h.txt")
    proba = cross_check.run_checker(
        target_exe, target, rows_file, tmp_path / "t.txt", triple="mips-linux-gnu"
    )
    assert cross_check.compare(reference, proba).ok()
    assert cross_check.compare(forest.predict_proba(rows), reference).ok()


def test_trained_bundle_gains_a_target_and_still_loads(tiny_bundle, tmp_path):  # noqa: F811
    """A bundle from compile.train takes a cross-built library; agent.bundle still verifies it
    for this CPU and names the CPU when asked for one it has no library for."""
    from agent.bundle import load_bundle
    from agent.errors import BundleError

    require_tool("aarch64-linux-gnu-gcc")
    require_tool("qemu-aarch64")
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    argv = ["--bundle", str(bundle), "--target", "aarch64-linux-gnu", "--verify", "500"]
    assert cross.main(argv) == 0

    loaded = load_bundle(bundle)
    assert "lib/aarch64-linux-gnu/model.so" in loaded.manifest["files"]
    with pytest.raises(BundleError, match="no model library for mips-linux-gnu"):
        load_bundle(bundle, triple="mips-linux-gnu")
