"""The CPU and ABI the agent runs on, named as a bundle's ``lib/<triple>/`` folders are.

A bundle holds one model library per target; the loader asks :func:`host_triple` which one
this process can load. The names are GNU target triples (Debian's cross compilers carry
them). The libraries take only ``malloc`` and ``free`` from the C library, so the name
says nothing of glibc against musl; what must match is the CPU, the byte order and the
float ABI:

- ``x86_64-linux-gnu``, ``aarch64-linux-gnu``;
- ``arm-linux-gnueabihf`` (VFP registers) or ``arm-linux-gnueabi`` (soft float);
- ``mipsel-linux-gnu`` / ``mips-linux-gnu`` (MIPS32 o32, FPU instructions), or
  ``mipsel-linux-gnusf`` / ``mips-linux-gnusf`` for soft-float userlands, which most
  OpenWrt MIPS targets are: build those with the OpenWrt SDK's compiler.

:func:`elf_triple` reads the same name off a built library, so a build for the wrong CPU
is caught before it is shipped.
"""

import platform
import struct
import sys
from pathlib import Path

TRIPLES = (
    "x86_64-linux-gnu",
    "aarch64-linux-gnu",
    "arm-linux-gnueabihf",
    "arm-linux-gnueabi",
    "mipsel-linux-gnu",
    "mips-linux-gnu",
    "mipsel-linux-gnusf",
    "mips-linux-gnusf",
)

EM_MIPS, EM_ARM, EM_X86_64, EM_AARCH64 = 8, 40, 62, 183
EF_ARM_ABI_FLOAT_HARD = 0x400
PT_MIPS_ABIFLAGS = 0x70000003
MIPS_FP_ABI_SOFT = 3


class UnknownTarget(ValueError):
    """A CPU, or an ELF file, that no bundle target describes."""


def host_triple() -> str:
    """The triple of the library this Python process can load."""
    machine = platform.machine().lower()
    if machine.startswith(("arm", "mips")):
        return elf_triple(Path(sys.executable))
    return triple_for(machine, sys.byteorder)


def triple_for(machine: str, byteorder: str, *, soft_float: bool = False) -> str:
    """Name the target for ``platform.machine()``, byte order and float ABI."""
    machine = machine.lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64-linux-gnu"
    if machine in ("aarch64", "arm64") and byteorder == "little":
        return "aarch64-linux-gnu"
    if machine.startswith("arm") and byteorder == "little":
        return "arm-linux-gnueabi" if soft_float else "arm-linux-gnueabihf"
    if machine.startswith("mips") and "64" not in machine:
        cpu = "mipsel" if byteorder == "little" else "mips"
        return f"{cpu}-linux-gnusf" if soft_float else f"{cpu}-linux-gnu"
    raise UnknownTarget(
        f"no model library target for CPU {machine!r} ({byteorder}-endian); "
        f"supported: {', '.join(TRIPLES)}"
    )


def elf_triple(path: Path) -> str:
    """The target an ELF executable or shared library was built for."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 52 or head[:4] != b"\x7fELF":
            raise UnknownTarget(f"{path}: not an ELF file")
        is64, order = head[4] == 2, "<" if head[5] == 1 else ">"
        byteorder = "little" if order == "<" else "big"
        (machine,) = struct.unpack_from(order + "H", head, 18)
        (flags,) = struct.unpack_from(order + "I", head, 48 if is64 else 36)

        if machine == EM_X86_64 and is64:
            return "x86_64-linux-gnu"
        if machine == EM_AARCH64 and is64:
            return triple_for("aarch64", byteorder)
        if machine == EM_ARM and not is64:
            return triple_for("arm", byteorder, soft_float=not flags & EF_ARM_ABI_FLOAT_HARD)
        if machine == EM_MIPS and not is64:
            return triple_for("mips", byteorder, soft_float=_mips_soft_float(f, head, order))
    raise UnknownTarget(
        f"{path}: ELF machine {machine} ({'64' if is64 else '32'}-bit) unsupported"
    )


def _mips_soft_float(f, head: bytes, order: str) -> bool:
    """Whether a MIPS32 ELF file's ABI flags segment says soft float."""
    phoff, phentsize, phnum = (
        struct.unpack_from(order + "I", head, 28)[0],
        *struct.unpack_from(order + "HH", head, 42),
    )
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        p_type, p_offset = struct.unpack(order + "II", f.read(8))
        if p_type == PT_MIPS_ABIFLAGS:
            f.seek(p_offset + 7)
            return f.read(1) == bytes([MIPS_FP_ABI_SOFT])
    return False
