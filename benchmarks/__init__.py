"""`python cli.py bench`: the engine measured against PyTorch and ONNX Runtime, side by side in one process.

Parts (each a module; `command.py` holds the click command and imports nothing heavy at import time):
  seed.py     seed 000's experiment: a 10x32x32x1024 tensor through torch's fp32 1x1 conv, the paper's
              radix-32 tensordot WHT in torch, our int8 1x1 conv and our `wht` layer
  growth.py   `wht` vs int8 1x1 conv vs torch 1x1 conv as the channels grow (log-log slopes)
  models.py   whole models (mbv2, mbv2-wht) on our engine, PyTorch eager and ONNX Runtime fp32 / int8;
              file sizes, peak RSS (rss_child.py), per-op hotspots of our int8 mbv2
  plots.py    PNG charts (matplotlib, optional: requirements-bench.txt)
  common.py   interleaved median timing, machine description, slopes
"""
