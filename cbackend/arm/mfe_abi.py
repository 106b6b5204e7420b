"""engine/_mfe_native for boards: the C backend's libmfe.so through cffi's ABI mode.

`python cli.py cross-compile` ships this file as _mfe_native.py beside libmfe.so. Put both into the
board's engine/ folder (or set MFE_LIB to the library's path): engine.native imports
engine._mfe_native and finds this module where no compiled extension exists, so the engine runs
unchanged with no compiler and no Python headers on the board. Exposes `ffi` and `lib` like the
API-mode extension that cbackend/build_ffi.py builds.
"""
from __future__ import annotations

import os

from cffi import FFI

# the C API as cbackend/build_ffi.py declares it (cbackend/include/mfe.h)
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


def _library_path() -> str:
    env = os.environ.get("MFE_LIB")
    if env:
        return env
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libmfe.so")
    return here if os.path.exists(here) else "libmfe.so"  # else the loader's search path


def _cpu_has_dotprod() -> bool | None:
    """Whether this aarch64 CPU has the ARMv8.2 dot-product instructions (None: cannot tell)."""
    try:
        with open("/proc/cpuinfo") as f:
            feats = [l.split(":", 1)[1].split() for l in f if l.lower().startswith("features")]
    except OSError:
        return None
    return all("asimddp" in f for f in feats) if feats else None


ffi = FFI()
ffi.cdef(CDEF)
try:
    lib = ffi.dlopen(_library_path())
except OSError as e:
    raise ImportError(f"cannot load libmfe.so ({e}); set MFE_LIB to its path") from None
if ffi.string(lib.mfe_isa()) == b"neon-dotprod" and os.uname().machine == "aarch64" and _cpu_has_dotprod() is False:
    raise ImportError("libmfe.so was built for ARMv8.2 dot products (sdot), which this CPU lacks: "
                      "cross-compile with --cpu cortex-a57")
