"""Builds the one compiled extension, gateway._speedups, from ext/."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("GATEWAY_DEBUG") == "1"

extensions = [
    Extension(
        "gateway._speedups",
        sources=["ext/_speedups.pyx"],
        extra_compile_args=["-O2"] if not debug else ["-O0", "-g"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": debug,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": debug,
        },
    ),
)
