"""Regenerate the fuzz target's seed corpus (cbackend/fuzz/corpus/): real model files, small.

    python cbackend/fuzz/make_corpus.py [OUT_DIR]

The zoo model, one small graph per op and edge case (tests/randgraph.py) and the multi-op chains of
cbackend/tests/make_cases.py: valid files, so the fuzzer starts from inputs that reach every op's
checks and kernels. The committed corpus stays a few hundred KB.
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from make_cases import graphs  # noqa: E402  (also puts the repository and tests/ on sys.path)

from engine import format as fmt  # noqa: E402

LIMIT = 16 << 10  # bytes per seed


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    for stale in os.listdir(out):  # seeds a former op table or size limit made, which no longer load
        if stale.endswith(".mfe"):
            os.remove(os.path.join(out, stale))
    total = 0
    for name, g, _ in graphs(per_op=4):
        data = fmt.to_bytes(g)
        if len(data) > LIMIT:
            continue
        with open(os.path.join(out, name + ".mfe"), "wb") as f:
            f.write(data)
        total += len(data)
    print(f"wrote {len(os.listdir(out))} seeds, {total} bytes, to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus"))
