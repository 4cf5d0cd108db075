"""bench.cpus checks a candidate face-model file beside the shipped ones (issue 23): a file is
put through every CPU model before it ships, not after."""
from __future__ import annotations

import shutil

import pytest

from bench import cpus
from tests.conftest import SHIPPED_MODELS


def test_a_candidate_file_is_checked_like_the_shipped_ones(tmp_path):
    candidate = tmp_path / "candidate.tflite"
    shutil.copyfile(SHIPPED_MODELS / "mini_xception" / "mini_xception_int8.tflite", candidate)
    lines = []
    table = cpus.compare([], 6, SHIPPED_MODELS, log=lines.append, extra_files=[candidate])
    native = table["native"]
    assert native["candidate.tflite"] == native["mini_xception_int8.tflite"]
    assert native["candidate.tflite"]["n_inputs"] == 6
    assert native["mini_xception_fp32.onnx"]["top1_agreement"] == 1.0


def test_a_candidate_must_exist_and_not_shadow_a_shipped_file(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        cpus.compare([], 2, SHIPPED_MODELS, extra_files=[tmp_path / "missing.tflite"])
    shadow = tmp_path / "mini_xception_int8.tflite"
    shutil.copyfile(SHIPPED_MODELS / "mini_xception" / "mini_xception_int8.tflite", shadow)
    with pytest.raises(SystemExit, match="already checked"):
        cpus.compare([], 2, SHIPPED_MODELS, extra_files=[shadow])
