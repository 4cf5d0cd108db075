"""edge.precision: `precision: auto` measures once per CPU/runtime/file, caches, picks the
fastest file meeting the floor; the SME guard keeps int8-arithmetic files away from SME."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge import cpu, precision
from edge.errors import EdgeError
from edge.manifest import ModelManifest, load_manifest, sha256_of
from tests.conftest import SHIPPED_MODELS


@pytest.fixture()
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _copy_model(name, tmp_path) -> ModelManifest:
    folder = tmp_path / "models" / name
    shutil.copytree(SHIPPED_MODELS / name, folder)
    return load_manifest(name, str(tmp_path / "models"))


def test_fixed_precision_is_the_configured_file():
    manifest = load_manifest("mini_xception", str(SHIPPED_MODELS))
    choice = precision.resolve(manifest, "tflite", "int8")
    assert choice.entry["file"] == "mini_xception_int8.tflite" and choice.measured is None
    assert precision.resolve_file(manifest, "onnx", "fp32")["file"] == "mini_xception_fp32.onnx"


@pytest.mark.parametrize("name,backend", [("mini_xception", "tflite"), ("mini_xception", "onnx"),
                                          ("lstm_moe", "tflite"), ("lstm_moe", "onnx")])
def test_auto_measures_once_then_reads_the_cache(cache_home, name, backend):
    manifest = load_manifest(name, str(SHIPPED_MODELS))
    first = precision.resolve(manifest, backend, "auto")
    assert first.entry["format"] == backend and "measured" in first.reason
    chosen = first.measured[first.entry["file"]]
    assert chosen["meets_floor"]
    assert chosen["ms"] == min(r["ms"] for r in first.measured.values() if r["meets_floor"])
    # Every shipped file meets the floor here (weight-only int8 computes in float).
    assert all(r["meets_floor"] for r in first.measured.values())
    if name == "mini_xception":
        int8 = first.measured[f"mini_xception_int8.{'tflite' if backend == 'tflite' else 'onnx'}"]
        assert int8["top1_agreement"] >= 0.99 and int8["max_abs_prob_diff"] < 0.15
    doc = json.loads(precision.cache_path().read_text())
    assert precision.cache_path().parent == cache_home / "edge"
    assert any(key.startswith(cpu.fingerprint() + "|") for key in doc["results"])
    again = precision.resolve(manifest, backend, "auto")
    assert "cached" in again.reason and again.entry == first.entry


def test_another_cpu_measures_again(cache_home):
    manifest = load_manifest("mini_xception", str(SHIPPED_MODELS))
    precision.resolve(manifest, "tflite", "auto")
    other = dict(cpu.int8_features(), avx512f=False, avx512_vnni=False, amx_int8=False, sme=False)
    other["made_up_feature"] = True
    assert "measured" in precision.resolve(manifest, "tflite", "auto", features=other).reason


def test_a_file_that_disagrees_is_never_picked(cache_home, tmp_path):
    """A fast file with wrong answers (here: the fp32 file's weights scrambled) is measured,
    fails the floor and is passed over, even though it would be the fastest."""
    manifest = _copy_model("mini_xception", tmp_path)
    entry = manifest.find_file("onnx", "int8")
    import onnx
    from onnx import numpy_helper

    path = manifest.folder / entry["file"]
    graph = onnx.load(str(path))
    for init in graph.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.int8:
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(-array), init.name))
    onnx.save(graph, str(path))
    data = json.loads((manifest.folder / "manifest.json").read_text())
    for e in data["files"]:
        if e["file"] == entry["file"]:
            e["sha256"] = sha256_of(path)
    manifest = ModelManifest(manifest.folder, data)
    choice = precision.resolve(manifest, "onnx", "auto", use_cache=False)
    assert not choice.measured[entry["file"]]["meets_floor"]
    assert choice.entry["file"] == "mini_xception_fp32.onnx"


def test_sme_guard_refuses_int8_arithmetic(cache_home, tmp_path):
    """A file marked as computing in int8 (static quantization) is refused on an SME CPU:
    one line for `precision: int8`, passed over by `auto`; weight-only files are allowed."""
    manifest = load_manifest("mini_xception", str(SHIPPED_MODELS))
    sme = dict(cpu.int8_features(), sme=True)
    assert precision.resolve(manifest, "tflite", "int8", features=sme).entry["file"] == "mini_xception_int8.tflite"
    data = json.loads(json.dumps(manifest.data))
    for e in data["files"]:
        if e["precision"] == "int8":
            e["arithmetic"] = "int8"
    static = ModelManifest(manifest.folder, data)
    with pytest.raises(EdgeError, match="SME"):
        precision.resolve(static, "tflite", "int8", features=sme)
    assert precision.resolve(static, "tflite", "int8", features=dict(sme, sme=False)).entry["precision"] == "int8"
    picked = precision.resolve(static, "tflite", "auto", features=sme, use_cache=False)
    assert picked.entry["precision"] == "fp32"
    assert precision.int8_arithmetic_refused({"sme": False, "sme2": True})


def test_missing_check_inputs_is_one_line(tmp_path, cache_home):
    manifest = _copy_model("mini_xception", tmp_path)
    (manifest.folder / precision.FACES_FILE).unlink()
    with pytest.raises(EdgeError, match="check inputs"):
        precision.resolve(manifest, "tflite", "auto")


def test_unwritable_cache_still_resolves(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    manifest = load_manifest("mini_xception", str(SHIPPED_MODELS))
    assert precision.resolve(manifest, "tflite", "auto").entry["format"] == "tflite"


def test_the_cache_is_owner_only_under_umask_000(cache_home):
    # Before: ~/.cache/edge 0777 and precision.json 0666, so another local user could
    # change which file `precision: auto` loads.
    import os

    manifest = load_manifest("mini_xception", str(SHIPPED_MODELS))
    previous = os.umask(0)
    try:
        precision.resolve(manifest, "tflite", "auto")
    finally:
        os.umask(previous)
    path = precision.cache_path()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary left


def test_a_cache_others_could_write_is_not_trusted(cache_home):
    manifest = load_manifest("mini_xception", str(SHIPPED_MODELS))
    precision.resolve(manifest, "tflite", "auto")
    path = precision.cache_path()
    doc = json.loads(path.read_text())
    for result in doc["results"].values():  # planted: every file "fastest and agreeing"
        result.update(ms=0.0, meets_floor=True)
    path.write_text(json.dumps(doc))
    assert precision.resolve(manifest, "tflite", "auto").reason.split("(")[1].startswith("cached")
    path.chmod(0o666)
    assert precision.resolve(manifest, "tflite", "auto").reason.split("(")[1].startswith("measured")


def test_auto_says_which_file_it_skipped_and_why(cache_home, tmp_path):
    # Before: a corrupt int8 file stopped `auto` (not yet measured) or was passed over
    # without a word (measured before it was damaged).
    manifest = _copy_model("mini_xception", tmp_path)
    first = precision.resolve(manifest, "tflite", "auto")  # measured while intact: cached
    doc = json.loads(precision.cache_path().read_text())
    for result in doc["results"].values():  # int8 the faster, as on most CPUs
        result["ms"] = 0.001 if result["precision"] == "int8" else 1.0
    precision.cache_path().write_text(json.dumps(doc))
    damaged = manifest.folder / "mini_xception_int8.tflite"
    data = bytearray(damaged.read_bytes())
    data[100:104] = b"XXXX"
    damaged.write_bytes(bytes(data))
    for _ in range(2):  # from the cache, then after the cache is gone (measured)
        choice = precision.resolve(manifest, "tflite", "auto")
        assert choice.entry["file"] == "mini_xception_fp32.tflite", choice.reason
        assert "skipped mini_xception_int8.tflite: model file" in choice.reason
        assert "does not match its manifest" in choice.reason
        precision.cache_path().unlink()
    assert first.entry["format"] == "tflite"
