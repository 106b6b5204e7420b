"""The C backend through cffi: one loaded C model per Model, guarded by a lock (mfe_run reuses buffers)."""
from __future__ import annotations

import importlib
import threading

import numpy as np


class BackendError(RuntimeError):
    """A backend cannot run here (not built, no device)."""


def _module(variant: str):
    try:
        return importlib.import_module(f"engine._mfe_{variant}")
    except ImportError:
        raise BackendError(f"C backend '{variant}' is not built: run `make build`") from None


class NativeModel:
    def __init__(self, data: bytes, variant: str = "native"):
        mod = _module(variant)
        self.ffi, self.lib = mod.ffi, mod.lib
        self.isa = self.ffi.string(self.lib.mfe_isa()).decode()
        err = self.ffi.new("char[256]")
        ptr = self.ffi.new("mfe_model **")
        if self.lib.mfe_load(data, len(data), ptr, err, 256) != 0:
            from .graph import ModelError
            raise ModelError(self.ffi.string(err).decode())
        self._m = self.ffi.gc(ptr[0], self.lib.mfe_free)
        hwc, dt = self.ffi.new("int32_t[3]"), self.ffi.new("int32_t *")
        self.lib.mfe_output_shape(self._m, hwc, dt)
        self.out_shape = tuple(hwc)
        self.lib.mfe_input_shape(self._m, hwc)
        self.in_shape = tuple(hwc)
        self.out_dtype = np.int32 if dt[0] == 2 else np.int8
        self.node_count = self.lib.mfe_node_count(self._m)
        self._lock = threading.Lock()

    def run(self, x: np.ndarray, threads: int = 1, out: np.ndarray | None = None,
            node_seconds: np.ndarray | None = None) -> np.ndarray:
        """uint8 (N, H, W, C) -> output (N, H', W', C') in the model's output dtype (into `out` if given).
        node_seconds: a float64 array of one entry per node, to which each node's wall time is added."""
        x = np.ascontiguousarray(x, dtype=np.uint8)
        if x.ndim != 4 or x.shape[1:] != self.in_shape or not 0 <= x.shape[0] < 2**31:
            from .graph import InputError  # the C code reads N * H * W * C bytes: refuse anything else
            raise InputError(f"input shape {x.shape} does not match the model's NHWC input (N, {', '.join(map(str, self.in_shape))})")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 256:
            raise BackendError(f"threads must be an integer in [1, 256], not {threads!r}")
        threads = int(threads)
        shape = (x.shape[0], *self.out_shape)
        if out is None:
            out = np.empty(shape, dtype=self.out_dtype)
        elif out.shape != shape or out.dtype != self.out_dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a contiguous {np.dtype(self.out_dtype).name} array of shape {shape}")
        if node_seconds is not None and (node_seconds.shape != (self.node_count,) or node_seconds.dtype != np.float64
                                         or not node_seconds.flags.c_contiguous):
            raise ValueError(f"node_seconds must be a contiguous float64 array of {self.node_count} entries")
        err = self.ffi.new("char[256]")
        profile = self.ffi.NULL if node_seconds is None else self.ffi.from_buffer("double[]", node_seconds)
        with self._lock:
            rc = self.lib.mfe_run_profiled(self._m, self.ffi.from_buffer("uint8_t[]", x), x.shape[0],
                                           self.ffi.from_buffer(out), threads, profile, err, 256)
        if rc != 0:
            raise BackendError(self.ffi.string(err).decode())
        return out
