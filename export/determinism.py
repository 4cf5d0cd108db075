"""Reproducible builds: the shipped files must not depend on the host's core count.

Calibration (int8 scales) and training run torch kernels whose reductions are split
across threads; a different thread count changes the last bits, which moves
quantization scales and trained weights. Builds therefore run on one thread (the
models are tiny: a build takes about a minute either way).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

BUILD_THREADS = 1


@contextlib.contextmanager
def build_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
