"""What the product exposes: stored results owner-only whatever the umask, /metrics with
no personal data, HTTP endpoints on loopback unless a profile says otherwise."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from faults_helpers import DEMO_VIDEO, DEMO_WAV, ROOT, write_profile

from edge.config import parse_config
from edge.engine import Screener, ScreenerOptions

UMASK_0 = "import os, sys; os.umask(0); from edge.cli import main; sys.exit(main(sys.argv[1:]))"


def modes(root: Path):
    """{relative path: permission bits} of everything under root, root included."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_owner_only(root: Path, skip=()):
    for name, mode in modes(root).items():
        if any(name.startswith(s) for s in skip):
            continue
        path = root / name
        want = 0o700 if path.is_dir() else 0o600
        assert mode == want, f"{path} is {oct(mode)}, want {oct(want)}"


def test_edge_run_outputs_are_owner_only_with_umask_000(tmp_path):
    out = tmp_path / "results"
    features_dir = tmp_path / "features"
    features_dir.mkdir(mode=0o700)
    prof = write_profile(tmp_path, out / "sessions", output={"tick_jsonl": True, "store_media": True,
                                                              "database": str(out / "db" / "nested" / "s.sqlite")})
    proc = subprocess.run([sys.executable, "-c", UMASK_0, "run", "--config", str(prof), "--video", DEMO_VIDEO,
                           "--audio", DEMO_WAV, "--fast", "--duration", "1", "--save-features",
                           str(features_dir / "f.npz")], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = set(modes(out))
    assert any(n.endswith(".json") for n in names) and any(n.endswith(".ticks.jsonl") for n in names)
    assert "db/nested/s.sqlite" in names
    assert_owner_only(out)
    assert_owner_only(features_dir)
    # A second session into the same database (the -wal/-shm now exist) keeps them owner-only.
    proc = subprocess.run([sys.executable, "-c", UMASK_0, "run", "--config", str(prof), "--video", DEMO_VIDEO,
                           "--fast", "--duration", "0.5"], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_owner_only(out)


@pytest.mark.slow
def test_edge_nightly_outputs_are_owner_only_with_umask_000(tmp_path):
    pytest.importorskip("nightly_support")
    from nightly_support import drop, env_with_repo, month
    from nightly_support import write_profile as nightly_profile

    profile = nightly_profile(tmp_path)
    drop(tmp_path / "inbox", "p01", month(1)[0], Path(DEMO_WAV))
    out = tmp_path / "elsewhere"
    run = subprocess.run([sys.executable, "-c", UMASK_0, "nightly", "--config", str(profile), "--out", str(out)],
                         capture_output=True, text=True, env=env_with_repo(), cwd=str(ROOT), timeout=300)
    assert run.returncode == 0, run.stderr
    assert list(out.rglob("*.json")) and list(out.rglob("*.html"))
    assert_owner_only(out)
    assert_owner_only(tmp_path / "db")


def _personal(summary):
    sources = [v for v in summary["sources"].values() if v]
    words = ["phq8", "emotion_vote", "happy", "sad", "neutral", "angry", "band"]
    mu = summary["screening"]["phq8"].get("mu")
    return [summary["session_id"], summary["started_utc"]] + sources + [Path(s).name for s in sources] + words + (
        [str(mu)] if mu is not None else [])


def test_metrics_and_metrics_json_carry_no_personal_data(tmp_path):
    """Scraped mid-session and after it: counts and timings only."""
    from test_apps_run import run_session

    config = parse_config({"output": {"dir": str(tmp_path), "database": None}})
    screener = Screener(ScreenerOptions(config))
    server = screener.serve_metrics(config.telemetry.http_host, 0)
    scraped = []

    def scrape():
        for path in ("/metrics", "/metrics.json"):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
                scraped.append(response.read().decode())

    try:
        summary = run_session(config, DEMO_VIDEO, DEMO_WAV, fast=True, duration_s=1.5, screener=screener,
                              on_tick=lambda t: scrape() if t.index == 8 else None)
        scrape()
    finally:
        server.close()
    assert len(scraped) == 4 and "edge_frames_total" in scraped[0]
    json.loads(scraped[1])
    for text in scraped:
        for private in _personal(summary):
            assert private not in text, (private, text[:300])


def _non_loopback_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outward interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_http_endpoints_bind_loopback_by_default():
    defaults = parse_config({})
    assert defaults.telemetry.http_host == "127.0.0.1"
    assert defaults.kiosk.host == "127.0.0.1"
    screener_config = parse_config({"telemetry": {"http_port": 0}})

    class NoScreener:
        def live_snapshot(self):
            return {}

    from edge.telemetry import MetricsServer

    server = MetricsServer(NoScreener(), screener_config.telemetry.http_host, 0)
    try:
        assert server.port > 0
        bound = [t for t in (getattr(server, "server", None), getattr(server, "_server", None)) if t is not None]
        if bound:
            assert bound[0].server_address[0] == "127.0.0.1"
        address = _non_loopback_address()
        if address is not None:  # not reachable from the network
            with pytest.raises(OSError):
                socket.create_connection((address, server.port), timeout=2).close()
    finally:
        server.close()


def test_a_kiosk_on_a_network_address_needs_a_token():
    server_module = pytest.importorskip("edge.apps.kiosk.server")
    from edge.errors import EdgeError

    with pytest.raises(EdgeError, match="token"):
        server_module.KioskServer(None, "0.0.0.0", 0, None, None)


def test_metrics_on_a_network_address_needs_a_token(tmp_path, capsys):
    from edge.cli import main

    prof = write_profile(tmp_path, telemetry={"http_host": "0.0.0.0", "http_port": 0})
    code = main(["run", "--config", str(prof), "--video", DEMO_VIDEO, "--fast", "--duration", "0.3"])
    assert code == 2 and "telemetry.token" in capsys.readouterr().err


def test_a_metrics_token_is_required_when_set():
    import urllib.error
    import urllib.request

    from edge.engine import Screener, ScreenerOptions

    screener = Screener(ScreenerOptions(parse_config({"output": {"database": None}})))
    server = screener.serve_metrics("127.0.0.1", 0, token="s3cret")
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert b"edge_ticks_total" in response.read()
    finally:
        server.close()


def test_no_raw_media_is_stored_unless_asked(tmp_path):
    import sqlite3

    from test_apps_run import run_session

    config = parse_config({"output": {"dir": str(tmp_path), "database": str(tmp_path / "s.sqlite"),
                                      "tick_jsonl": True}})
    run_session(config, DEMO_VIDEO, DEMO_WAV, fast=True, duration_s=1.0)
    con = sqlite3.connect(str(tmp_path / "s.sqlite"))
    assert con.execute("SELECT COUNT(*) FROM session_media").fetchone()[0] == 0
    assert all(p.stat().st_size < 200_000 for p in tmp_path.iterdir())
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".wav", ".mp4", ".avi", ".jpg", ".png", ".npy")]
    assert os.path.getsize(tmp_path / "s.sqlite") < 200_000
