"""Builds kiln._fastrun, the optional C path of Model.run (kiln/_fastrun.c); everything else is in pyproject.toml.

The extension uses CPython's stable ABI for 3.11 and later (one binary, `_fastrun.abi3.so`). It is optional:
without a C compiler or CPython's headers, or on Python 3.9/3.10, the package installs without it and
Model.run goes through ctypes. `python setup.py build_ext --inplace` builds it into kiln/ for a source checkout
(scripts/bench-trees does this).
"""
import sys

from setuptools import Extension, setup

extensions = []
if sys.version_info >= (3, 11):
    extensions.append(Extension("kiln._fastrun", ["kiln/_fastrun.c"], optional=True, py_limited_api=True,
                                define_macros=[("Py_LIMITED_API", "0x030B0000")], extra_compile_args=["-O2"]))
setup(ext_modules=extensions)
