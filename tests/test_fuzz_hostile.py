"""Fuzzing the surfaces of issue 21 (tests/fuzz_hostile_target.py): profiles (YAML), sidecars
(JSON via load_json), manifests, image headers, and raw HTTP requests to the kiosk and
/metrics. Each target runs in its own process; any exception other than a one-line
EdgeError, a server's internal error, or a decoded image larger than its header said is a
finding. A few seconds each here; the 10-minute runs are `python bench/fuzz_hostile.py`
(their figures are in the issue note), and the `slow` test below runs one minute each.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from faults_helpers import ROOT

TARGETS = ("yaml", "json", "manifest", "image", "http")
SHORT_S = 3


def _fuzz(target: str, seconds: float, engine: str) -> str:
    """stdout (its last line the mutate engine's JSON record), then stderr."""
    # Through a small shell that forks it: Linux keeps ru_maxrss across exec, so a child
    # exec'd straight from this (large) test process would start with the test's peak, and
    # libFuzzer's -rss_limit_mb reads ru_maxrss. A child forked by `sh` starts from sh's.
    command = [sys.executable, str(ROOT / "tests" / "fuzz_hostile_target.py"), "--target", target,
               "--seconds", str(seconds), "--engine", engine]
    proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *command], cwd=str(ROOT), capture_output=True,
                          timeout=seconds + 180)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_a_short_fuzz_of_each_hostile_surface_finds_nothing(target):
    out = _fuzz(target, SHORT_S, "mutate")
    record = json.loads([line for line in out.splitlines() if line.startswith('{"target"')][-1])
    assert record["findings"] == [], record["findings"]
    assert record["inputs"] > 50, record  # it really ran
    assert record["peak_rss_mb"] < 512, record


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_a_minute_of_coverage_guided_fuzzing_finds_nothing(target):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (dev extra)")
    out = _fuzz(target, 60, "atheris")
    assert "Uncaught Python exception" not in out and "ERROR: libFuzzer" not in out, out[-3000:]
    assert "Done " in out, out[-1000:]
