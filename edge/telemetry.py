"""Per-stage latency: every stage of a pipeline reports its time, not only the total."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator, List

import numpy as np


class StageTimer:
    """Collects wall-clock durations (ms) per named stage."""

    def __init__(self) -> None:
        self.samples_ms: Dict[str, List[float]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        self.samples_ms.setdefault(name, []).append(ms)

    def summary(self) -> Dict[str, Dict[str, float]]:
        """{stage: {n, total_ms, p50_ms, p95_ms, p99_ms, max_ms}}."""
        out = {}
        for name, values in self.samples_ms.items():
            arr = np.asarray(values)
            out[name] = {
                "n": int(arr.size), "total_ms": float(arr.sum()),
                "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
                "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max()),
            }
        return out
