"""Build hook: compiles the C sources in ``native/`` into the optional extension ``dataio._native``.

All metadata lives in pyproject.toml; this file only declares the extension. It links the system
libjpeg-turbo through its libjpeg API (``jpeglib.h``; Debian/Ubuntu: ``libjpeg62-turbo-dev`` or
``libjpeg-turbo8-dev``; ``scripts/setup.sh`` installs it with apt when the header is missing). A machine
without a compiler or the header still installs dataio, as pure Python: the build prints why the extension
was left out, and dataio warns once at run time and uses its Python paths.

Sanitizer builds take the usual flags from the environment (see ``scripts/sanitize``):
``CFLAGS="-fsanitize=address,undefined" LDFLAGS=-fsanitize=address,undefined python setup.py build_ext -i``.
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sources = sorted(str(p) for p in Path("native").glob("*.c"))
ext_modules = (
    [
        Extension(
            "dataio._native",
            sources=sources,
            depends=sorted(str(p) for p in Path("native").glob("*.h")),
            libraries=["jpeg", "pthread"],
            extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-fvisibility=hidden", "-fno-strict-aliasing"],
        )
    ]
    if sources
    else []
)


class OptionalBuildExt(build_ext):
    """Builds ``dataio._native`` when it can; otherwise says why and installs the pure-Python package."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure leaves the Python fallback
            self._skipped(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._skipped(exc)

    @staticmethod
    def _skipped(exc: Exception) -> None:
        print(
            "\n*** dataio._native was NOT built: "
            f"{exc}\n*** dataio works without it (pure-Python paths, slower). To build it, install a C compiler and "
            "libjpeg-turbo's headers (apt-get install libjpeg62-turbo-dev), then reinstall.\n"
        )


setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
