"""Per-stage latency: every stage of a pipeline reports its time, not only the total."""
from __future__ import annotations

import bisect
import time
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, Optional

import numpy as np

# Histogram bucket upper bounds (ms) for /metrics: exact cumulative counts in O(1) memory.
BUCKETS_MS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)


class LatencySamples:
    """Durations (ms) of one stage, in bounded memory for sessions of any length.

    The count, total, maximum and histogram buckets (BUCKETS_MS) are exact; percentiles
    are over the most recent `capacity` samples (at 30 frames/s, the last 9 minutes), so
    an overnight run does not grow without bound.
    """

    def __init__(self, capacity: int = 16384, parent: Optional[LatencySamples] = None) -> None:
        # The window starts small and doubles up to `capacity`: a short session (a kiosk
        # visit, one of many in a process) allocates little and frees it whole.
        self.capacity = int(capacity)
        self._window = np.zeros(min(256, self.capacity), np.float32)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.buckets = [0] * (len(BUCKETS_MS) + 1)  # per bucket, the last one past BUCKETS_MS[-1]
        self.parent = parent

    def append(self, ms: float) -> None:
        if self.count == len(self._window) < self.capacity:
            self._window = np.concatenate([self._window, np.zeros(min(len(self._window), self.capacity
                                                                        - len(self._window)), np.float32)])
        if self.capacity:  # capacity 0: counts, totals and buckets only (a process-wide histogram)
            self._window[self.count % len(self._window)] = ms
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)
        self.buckets[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        if self.parent is not None:
            self.parent.append(ms)

    def __len__(self) -> int:
        return self.count

    def recent(self) -> np.ndarray:
        """The retained samples (order not kept once the window has wrapped)."""
        return self._window[:min(self.count, len(self._window))].astype(np.float64)


class StageTimer:
    """Collects wall-clock durations (ms) per named stage. A session's timer forwards
    each sample to its parent (the Screener's, which spans every session: /metrics)."""

    def __init__(self, parent: Optional[StageTimer] = None, window: int = 16384) -> None:
        self.samples_ms: Dict[str, LatencySamples] = {}
        self.parent = parent
        self.window = window  # samples kept per stage for percentiles (0: none, buckets only)

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
            parent = None if self.parent is None else self.parent.stage_samples(name)
            samples = self.samples_ms[name] = LatencySamples(self.window, parent)
        samples.append(ms)

    def stage_samples(self, name: str) -> LatencySamples:
        """The samples of a stage, created empty when it has none yet."""
        samples = self.samples_ms.get(name)
        if samples is None:
            parent = None if self.parent is None else self.parent.stage_samples(name)
            samples = self.samples_ms[name] = LatencySamples(self.window, parent)
        return samples

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


def _seconds_buckets(samples: LatencySamples):
    """Cumulative (upper bound in s, count) pairs for a Prometheus histogram."""
    out, running = [], 0
    for bound_ms, count in zip(BUCKETS_MS, samples.buckets):
        running += count
        out.append((repr(bound_ms / 1000.0), running))
    out.append(("+Inf", samples.count))
    return out


class EngineCollector:
    """prometheus_client collector over a Screener: what /metrics serves.

    Stage latency and frame age as histograms in seconds (over every session of the
    process), counters ending in `_total` (frames by fate, ticks, detections, audio
    samples, sessions), and gauges for the running session's pace, CPU share, memory and
    FLOPs per second. Counts and timings only: no personal data.
    """

    def __init__(self, screener, prefix: str = "edge"):
        self.screener = screener
        self.prefix = prefix

    def describe(self):
        return []  # unchecked collector: its families depend on what has run

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        p = self.prefix
        screener = self.screener
        stages = HistogramMetricFamily(f"{p}_stage_latency_seconds", "Pipeline stage latency.", labels=["stage"])
        for name, samples in sorted(screener.timer.samples_ms.items()):
            stage = name[:-3] if name.endswith("_ms") else name
            stages.add_metric([stage], _seconds_buckets(samples), samples.total / 1000.0)
        yield stages
        ages = screener.frame_ages_ms
        age = HistogramMetricFamily(f"{p}_frame_age_seconds", "Age of a frame when its face was classified.")
        age.add_metric([], _seconds_buckets(ages), ages.total / 1000.0)
        yield age
        counters = screener.live_counters()
        frames = CounterMetricFamily(f"{p}_frames", "Video frames by fate.", labels=["kind"])
        for kind in ("in", "analysed", "with_face", "dropped"):
            frames.add_metric([kind], counters.get("frames_" + kind, 0))
        yield frames
        audio = CounterMetricFamily(f"{p}_audio_samples", "16 kHz audio samples by fate.", labels=["kind"])
        for kind, key in (("in", "audio_samples_in"), ("overflow", "audio_overflow_samples"),
                          ("gap", "audio_gap_samples")):
            audio.add_metric([kind], counters.get(key, 0))
        yield audio
        for name, key, text in (("ticks", "ticks", "100 ms fusion ticks closed."),
                                ("face_detections", "face_detections", "Face detector runs."),
                                ("face_track_reuses", "face_track_reuses", "Frames whose face was tracked."),
                                ("sessions", "sessions", "Sessions started.")):
            yield CounterMetricFamily(f"{p}_{name}", text, value=counters.get(key, 0))
        snapshot = screener.live_snapshot()
        if snapshot:
            for name, key, text in (("realtime_factor", "realtime_factor", "Media seconds per wall second."),
                                    ("cpu_share", "cpu_share", "CPU seconds per wall second (1.0 = one core)."),
                                    ("flops_per_second", "flops_per_s", "Model FLOPs executed per wall second.")):
                yield GaugeMetricFamily(f"{p}_{name}", text + " (the current or last session)",
                                        value=snapshot.get(key) or 0.0)
        usage = process_usage()
        memory = GaugeMetricFamily(f"{p}_resident_memory_bytes", "Resident memory.", labels=["kind"])
        for kind, key in (("current", "rss_mb"), ("peak", "peak_rss_mb")):
            if usage.get(key) is not None:
                memory.add_metric([kind], usage[key] * 1024 * 1024)
        yield memory


def prometheus_text(screener) -> str:
    """The Screener's metrics in the Prometheus text exposition format."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(screener))
    return generate_latest(registry).decode()


class MetricsServer:
    """Serves `/metrics` (Prometheus text, prometheus_client) and `/metrics.json` (the
    running or last session's telemetry) from a thread (edge.http_server: Host and token
    checks, bounded connections and timeouts).

    Binds 127.0.0.1 by default; port 0 picks a free port (see `.port`). server_names: names
    besides this server's addresses that a Host header may give (a scraper's target name).
    """

    def __init__(self, screener, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None,
                 server_names: Iterable[str] = (), limits=None):
        import json

        from prometheus_client import CONTENT_TYPE_LATEST

        from edge.config import is_loopback
        from edge.errors import EdgeError
        from edge.http_server import BoundedHTTPServer, GuardedHandler, HttpLimits

        if not is_loopback(host) and not token:
            raise EdgeError(f"/metrics on {host} (not loopback) needs telemetry.token; "
                            "or serve it on 127.0.0.1")

        class Handler(GuardedHandler):
            server_version = "edge-metrics"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if not self.allowed():
                    return
                path = self.request_path
                if path == "/metrics":
                    body = prometheus_text(screener).encode()
                    kind = CONTENT_TYPE_LATEST
                elif path == "/metrics.json":
                    body = json.dumps(screener.live_snapshot()).encode()
                    kind = "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        try:  # a scraper holds one connection at a time: a few workers are plenty
            self.server = BoundedHTTPServer((host, port), Handler, token, server_names,
                                            limits or HttpLimits(max_workers=8, max_pending=64))
        except (OSError, OverflowError) as exc:
            raise EdgeError(f"cannot serve /metrics on {host}:{port}: {getattr(exc, 'strerror', None) or exc}; "
                            "change telemetry.http_port") from None
        self.port = self.server.port
        self.server.start("metrics-http")

    def close(self) -> None:
        self.server.close()
