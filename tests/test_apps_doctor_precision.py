"""`edge doctor` names the CPU's int8 features and the file each model of a profile would load."""
from __future__ import annotations

import argparse
import json

import yaml

from edge import cpu
from edge.apps import doctor
from tests.conftest import ROOT


def test_doctor_names_int8_features_and_the_files_of_a_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    profile = yaml.safe_load((ROOT / "firmware_configs" / "desktop.yaml").read_text())
    profile["models"]["emotion"]["precision"] = "auto"
    profile["models"]["severity"].update(backend="onnx", precision="int8")
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump(profile))

    report = doctor.collect(str(path))
    features = cpu.int8_features()
    assert report["cpu_fingerprint"] == cpu.fingerprint(features)
    for name, present in features.items():
        assert (name in report["cpu_int8_features"].split()) == present, name
    emotion, severity = report["model_files"]["emotion"], report["model_files"]["severity"]
    assert emotion["precision"] == "auto" and emotion["file"].endswith(".tflite")
    assert emotion["why"].startswith("auto:") and "top-1" in emotion["why"]
    assert severity["file"] == "lstm_moe_edge_int8.onnx" and severity["why"] == "int8 as configured"

    assert doctor.run(argparse.Namespace(json=True, config=str(path), models_dir=None)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model_files"]["emotion"]["file"] == emotion["file"]
    assert "cached" in printed["model_files"]["emotion"]["why"]  # measured once, then read back
    assert doctor.run(argparse.Namespace(json=False, config=str(path), models_dir=None)) == 0
    text = capsys.readouterr().out
    assert f"model emotion      mini_xception tflite/auto -> {emotion['file']}" in text
    assert "cpu_int8_features" in text


def test_doctor_reports_a_missing_model_without_failing(tmp_path):
    profile = {"models": {"emotion": {"name": "no_such_model"}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(profile))
    found = doctor.model_files(str(path))
    assert found["emotion"]["file"] is None and "no manifest" in found["emotion"]["why"]
