"""bench/soak.py keeps working (the long runs themselves are `make soak`, not part of the tests)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from faults_helpers import ROOT


@pytest.mark.slow
def test_a_short_fast_soak_writes_its_csv_plot_and_figures(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.5", "--fast",
                           "--every-s", "0.5", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report = json.loads((tmp_path / "soak_fast_30s.json").read_text())
    assert report["complete"] and report["lost"] == [] and report["ticks"] == 300
    rows = list(csv.DictReader(open(str(tmp_path / "soak_fast_30s.csv"))))
    assert len(rows) >= 3 and {"rss_mb", "fds", "threads", "total_frame_p99_ms"} <= set(rows[1])
    assert (tmp_path / "soak_fast_30s.png").stat().st_size > 10_000
    # After the session the capture threads and files are gone again.
    assert report["threads_after_close"] <= report["threads_after_warmup"][0]
    assert report["fds_after_close"] <= report["fds_after_warmup"][0]
