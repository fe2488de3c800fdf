"""Build the native tier (csrc/) and the cffi tier (csrc/ffi/).

Compilation is optional for an sdist install: a machine without a working
compiler still gets a working package (the pure tier) and a loud warning.
Under cibuildwheel (CIBUILDWHEEL=1) or FASTSELECTORS_STRICT_BUILD=1 any
compile failure is fatal: a wheel must never ship without its extensions.
"""

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

STRICT = (os.environ.get("CIBUILDWHEEL") == "1"
          or os.environ.get("FASTSELECTORS_STRICT_BUILD") == "1")
CPYTHON = platform.python_implementation() == "CPython"
POSIX = os.name == "posix"

WARNING = """
**********************************************************************
* fastselectors: could not compile {name}:
*   {error}
* The package is installed WITHOUT it: it runs on a slower tier
* (fastselectors.BACKEND says which; "pure" if nothing compiled), and
* a RuntimeWarning repeats this at every import.
* Fix: install a C compiler and the Python headers (Debian/Ubuntu: gcc
* and python3-dev, or pypy3-dev for PyPy), then reinstall without pip's
* cache, which now holds this build:
*     pip install --no-cache-dir --force-reinstall fastselectors
**********************************************************************
"""


class OptionalBuildExt(build_ext):
    """build_ext that turns compile failures into warnings (unless STRICT)."""

    def run(self):
        try:
            super().run()
        except Exception as exc:    # no compiler at all: DistutilsPlatformError
            self._give_up("the extensions", exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:    # CompileError, LinkError, OSError, ...
            self._give_up(ext.name, exc)

    def _give_up(self, name, exc):
        if STRICT:
            raise
        sys.stderr.write(WARNING.format(name=name, error=exc))


ext_modules = []
if CPYTHON and POSIX:
    # The native tier: a CPython extension (PyPy uses the cffi tier).
    ext_modules.append(Extension(
        "fastselectors._native",
        sources=sorted(os.path.join("csrc", f) for f in os.listdir("csrc")
                       if f.endswith(".c")),
        depends=[os.path.join("csrc", h) for h in ("fastselectors.h", "waits.h")],
        extra_compile_args=["-std=c99", "-O2", "-Wall", "-Wextra",
                            "-Wno-unused-parameter",
                            "-Wno-missing-field-initializers"],
    ))

setup(
    ext_modules=ext_modules,
    cffi_modules=["csrc/ffi/build_ffi.py:ffibuilder"] if POSIX else [],
    cmdclass={"build_ext": OptionalBuildExt},
)
