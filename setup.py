"""Native helpers built with cffi at install time (the rest is in pyproject.toml)."""

from setuptools import setup

setup(
    cffi_modules=[
        "agent/_kernels_build.py:ffibuilder",
        "agent/ipfix/_native_build.py:ffibuilder",
        "compile/meter/_native_build.py:ffibuilder",
    ],
)
