"""Activation ranges: run the float model on calibration images and record |x| of every layer output."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.fx as fx

SAMPLES_PER_TENSOR = 200_000


class _Stats:
    def __init__(self, percentile: float | None, rng: np.random.Generator):
        self.percentile, self.rng = percentile, rng
        self.absmax, self.sample = 0.0, []

    def update(self, t: torch.Tensor) -> None:
        a = t.detach().abs().flatten()
        self.absmax = max(self.absmax, float(a.max())) if a.numel() else self.absmax
        if self.percentile is not None:
            take = min(a.numel(), SAMPLES_PER_TENSOR // 8)
            self.sample.append(a[torch.from_numpy(self.rng.choice(a.numel(), take, replace=False))].numpy())

    def value(self) -> float:
        if self.percentile is None or not self.sample:
            return self.absmax
        return float(np.percentile(np.concatenate(self.sample), self.percentile))


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, stats: dict[str, _Stats]):
        super().__init__(gm)
        self.stats = stats

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.name in self.stats:
            self.stats[n.name].update(out)
        return out


def ranges(gm: fx.GraphModule, names: list[str], batches: list[torch.Tensor], percentile: float | None = None,
           progress: Callable[[int], None] | None = None,
           overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Largest |value| (or its percentile) of each named fx node over the batches; the nodes named in
    `overrides` take their own percentile (sampled from a generator of their own)."""
    overrides = overrides or {}
    rng, own = np.random.default_rng(0), np.random.default_rng(0)
    stats = {n: _Stats(overrides[n], own) if n in overrides else _Stats(percentile, rng) for n in names}
    rec = _Recorder(gm, stats)
    with torch.no_grad():
        for x in batches:
            rec.run(x)
            if progress:
                progress(len(x))
    return {n: s.value() for n, s in stats.items()}
