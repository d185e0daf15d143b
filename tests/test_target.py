"""The agent names its CPU's library folder from the machine, byte order and float ABI."""

import subprocess
import sys

import pytest
from conftest import require_tool

from agent import target

SOURCE = "double half(const double *x) { return x[0] * 0.5; }\n"

# (triple of the result, compiler, extra flags)
BUILDS = [
    ("aarch64-linux-gnu", "aarch64-linux-gnu-gcc", []),
    ("arm-linux-gnueabihf", "arm-linux-gnueabihf-gcc", []),
    ("mipsel-linux-gnu", "mipsel-linux-gnu-gcc", []),
    ("mips-linux-gnu", "mips-linux-gnu-gcc", []),
    ("mipsel-linux-gnusf", "mipsel-linux-gnu-gcc", ["-msoft-float", "-nostdlib"]),
    ("x86_64-linux-gnu", "gcc", []),
]


def _build(tmp_path, cc, flags):
    """A tiny shared library built with ``cc``."""
    source = tmp_path / "half.c"
    source.write_text(SOURCE)
    out = tmp_path / "half.so"
    cmd = [cc, "-shared", "-fPIC", *flags, "-o", str(out), str(source)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize(("triple", "cc", "flags"), BUILDS)
def test_elf_triple_reads_what_the_compiler_built(tmp_path, triple, cc, flags):
    """CPU, byte order and float ABI are read off a built library's ELF headers."""
    require_tool(cc)
    assert target.elf_triple(_build(tmp_path, cc, flags)) == triple


@pytest.mark.parametrize(
    ("machine", "byteorder", "soft", "triple"),
    [
        ("x86_64", "little", False, "x86_64-linux-gnu"),
        ("AMD64", "little", False, "x86_64-linux-gnu"),
        ("aarch64", "little", False, "aarch64-linux-gnu"),
        ("armv7l", "little", False, "arm-linux-gnueabihf"),
        ("armv5tel", "little", True, "arm-linux-gnueabi"),
        ("mips", "little", False, "mipsel-linux-gnu"),
        ("mips", "big", True, "mips-linux-gnusf"),
    ],
)
def test_triple_for_machine(machine, byteorder, soft, triple):
    """platform.machine() names map to the bundle's folder names."""
    assert target.triple_for(machine, byteorder, soft_float=soft) == triple
    assert triple in target.TRIPLES


def test_unsupported_cpu_is_refused_with_the_list():
    """A CPU no bundle can serve raises UnknownTarget naming it and the supported ones."""
    with pytest.raises(target.UnknownTarget, match="riscv64.*supported: x86_64-linux-gnu"):
        target.triple_for("riscv64", "little")


def test_host_triple_on_this_machine():
    """On the test machine the answer matches the running interpreter's own ELF header."""
    assert target.host_triple() == target.elf_triple(sys.executable)


def test_host_triple_on_arm_reads_the_interpreter(tmp_path, monkeypatch):
    """On ARM the float ABI comes from the interpreter binary (hard float here)."""
    require_tool("arm-linux-gnueabihf-gcc")
    fake_python = _build(tmp_path, "arm-linux-gnueabihf-gcc", [])
    monkeypatch.setattr(target.platform, "machine", lambda: "armv7l")
    monkeypatch.setattr(target.sys, "executable", str(fake_python))
    assert target.host_triple() == "arm-linux-gnueabihf"


def test_non_elf_file_is_refused(tmp_path):
    """A file that is not ELF raises UnknownTarget naming it."""
    path = tmp_path / "model.so"
    path.write_bytes(b"#!/bin/sh\n" + bytes(60))
    with pytest.raises(target.UnknownTarget, match="not an ELF file"):
        target.elf_triple(path)
