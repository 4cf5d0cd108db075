"""Per-stage latency: every stage of a pipeline reports its time, not only the total."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict, Iterator

import numpy as np


class LatencySamples:
    """Durations (ms) of one stage, in bounded memory for sessions of any length.

    The count, total and maximum are exact; percentiles are over the most recent
    `capacity` samples (at 30 frames/s, the last 9 minutes), so an overnight run does
    not grow without bound.
    """

    def __init__(self, capacity: int = 16384) -> None:
        self._window = np.zeros(capacity, np.float32)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def append(self, ms: float) -> None:
        self._window[self.count % len(self._window)] = ms
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)

    def __len__(self) -> int:
        return self.count

    def recent(self) -> np.ndarray:
        """The retained samples (order not kept once the window has wrapped)."""
        return self._window[:min(self.count, len(self._window))].astype(np.float64)


class StageTimer:
    """Collects wall-clock durations (ms) per named stage."""

    def __init__(self) -> None:
        self.samples_ms: Dict[str, LatencySamples] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        samples = self.samples_ms.get(name)
        if samples is None:
            samples = self.samples_ms[name] = LatencySamples()
        samples.append(ms)

    def summary(self) -> Dict[str, Dict[str, float]]:
        """{stage: {n, total_ms, p50_ms, p95_ms, p99_ms, max_ms}}."""
        out = {}
        for name, samples in self.samples_ms.items():
            arr = samples.recent()
            out[name] = {
                "n": samples.count, "total_ms": samples.total,
                "p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
                "p99_ms": float(np.percentile(arr, 99)), "max_ms": samples.max,
            }
        return out


def _percentiles(samples: LatencySamples) -> Dict[str, float]:
    if not samples.count:
        return {"n": 0}
    arr = samples.recent()
    return {"n": samples.count, "p50": round(float(np.percentile(arr, 50)), 3),
            "p95": round(float(np.percentile(arr, 95)), 3), "p99": round(float(np.percentile(arr, 99)), 3),
            "max": round(samples.max, 3)}


def process_usage() -> Dict[str, float]:
    """CPU seconds (user + system) and peak/current resident memory of this process, in MB.

    From /proc/self/status (VmHWM, VmRSS) on Linux, else the `resource` module; no
    psutil needed. VmHWM is preferred: ru_maxrss survives exec on Linux, so a process
    started from a large parent would report the parent's peak.
    """
    out = {"cpu_s": time.process_time()}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    out["peak_rss_mb"] = round(int(line.split()[1]) / 1024.0, 1)
                elif line.startswith("VmRSS:"):
                    out["rss_mb"] = round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError, IndexError):
        pass
    if "peak_rss_mb" not in out:
        try:
            import resource

            out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
        except ImportError:  # pragma: no cover - not on Linux
            pass
    return out


class RunTelemetry:
    """Everything a run reports about its cost: stage latencies, frame counters, frame
    age at inference, FLOPs per second executed (from the manifests' FLOPs), CPU share
    and memory. Thread-safe snapshots for the /metrics endpoint."""

    def __init__(self, timer: StageTimer, flops_per_call: Dict[str, int]):
        self.timer = timer
        self.flops_per_call = dict(flops_per_call)  # stage name -> FLOPs per call
        self.counters: Dict[str, float] = {}
        self.frame_ages_ms = LatencySamples()
        self.wall_start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.media_s = 0.0
        self.first_result_s: float = float("nan")

    def set(self, name: str, value: float) -> None:
        self.counters[name] = value

    def snapshot(self) -> Dict:
        wall_s = max(time.perf_counter() - self.wall_start, 1e-9)
        usage = process_usage()
        stages = {}
        for name, values in list(self.timer.samples_ms.items()):
            stages[name] = _percentiles(values)
        executed = 0.0
        for stage, flops in self.flops_per_call.items():
            executed += flops * len(self.timer.samples_ms.get(stage, ()))
        return {
            "wall_s": round(wall_s, 3),
            "media_s": round(self.media_s, 3),
            "realtime_factor": round(self.media_s / wall_s, 2),
            "first_result_s": round(self.first_result_s, 3) if self.first_result_s == self.first_result_s else None,
            "stages_ms": stages,
            "counters": dict(self.counters),
            "frame_age_ms": _percentiles(self.frame_ages_ms),
            "flops_executed": int(executed),
            "flops_per_s": round(executed / wall_s, 1),
            "cpu_share": round((usage["cpu_s"] - self.cpu_start) / wall_s, 3),
            "peak_rss_mb": usage.get("peak_rss_mb"),
            "rss_mb": usage.get("rss_mb"),
        }


def prometheus_text(snapshot: Dict, prefix: str = "edge") -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    lines = []

    def metric(name: str, kind: str, help_text: str, samples) -> None:
        lines.append(f"# HELP {prefix}_{name} {help_text}")
        lines.append(f"# TYPE {prefix}_{name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            label_text = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
            lines.append(f"{prefix}_{name}{label_text} {float(value):g}")

    stage_samples = []
    for stage, stats in sorted(snapshot["stages_ms"].items()):
        for q in ("p50", "p95", "p99"):
            if q in stats:
                stage_samples.append(({"stage": stage.replace("_ms", ""), "quantile": q[1:]}, stats[q]))
    metric("stage_latency_ms", "gauge", "Stage latency percentiles in milliseconds.", stage_samples)
    metric("frames", "counter", "Video frames by fate.",
           [({"kind": k.replace("frames_", "")}, v) for k, v in sorted(snapshot["counters"].items())
            if k.startswith("frames_")])
    other = [(k, v) for k, v in sorted(snapshot["counters"].items()) if not k.startswith("frames_")]
    for name, value in other:
        metric(name, "gauge", f"{name.replace('_', ' ')}.", [({}, value)])
    age = snapshot["frame_age_ms"]
    metric("frame_age_ms", "gauge", "Frame age at inference in milliseconds.",
           [({"quantile": q[1:]}, age[q]) for q in ("p50", "p95", "p99") if q in age])
    metric("flops_per_second", "gauge", "Model FLOPs executed per wall-clock second.",
           [({}, snapshot["flops_per_s"])])
    metric("realtime_factor", "gauge", "Media seconds processed per wall-clock second.",
           [({}, snapshot["realtime_factor"])])
    metric("cpu_share", "gauge", "CPU seconds per wall-clock second (1.0 = one core).",
           [({}, snapshot["cpu_share"])])
    metric("resident_memory_mb", "gauge", "Resident memory in MB.",
           [({"kind": "current"}, snapshot.get("rss_mb")), ({"kind": "peak"}, snapshot.get("peak_rss_mb"))])
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves `/metrics` (Prometheus text) and `/metrics.json` from a thread.

    Binds 127.0.0.1 by default; port 0 picks a free port (see `.port`).
    """

    def __init__(self, telemetry: RunTelemetry, host: str = "127.0.0.1", port: int = 0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = telemetry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/metrics":
                    body = prometheus_text(owner.snapshot()).encode()
                    kind = "text/plain; version=0.0.4"
                elif self.path == "/metrics.json":
                    import json

                    body = json.dumps(owner.snapshot()).encode()
                    kind = "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep the run's output clean
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            from edge.errors import EdgeError

            raise EdgeError(f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}; "
                            "change telemetry.http_port") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
