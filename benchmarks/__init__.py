"""Benchmarks: print figures measured on this machine, never fail on time.

- ``python -m benchmarks.inference``: inspector time per 60-patch acquisition
  under ONNX Runtime, against the 500 ms slot.
- ``python -m benchmarks.training``: training throughput (patches/s) and the
  input pipeline's share of step time.
- ``python -m benchmarks.gpu_paper``: the paper profile's inspector on a GPU in fp16
  (prepared here, timed through PyTorch where a GPU is).
"""
