"""The CUDA backend through cffi (ABI mode): build/cuda/libmfe_cuda.so, made by `make cuda`.

One CudaModel per Model (engine.runtime caches it): the library loads the file with the C loader, uploads
the weights once and keeps device-resident activations planned once; runs hold a per-model lock. Where the
library is not built, cannot be loaded, or finds no usable GPU, every entry point raises BackendError with
one line saying why. MFE_CUDA_LIB overrides the library's path; MFE_CUDA_DEVICE picks the device (0)."""
from __future__ import annotations

import os
import threading

import numpy as np

from .native import BackendError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "cbackend", "cuda", "mfe_cuda.h")


def _cdef() -> str:
    """The header's extern "C" block: the binding declares exactly what the library exports."""
    with open(HEADER) as f:
        text = f.read()
    return text.split('extern "C" {\n#endif\n', 1)[1].split("#ifdef __cplusplus\n}", 1)[0]


EFORMAT = 2
ERRLEN = 512

_lock = threading.Lock()
_lib = None


def library_path() -> str:
    return os.environ.get("MFE_CUDA_LIB") or os.path.join(ROOT, "build", "cuda", "libmfe_cuda.so")


def library():
    """(ffi, lib) of the CUDA library, loaded once; BackendError where it is not built or cannot load."""
    global _lib
    with _lock:
        if _lib is None:
            path = library_path()
            if not os.path.exists(path):
                raise BackendError(f"the CUDA backend is not built: run `make cuda` (needs nvcc); no {path}")
            try:
                from cffi import FFI
            except ImportError:
                raise BackendError("the CUDA backend needs the Python package cffi") from None
            ffi = FFI()
            ffi.cdef(_cdef())
            try:
                lib = ffi.dlopen(path)
            except OSError as e:
                raise BackendError(f"the CUDA backend library cannot be loaded: {str(e).splitlines()[0]}") from None
            _lib = (ffi, lib)
        return _lib


def _error(ffi, err) -> str:
    return ffi.string(err).decode(errors="replace")


def device_count() -> int:
    """Number of CUDA devices; BackendError (no GPU, no driver, library not built) when there is none."""
    ffi, lib = library()
    err, count = ffi.new(f"char[{ERRLEN}]"), ffi.new("int32_t *")
    if lib.mfe_cuda_device_count(count, err, ERRLEN) != 0:
        raise BackendError(f"CUDA backend: {_error(ffi, err)}")
    return int(count[0])


def unavailable_reason() -> str | None:
    """None where the CUDA backend can run here, else the one-line reason (for skips and messages)."""
    try:
        device_count()
    except BackendError as e:
        return str(e)
    return None


def device_name(device: int = 0) -> str:
    ffi, lib = library()
    err, name = ffi.new(f"char[{ERRLEN}]"), ffi.new("char[256]")
    if lib.mfe_cuda_device_name(device, name, 256, err, ERRLEN) != 0:
        raise BackendError(f"CUDA backend: {_error(ffi, err)}")
    return ffi.string(name).decode(errors="replace")


def build_info() -> str:
    ffi, lib = library()
    return ffi.string(lib.mfe_cuda_build_info()).decode()


def _default_device() -> int:
    v = os.environ.get("MFE_CUDA_DEVICE", "0")
    try:
        return int(v)
    except ValueError:
        raise BackendError(f"MFE_CUDA_DEVICE must be a device number, not {v!r}") from None


class CudaModel:
    def __init__(self, data: bytes, device: int | None = None):
        self.ffi, self.lib = ffi, lib = library()
        device = _default_device() if device is None else device
        err, ptr = ffi.new(f"char[{ERRLEN}]"), ffi.new("mfe_cuda_model **")
        rc = lib.mfe_cuda_load(data, len(data), device, ptr, err, ERRLEN)
        if rc == EFORMAT:
            from .graph import ModelError
            raise ModelError(_error(ffi, err))
        if rc != 0:
            msg = _error(ffi, err)
            raise BackendError(msg if msg.startswith("CUDA backend") else f"CUDA backend: {msg}")
        self._m = ffi.gc(ptr[0], lib.mfe_cuda_free)
        hwc, dt = ffi.new("int32_t[3]"), ffi.new("int32_t *")
        lib.mfe_cuda_output_shape(self._m, hwc, dt)
        self.out_shape = tuple(hwc)
        lib.mfe_cuda_input_shape(self._m, hwc)
        self.in_shape = tuple(hwc)
        self.out_dtype = np.int32 if dt[0] == 2 else np.int8
        self.device = ffi.string(lib.mfe_cuda_model_device(self._m)).decode(errors="replace")
        self.isa = self.device  # what `cli.py run` prints beside the backend's name
        self._lock = threading.Lock()

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.uint8)
        if x.ndim != 4 or x.shape[1:] != self.in_shape or not 0 <= x.shape[0] < 2**31:
            from .graph import InputError
            raise InputError(f"input shape {x.shape} does not match the model's NHWC input "
                             f"(N, {', '.join(map(str, self.in_shape))})")
        return x

    def run(self, x: np.ndarray, threads: int = 1, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 (N, H, W, C) -> output (N, H', W', C') in the model's output dtype. `threads` is accepted
        for the C backend's signature and checked the same way; the GPU does not use it."""
        x = self._check(x)
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 256:
            raise BackendError(f"threads must be an integer in [1, 256], not {threads!r}")
        shape = (x.shape[0], *self.out_shape)
        if out is None:
            out = np.empty(shape, dtype=self.out_dtype)
        elif out.shape != shape or out.dtype != self.out_dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a contiguous {np.dtype(self.out_dtype).name} array of shape {shape}")
        err = self.ffi.new(f"char[{ERRLEN}]")
        with self._lock:
            rc = self.lib.mfe_cuda_run(self._m, self.ffi.from_buffer("uint8_t[]", x), x.shape[0],
                                       self.ffi.from_buffer(out), err, ERRLEN)
        if rc != 0:
            raise BackendError(f"CUDA backend: {_error(self.ffi, err)}")
        return out

    @property
    def max_batch(self) -> int:
        return int(self.lib.mfe_cuda_max_batch(self._m))

    def time_graph(self, x: np.ndarray, reps: int, warmup: int = 3) -> list[float]:
        """Milliseconds of `reps` passes of every node over x (already on the device: no copies), CUDA events."""
        x = self._check(x)
        times, err = self.ffi.new(f"float[{reps}]"), self.ffi.new(f"char[{ERRLEN}]")
        with self._lock:
            rc = self.lib.mfe_cuda_time_graph(self._m, self.ffi.from_buffer("uint8_t[]", x), x.shape[0], warmup, reps,
                                              times, err, ERRLEN)
        if rc != 0:
            raise BackendError(f"CUDA backend: {_error(self.ffi, err)}")
        return [float(t) for t in times]


def time_copy(nbytes: int, reps: int, warmup: int = 3, device: int = 0) -> list[float]:
    """Milliseconds of `reps` device-to-device copies of nbytes (cudaMemcpyAsync, CUDA events)."""
    ffi, lib = library()
    times, err = ffi.new(f"float[{reps}]"), ffi.new(f"char[{ERRLEN}]")
    if lib.mfe_cuda_time_copy(device, nbytes, warmup, reps, times, err, ERRLEN) != 0:
        raise BackendError(f"CUDA backend: {_error(ffi, err)}")
    return [float(t) for t in times]
