"""bench/: the benchmark people run on a device (see bench/latency.py)."""
