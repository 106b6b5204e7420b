"""Engine API: engine.load(path) -> Model; Model.run(images, backend=...) -> int32 logits."""
from __future__ import annotations

import threading

import numpy as np

from . import format as fmt
from .graph import Graph, InputError, ModelError
from .native import BackendError, NativeModel

BACKENDS = ("ref", "c", "c-avx2", "c-scalar", "cuda")  # c-avx2 / c-scalar: other builds, for tests


class Model:
    def __init__(self, graph: Graph, data: bytes, name: str = "model"):
        self.graph, self.data, self.name = graph, data, name
        self._native: dict[str, NativeModel] = {}
        self._native_lock = threading.Lock()  # one C model per backend, even when threads ask at once

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.tensors[self.graph.input].shape

    def prepare_input(self, x: np.ndarray) -> np.ndarray:
        """uint8 or float-in-[0, 1] images, (N,H,W,C), (H,W,C) or (N,H,W) for one channel -> uint8 NHWC.
        Anything else raises InputError saying what is wrong."""
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise InputError(f"input is not an array of images: {str(e).splitlines()[0]}") from None
        h, w, c = self.input_shape
        if x.ndim == 3 and x.shape == (h, w, c):
            x = x[None]
        elif x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
            x = x[..., None]
        if x.ndim != 4 or x.shape[1:] != (h, w, c):
            raise InputError(f"input shape {x.shape} does not match the model's NHWC input (N, {h}, {w}, {c})")
        if x.shape[0] == 0:
            raise InputError("empty batch: no images to run")
        if x.dtype == np.uint8:
            return x
        if np.issubdtype(x.dtype, np.floating):
            if not np.isfinite(x).all():
                raise InputError("input holds NaN or infinite values")
            lo, hi = float(x.min()), float(x.max())
            if lo < 0 or hi > 1:
                raise InputError(f"float input must be pixels in [0, 1], not [{lo:g}, {hi:g}]: "
                                 "scale it, or give uint8 pixels")
            return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        raise InputError(f"input dtype {x.dtype} not supported: give uint8 pixels or floats in [0, 1]")

    def run(self, x: np.ndarray, backend: str = "c", threads: int = 1) -> np.ndarray:
        """Run a batch; returns the output as int32, (N, classes) for a 1x1xC output."""
        u8 = self.prepare_input(x)
        self.check_backend(backend)
        if backend == "ref":
            out = self.graph.run_reference(self.graph.quantize_input(u8))
        else:
            out = self.native(backend).run(u8, threads)
        out = out.astype(np.int32)
        return out.reshape(out.shape[0], -1) if out.shape[1:3] == (1, 1) else out

    def check_backend(self, backend: str) -> None:
        """Raise BackendError unless `backend` can run this model here."""
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if backend != "ref":
            self.native(backend)

    def native(self, backend: str = "c") -> NativeModel:
        """The backend's loaded model, made once per Model (the CUDA one holds device-resident buffers)."""
        with self._native_lock:
            if backend not in self._native:
                if backend == "cuda":
                    from .cuda import CudaModel
                    self._native[backend] = CudaModel(self.data)
                else:
                    self._native[backend] = NativeModel(self.data, "native" if backend == "c" else backend[2:])
            return self._native[backend]


def load(path: str) -> Model:
    """Read and validate a model file (raises ModelError with the problem and its byte offset)."""
    data = fmt.read_file(path)
    try:
        graph = fmt.from_bytes(data)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    return Model(graph, data, name=path)


def from_graph(graph: Graph, name: str = "model") -> Model:
    data = fmt.to_bytes(graph)
    return Model(fmt.from_bytes(data), data, name)
