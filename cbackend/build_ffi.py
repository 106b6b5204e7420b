"""Build the C backend as cffi API-mode extension modules (run by `make build`).

engine/_mfe_native: kernels for this machine's instruction set (-march=native), OpenMP threads.
engine/_mfe_avx2 (x86-64 only): the AVX2 kernels without AVX-512, so a machine that has AVX-512 tests them too.
engine/_mfe_scalar: the portable scalar kernels only (MFE_FORCE_SCALAR), to test them bit-exact too.
"""
from __future__ import annotations

import os
import pathlib
import platform
import shutil
import sys

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCES = sorted(str(p) for p in (HERE / "src").glob("*.c"))
CDEF = """
typedef struct mfe_model mfe_model;
int mfe_load(const void *data, size_t size, mfe_model **out, char *err, size_t errlen);
void mfe_free(mfe_model *m);
void mfe_input_shape(const mfe_model *m, int32_t hwc[3]);
void mfe_output_shape(const mfe_model *m, int32_t hwc[3], int32_t *dtype);
int32_t mfe_input_zero_point(const mfe_model *m);
int mfe_run(mfe_model *m, const uint8_t *input, int32_t n, void *output, int32_t threads, char *err, size_t errlen);
int mfe_run_profiled(mfe_model *m, const uint8_t *input, int32_t n, void *output, int32_t threads,
                     double *node_seconds, char *err, size_t errlen);
int32_t mfe_node_count(const mfe_model *m);
const char *mfe_isa(void);
"""
VARIANTS = {
    "native": ["-O3", os.environ.get("MFE_MARCH", "-march=native")],
    "scalar": ["-O2", "-DMFE_FORCE_SCALAR"],
}
if platform.machine() in ("x86_64", "AMD64"):
    VARIANTS["avx2"] = ["-O3", "-march=haswell"]


def build(variant: str) -> str:
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(f"engine._mfe_{variant}", '#include "mfe.h"', sources=SOURCES,
                   include_dirs=[str(HERE / "include"), str(HERE / "src")],
                   extra_compile_args=["-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                       "-Werror=implicit-function-declaration", *VARIANTS[variant]],
                   extra_link_args=["-fopenmp"])
    built = pathlib.Path(ffi.compile(tmpdir=str(ROOT / "build"), verbose=False))
    dest = ROOT / "engine" / built.name
    tmp = dest.with_suffix(".tmp")
    shutil.copy(built, tmp)
    os.replace(tmp, dest)  # a process that has the old module loaded keeps its (unlinked) copy
    return str(dest)


if __name__ == "__main__":
    for v in sys.argv[1:] or list(VARIANTS):
        print(f"built {build(v)}")
