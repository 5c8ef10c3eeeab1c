"""Builds the one compiled extension, gateway._speedups, from ext/.

``RdProducer`` and ``RdConsumer`` (ext/producer.pxi, ext/consumer.pxi) call librdkafka's C API.
It links the librdkafka shared library bundled in the confluent-kafka wheel
(``site-packages/confluent_kafka.libs/librdkafka-<hash>.so.1``), the very file
``confluent_kafka.cimpl`` loads: both record the same soname, so the process maps one librdkafka
whichever module is imported first. The run-time search path (rpath) is relative to
the extension (``$ORIGIN``), so ``import gateway._speedups`` needs no LD_LIBRARY_PATH:

- ``$ORIGIN/../confluent_kafka.libs`` when the extension is installed next to confluent_kafka in
  site-packages;
- ``$ORIGIN/<relative path>`` to the library found at build time, for the in-place build that
  ``make`` does (gateway/ -> .venv/lib/python3.X/site-packages/confluent_kafka.libs).

No librdkafka header is needed: ext/rdkafka.pxd declares the functions we call.

simdjson (ext/jsondoc.pxi: whole JSON bodies; ext/jsonsplit.pxi: v3 records) is compiled into
the same extension from the ``simdjson.h`` and ``simdjson.cpp`` that the pysimdjson wheel
installs in site-packages (found without importing its module), together with our C++ shims
ext/jsondoc.cc and ext/jsonsplit.cc; the Cython module stays C and calls the shims'
``extern "C"`` functions (ext/jsondoc.h, ext/jsonsplit.h), and the extension is linked as C++. simdjson.cpp takes some 10 s of one core to compile: each C++ object is kept under
build/cxx/, named by a hash of its inputs (paths, sizes, modification times, flags, compiler),
and reused while they are unchanged, so editing a .pxi recompiles only the Cython module.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import shlex
import subprocess
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

try:  # setuptools >= 59 vendors distutils' errors here
    from setuptools.errors import CompileError
except ImportError:  # pragma: no cover
    from distutils.errors import CompileError

HERE = os.path.dirname(os.path.abspath(__file__))
debug = os.environ.get("GATEWAY_DEBUG") == "1"


def confluent_kafka_dir() -> str | None:
    """Where confluent_kafka is installed (found without importing it), or None."""
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.abspath(next(iter(spec.submodule_search_locations)))


def bundled_librdkafka() -> str:
    """The librdkafka shared library of the confluent-kafka wheel; CompileError if none."""
    pkg = confluent_kafka_dir()
    if pkg is None:
        raise CompileError("confluent-kafka is not installed: no librdkafka to link against")
    found = sorted(
        glob.glob(os.path.join(os.path.dirname(pkg), "confluent_kafka.libs", "librdkafka-*.so.1"))
    )
    if len(found) != 1:
        raise CompileError(
            f"expected one confluent_kafka.libs/librdkafka-*.so.1 next to {pkg}, found "
            f"{found or 'none'} (a confluent-kafka built from source has no bundled librdkafka)"
        )
    return found[0]


def simdjson_dir() -> str:
    """The directory of the pysimdjson wheel's simdjson.h and simdjson.cpp; CompileError if
    they are not installed."""
    spec = importlib.util.find_spec("simdjson")
    if spec is not None and spec.submodule_search_locations:
        for where in spec.submodule_search_locations:
            if all(os.path.isfile(os.path.join(where, f)) for f in ("simdjson.h", "simdjson.cpp")):
                return os.path.abspath(where)
    raise CompileError("pysimdjson is not installed: no simdjson.h/simdjson.cpp to compile")


# -std=c++17: simdjson's On-Demand API needs it. -fvisibility=hidden: simdjson's symbols stay
# inside the extension (pysimdjson's own module may be loaded too). No exceptions are used: the
# shim reads simdjson's error codes.
CXX_FLAGS = [
    "-std=c++17", "-fPIC", "-fvisibility=hidden", "-DNDEBUG", "-DSIMDJSON_EXCEPTIONS=0",
    *(["-O3"] if not debug else ["-O0", "-g"]),
]


def cxx_object(source: str, depends: list[str], include_dirs: list[str]) -> str:
    """The object file of the C++ ``source``, compiled into build/cxx/ unless an object of the
    same inputs is already there."""
    cxx = shlex.split(os.environ.get("CXX", "g++"))
    flags = [*CXX_FLAGS, *(f"-I{d}" for d in include_dirs)]
    key = hashlib.sha256(repr((cxx, flags)).encode())
    for path in (source, *depends):
        st = os.stat(path)
        key.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    name = os.path.splitext(os.path.basename(source))[0]
    obj = os.path.join(HERE, "build", "cxx", f"{name}-{key.hexdigest()[:16]}.o")
    if not os.path.exists(obj):
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        tmp = f"{obj}.tmp{os.getpid()}"
        command = [*cxx, *flags, "-c", source, "-o", tmp]
        print(" ".join(command))
        try:
            subprocess.run(command, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise CompileError(f"compiling {source} failed: {exc}") from None
        os.replace(tmp, obj)
        for stale in glob.glob(os.path.join(os.path.dirname(obj), f"{name}-*.o")):
            if stale != obj:
                os.remove(stale)  # an object of inputs that have since changed
    return obj


class build_ext(_build_ext):
    """Links gateway._speedups against the bundled librdkafka, found when it is built (not when
    setup.py is imported: pip reads the metadata before it installs the dependencies)."""

    def run(self) -> None:
        # setuptools clears `inplace` while it builds (it builds in build/, then copies).
        self._to_source = bool(self.inplace or self.editable_mode)
        super().run()

    def build_extension(self, ext: Extension) -> None:
        if ext.name == "gateway._speedups":
            lib = bundled_librdkafka()
            libdir = os.path.dirname(lib)
            rpaths = ["$ORIGIN/../confluent_kafka.libs"]
            if getattr(self, "_to_source", False):
                # The extension ends up in the source tree: from gateway/ to the library found.
                rel = os.path.relpath(libdir, os.path.join(HERE, "gateway"))
                if rel != "../confluent_kafka.libs":
                    rpaths.append(f"$ORIGIN/{rel}")
            sj = simdjson_dir()
            sj_h = os.path.join(sj, "simdjson.h")
            shim = os.path.join(HERE, "ext", "jsondoc.cc")
            shim_h = os.path.join(HERE, "ext", "jsondoc.h")
            split = os.path.join(HERE, "ext", "jsonsplit.cc")
            split_h = os.path.join(HERE, "ext", "jsonsplit.h")
            text_h = os.path.join(HERE, "ext", "jsontext.h")  # (included by both shims)
            python_include = sysconfig.get_paths()["include"]
            objects = [
                cxx_object(os.path.join(sj, "simdjson.cpp"), [sj_h], [sj]),
                cxx_object(shim, [shim_h, text_h, sj_h], [sj, python_include]),
                cxx_object(split, [split_h, text_h, sj_h], [sj]),
            ]
            ext.extra_objects = objects
            # A changed object relinks the extension; a changed header recompiles the C.
            ext.depends = [*ext.depends, shim_h, split_h, *objects]
            ext.language = "c++"  # links with the C++ driver (libstdc++); the .c stays C
            ext.library_dirs = [libdir]
            # -l:<file> links that exact file; its soname (librdkafka-<hash>.so.1) becomes our
            # DT_NEEDED, the same one confluent_kafka.cimpl has.
            ext.extra_link_args = [
                f"-l:{os.path.basename(lib)}",
                *(f"-Wl,-rpath,{p}" for p in rpaths),
            ]
        super().build_extension(ext)


# The extension is required: a failure to find or link librdkafka fails the build. `make`
# installs the dependencies (confluent-kafka among them) before the editable install that
# builds it.
extensions = cythonize(
    [
        Extension(
            "gateway._speedups",
            sources=["ext/_speedups.pyx"],
            include_dirs=["ext"],
            extra_compile_args=["-O2"] if not debug else ["-O0", "-g"],
        )
    ],
    include_path=[os.path.join(HERE, "ext")],
    language_level=3,
    compiler_directives={
        "boundscheck": debug,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": debug,
    },
)
setup(ext_modules=extensions, cmdclass={"build_ext": build_ext})
