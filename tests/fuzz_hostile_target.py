"""Fuzz targets for the surfaces of issue 21, run in their own process:

    python tests/fuzz_hostile_target.py --target image --seconds 600 --engine atheris

Targets: `yaml` (a profile through edge.config), `json` (a sidecar through
edge.safe_load.load_json), `manifest` (a model folder's manifest.json through
edge.manifest), `image` (an image file through the header check, then OpenCV when it
passes), `http` (raw requests to the kiosk's server and to /metrics). Each input must end
in its value or a one-line EdgeError: any other exception, a hang (libFuzzer -timeout) or
memory over the limit (-rss_limit_mb) is a finding. Engines: atheris (coverage-guided,
libFuzzer) or `mutate` (seeded random mutation, no extra package). The last line printed
is a JSON record: target, engine, inputs, seconds, peak RSS, findings.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # hostile_support, when run as a script

import numpy as np  # noqa: E402

from edge.errors import EdgeError  # noqa: E402

RSS_LIMIT_MB = 1536  # the image target maps OpenCV (450 MB of address space) and decodes
IMAGE_BUDGET = 50_000_000
DECODE_BELOW = 4_000_000  # decode what passes when smaller than this: the fuzzer's time goes to headers
_WORK = Path(tempfile.mkdtemp(prefix="fuzz-hostile-"))


class Finding(Exception):
    """A property that does not hold (not an exception of the code under test)."""


# ---------------------------------------------------------------- targets
def target_yaml(data: bytes) -> None:
    from edge.config import parse_config
    from edge.safe_load import load_yaml

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        parse_config(load_yaml(text, "config fuzz.yaml"), "config fuzz.yaml")
    except EdgeError as exc:
        _one_line(exc)


def target_json(data: bytes) -> None:
    from edge.safe_load import load_json

    try:
        load_json(data, "sidecar fuzz.json")
    except EdgeError as exc:
        _one_line(exc)


def target_manifest(data: bytes) -> None:
    from edge.manifest import load_manifest

    folder = _WORK / "models" / "m"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_bytes(data)
    try:
        manifest = load_manifest("m", str(folder.parent))
        for entry in manifest.files:
            path = manifest.folder / entry["file"]
            if path.resolve().parent != folder.resolve():
                raise Finding(f"a manifest entry leaves its folder: {entry['file']!r}")
            try:
                manifest.verified_path(entry)
            except EdgeError as exc:
                _one_line(exc)
            manifest.find_file(str(entry["format"]), str(entry["precision"]))
        _ = manifest.labels, manifest.preprocess, manifest.demo_weights, manifest.name
    except EdgeError as exc:
        _one_line(exc)


def target_image(data: bytes) -> None:
    import cv2

    from edge.capture.image_file import check_image_file

    path = _WORK / "fuzz.img"
    path.write_bytes(data)
    try:
        width, height = check_image_file(path, IMAGE_BUDGET)
    except EdgeError as exc:
        _one_line(exc)
        return
    if width * height > DECODE_BELOW:
        return
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return  # the app turns this into one line (edge/apps/face.py)
    if image is not None and image.shape[0] * image.shape[1] > width * height:
        raise Finding(f"decoded {image.shape[1]}x{image.shape[0]}, the header check read {width}x{height}")


_SERVERS = {}


def _servers():
    if not _SERVERS:
        from test_http_server import StubController, StubScreener

        class AnyActionController(StubController):
            """Every action the kiosk's page may post (back, answer, ...) answers the state."""

            def __getattr__(self, name: str):
                return lambda *args, **kwargs: self.state()

        from edge.apps.kiosk.server import KioskServer
        from edge.http_server import HttpLimits
        from edge.telemetry import MetricsServer

        limits = HttpLimits(head_timeout_s=0.5, idle_timeout_s=0.5)
        page = {"index.html": b"<html>kiosk</html>", "kiosk.js": b"", "kiosk.css": b""}
        _SERVERS["kiosk"] = KioskServer(AnyActionController(), "127.0.0.1", 0, "tok", page,
                                        server_names=["kiosk.example"], limits=limits).start()
        _SERVERS["metrics"] = MetricsServer(StubScreener(), "127.0.0.1", 0, "tok", server_names=["gw.example"],
                                            limits=limits)
        for server in _SERVERS.values():
            server.handle_error = _server_error
        import logging

        class Collect(logging.Handler):  # "internal error serving ...": the servers' own catch-all
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.ERROR:
                    _ERRORS.append(self.format(record))

        logging.getLogger("edge.http").addHandler(Collect())
        logging.getLogger("edge.http").propagate = False
    return _SERVERS


_ERRORS = []


def _server_error(request, client_address) -> None:
    import traceback

    _ERRORS.append(traceback.format_exc())


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def target_http(data: bytes) -> None:
    servers = _servers()
    which = "kiosk" if data[:1] and data[0] & 1 else "metrics"
    port = servers[which].port
    raw = data[1:].replace(b"{port}", str(port).encode())
    _exchange(port, raw)
    if _ERRORS:
        raise Finding(f"{which} server error: {_ERRORS.pop()[-800:]}")
    target_http.count = getattr(target_http, "count", 0) + 1
    if target_http.count % 200 == 0:  # still answering, threads bounded
        ok = _exchange(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer tok\r\n\r\n"
                       % port)
        if not ok.startswith(b"HTTP/1."):
            raise Finding(f"{which} server stopped answering")
        import threading

        if threading.active_count() > 64:
            raise Finding(f"{threading.active_count()} threads")


def _one_line(exc: EdgeError) -> None:
    text = str(exc)
    if "\n" in text or len(text) > 1000:
        raise Finding(f"an error of {len(text)} characters over {text.count(chr(10)) + 1} lines: {text[:200]!r}")


TARGETS = {"yaml": target_yaml, "json": target_json, "manifest": target_manifest, "image": target_image,
           "http": target_http}


# ---------------------------------------------------------------- seeds
def seeds(target: str) -> list:
    root = Path(__file__).resolve().parent.parent
    if target == "yaml":
        out = [p.read_bytes() for p in sorted((root / "firmware_configs").glob("*.yaml"))]
        return out + [b"a: &a [1, 2]\nb: [*a, *a]\n", b"video: {fps: !!float 1e3}\n", b"threads: 2001-12-14\n"]
    if target == "json":
        return [b'{"person": "p1", "started": "2026-12-04T10:00:00Z", "tags": [1, 2.5, null]}',
                b'[[[{"a": "\\ud83d\\ude00"}]]]', b'{"n": 12345678901234567890}']
    if target == "manifest":
        return [p.read_bytes() for p in sorted((root / "edge" / "models").glob("*/manifest.json"))]
    if target == "image":
        from hostile_support import IMAGE_FORMATS, huge_image

        return [huge_image(fmt, 40, 30) for fmt in IMAGE_FORMATS]
    if target == "http":
        base = [b"\x00GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer tok\r\n\r\n",
                b"\x01POST /api/stop HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer tok\r\n"
                b"X-Kiosk-Request: 1\r\nContent-Length: 2\r\n\r\n{}",
                b"\x01GET /api/state?token=tok HTTP/1.1\r\nHost: kiosk.example\r\n\r\n",
                b"\x01POST /api/stop HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: -5\r\n\r\n"]
        return base
    raise ValueError(target)


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]


def mutate(data: bytes, pool: list, rng: random.Random) -> bytes:
    """One of: flip bits, overwrite with an interesting integer, insert/delete a run,
    duplicate a run, splice another seed, or repeat a token (nesting, aliases)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and len(buf) >= 4:
            at = min(at, len(buf) - 4)
            struct.pack_into(rng.choice("<>") + "I", buf, at, rng.choice(INTERESTING) & 0xFFFFFFFF)
        elif op == 2:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and buf:
            del buf[at:at + rng.randint(1, 32)]
        elif op == 4 and buf:
            start = rng.randrange(len(buf))
            buf[at:at] = buf[start:start + rng.randint(1, 64)] * rng.randint(1, 64)
        elif op == 5:
            other = rng.choice(pool)
            buf = buf[:at] + other[rng.randrange(len(other) + 1):]
        else:
            buf[at:at] = rng.choice([b"[", b"{", b"- ", b"*a ", b"&a ", b'"\\ud800"', b"9" * 40, b"\r\n",
                                     b"Content-Length: 99999999999\r\n"]) * rng.randint(1, 2000)
    return bytes(buf[:1 << 20])


def run_mutate(target: str, seconds: float, seed: int) -> dict:
    fn, pool, rng = TARGETS[target], seeds(target), random.Random(seed)
    started, count, findings, slowest = time.monotonic(), 0, [], 0.0
    for data in pool:
        fn(data)
    while time.monotonic() - started < seconds:
        data = mutate(rng.choice(pool), pool, rng)
        t0 = time.monotonic()
        try:
            fn(data)
        except Exception as exc:  # a finding: kept for the report, the input saved
            name = _WORK / f"crash-{target}-{count}"
            name.write_bytes(data)
            findings.append(f"{type(exc).__name__}: {str(exc)[:300]} ({name})")
            if len(findings) >= 20:
                break
        slowest = max(slowest, time.monotonic() - t0)
        count += 1
        if count % 50 == 0 and rng.random() < 0.2:
            pool.append(data)  # keep some mutants as seeds: deeper structures over time
    return {"inputs": count, "slowest_input_s": round(slowest, 3), "findings": findings}


def run_atheris(target: str, seconds: float, seed: int) -> None:
    import atheris

    fn = TARGETS[target]
    corpus = _WORK / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, data in enumerate(seeds(target)):
        (corpus / f"seed{i}").write_bytes(data)

    def one(data: bytes) -> None:
        fn(data)

    fn(seeds(target)[0])  # imports what the target uses, then only our code is instrumented
    _instrument_edge(atheris)
    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", f"-rss_limit_mb={RSS_LIMIT_MB}",
                   "-timeout=10", f"-seed={seed}", "-max_len=262144", f"-artifact_prefix={_WORK}/",
                   str(corpus)], one)
    atheris.Fuzz()


def _instrument_edge(atheris) -> None:
    """Coverage for the modules of `edge` only: instrument_all() also rewrites numpy, yaml
    and the standard library, about 45 s before the first input here."""
    import inspect

    for name, module in list(sys.modules.items()):
        if not (name == "edge" or name.startswith("edge.")) or module is None:
            continue
        for obj in list(vars(module).values()):
            members = [obj] + ([v for v in vars(obj).values()] if inspect.isclass(obj) else [])
            for item in members:
                item = getattr(item, "__func__", item)
                if inspect.isfunction(item) and item.__module__ == name:
                    try:
                        atheris.instrument_func(item)
                    except Exception:  # noqa: S112 - a function atheris cannot rewrite keeps running uninstrumented
                        continue


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=sorted(TARGETS), required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a backstop; the RSS is what is reported
    started = time.monotonic()
    if args.engine == "atheris":
        import atexit

        atexit.register(lambda: print(json.dumps(_record(args, started, None))))
        run_atheris(args.target, args.seconds, args.seed)
        return 0
    result = run_mutate(args.target, args.seconds, args.seed)
    print(json.dumps(_record(args, started, result)))
    return 1 if result["findings"] else 0


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM): ru_maxrss would survive exec and report the
    parent that started it (a pytest worker of several hundred MB)."""
    import re

    with open("/proc/self/status") as f:
        return round(int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024.0, 1)


def _record(args, started: float, result) -> dict:
    record = {"target": args.target, "engine": args.engine, "seconds": round(time.monotonic() - started, 1),
              "peak_rss_mb": _peak_rss_mb(),
              "workdir": str(_WORK)}
    record.update(result or {})
    return record


if __name__ == "__main__":
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "0")
    sys.exit(main())
