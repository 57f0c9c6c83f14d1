"""Build the ``sparsebed._kernels`` extension.

OpenMP is used when a small OpenMP program compiles and links with the
compiler at hand; otherwise the kernels are built without it and run on one
thread. Set ``SPARSEBED_DEBUG=1`` for a debug build: bounds checking and
negative-index wrap-around checks on, no optimisation, and the deterministic
pass's team sends its threads to sit out at the first waits. Set
``SPARSEBED_NO_OPENMP=1`` to build without OpenMP on purpose.
"""
import os
import shutil
import sys
import tempfile
import textwrap

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("SPARSEBED_DEBUG", "0") not in ("", "0")
NO_OPENMP = os.environ.get("SPARSEBED_NO_OPENMP", "0") not in ("", "0")

# The one place where the Cython directives live.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def openmp_flags(compiler):
    """Return (compile args, link args) that give OpenMP with ``compiler``, or None."""
    if NO_OPENMP:
        return None
    # (compile flags, link flags): GCC and Clang, then MSVC.
    for compile_args, link_args in ((["-fopenmp"], ["-fopenmp"]), (["/openmp"], [])):
        tmp = tempfile.mkdtemp()
        try:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write(OPENMP_PROBE)
            objects = compiler.compile(
                [src], output_dir=tmp, extra_postargs=compile_args
            )
            compiler.link_executable(
                objects, "probe", output_dir=tmp, extra_postargs=link_args
            )
            return compile_args, link_args
        except Exception:
            continue
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        msvc = self.compiler.compiler_type == "msvc"
        for ext in self.extensions:
            if DEBUG:
                ext.extra_compile_args += ["/Od"] if msvc else ["-O0", "-g"]
            else:
                ext.extra_compile_args += ["/O2"] if msvc else ["-O3"]
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
        print(
            "sparsebed: building with OpenMP" if flags else
            "sparsebed: OpenMP not found, building single-threaded kernels",
            file=sys.stderr,
        )
        super().build_extensions()


extensions = [
    Extension(
        "sparsebed._kernels",
        ["sparsebed/_kernels.pyx"],
        include_dirs=["sparsebed"],
        # A debug build also takes every wait at the deterministic pass's
        # barrier for a late thread, so that its tests run the team's solo path.
        define_macros=[("SPARSEBED_BOUNDSCHECK", "1" if DEBUG else "0")]
        + ([("SB_BARRIER_SPIN_NS", "0")] if DEBUG else []),
    )
]

setup(
    # force: the directives differ between builds, which timestamps cannot tell.
    ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES, force=True),
    cmdclass={"build_ext": BuildExt},
)
