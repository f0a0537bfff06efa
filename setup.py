"""Build hook: compiles the C sources in ``native/`` into ``dataio._native`` once they exist.

All metadata lives in pyproject.toml; this file only declares the optional C extension, so that a
checkout without C sources (or without a compiler) still installs as pure Python.
"""

from pathlib import Path

from setuptools import Extension, setup

sources = sorted(str(p) for p in Path("native").glob("*.c"))
ext_modules = [Extension("dataio._native", sources=sources, extra_compile_args=["-O3"])] if sources else []
setup(ext_modules=ext_modules)
