"""Shared fixtures: where the real exporters' samples are, and external tools."""

import os
import shutil
from pathlib import Path

import pytest

# Fixture modules shared by several test files, loaded once as plugins.
pytest_plugins = ["store_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT.parent / "shared" / "ipfix-samples"


def require_tool(name: str) -> str:
    """Path of an external tool; skip when missing, unless REQUIRE_TOOLS=1 (CI)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required (REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return path


@pytest.fixture
def samples() -> Path:
    """The shared folder of real exporters' IPFIX output."""
    if not SAMPLES.is_dir():
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail(f"{SAMPLES} is required (REQUIRE_TOOLS=1) but missing")
        pytest.skip(f"{SAMPLES} not present")
    return SAMPLES
