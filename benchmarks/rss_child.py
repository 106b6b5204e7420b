"""Peak RSS of one peer, measured in its own process so runtimes do not mix:

    python -m benchmarks.rss_child KIND PATH BATCH THREADS      (KIND: engine, torch, ort)

imports only what KIND needs, notes its peak RSS, loads PATH, runs a BATCH three times and prints one JSON
line: {"import_kb": peak RSS after the imports, "peak_kb": peak RSS at the end, "method": ...} in KiB.

Peak RSS is this process's VmHWM (/proc/self/status) where Linux has it, else getrusage's ru_maxrss.
Not ru_maxrss on Linux: a forked child inherits the parent's high-water mark through fork and execve (the
kernel keeps the larger of the old address space's peak and its own), so every child of a bench process
that has torch loaded would report at least the parent's ~500 MB."""
from __future__ import annotations

import json
import os
import resource
import sys


def peak_kb() -> tuple[int, str]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]), "VmHWM"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def main(argv: list[str]) -> int:
    kind, path, batch, threads = argv[0], argv[1], int(argv[2]), int(argv[3])
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy as np
    rng = np.random.default_rng(0)
    if kind == "engine":
        import engine
        base = peak_kb()[0]
        m = engine.load(path)
        x = rng.integers(0, 256, (batch, *m.input_shape), dtype=np.uint8)
        run = lambda: m.run(x, "c", threads)  # noqa: E731
    elif kind == "torch":
        import torch

        from training.checkpoint import load
        torch.set_num_threads(threads)
        base = peak_kb()[0]
        model, ck = load(path)
        shape = ck.get("input_shape", (1, 28, 28))
        x = torch.from_numpy(rng.standard_normal((batch, *shape), dtype=np.float32))

        def run():
            with torch.inference_mode():
                model(x)
    elif kind == "ort":
        import onnxruntime  # noqa: F401 - counted with the imports

        from benchmarks.onnx_export import session
        base = peak_kb()[0]
        s = session(path, threads)
        shape = [d if isinstance(d, int) else batch for d in s.get_inputs()[0].shape]
        x = rng.standard_normal(shape, dtype=np.float32)
        run = lambda: s.run(None, {"x": x})  # noqa: E731
    else:
        print(f"unknown kind {kind}", file=sys.stderr)
        return 2
    for _ in range(3):
        run()
    peak, method = peak_kb()
    print(json.dumps({"import_kb": base, "peak_kb": peak, "method": method}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
