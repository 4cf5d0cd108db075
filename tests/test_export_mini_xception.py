"""mini-Xception: definition, Keras weight import, and the proof against the fer TFLite."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from export.fer_build import parity_inputs
from export.fer_compare import end_to_end, float_layers
from export.fer_import import FER_LABELS
from export.models.mini_xception import MiniXception, _same_pad, count_parameters, keras_same_maxpool


@pytest.mark.parametrize("size", [64, 48])
def test_parameter_count_equals_keras(size, fer_files):
    import h5py

    keras_total = []
    with h5py.File(fer_files / "emotion_model.hdf5", "r") as h5:
        h5["model_weights"].visititems(lambda _, obj: keras_total.append(obj.size) if hasattr(obj, "size") else None)
    counts = count_parameters(MiniXception(size))
    assert counts["keras_total"] == sum(keras_total) == 58_423
    assert counts["trainable"] == 56_951


@pytest.mark.parametrize("size", [64, 48])
def test_output_is_a_distribution(size):
    model = MiniXception(size).eval()
    with torch.no_grad():
        probs = model(torch.randn(3, 1, size, size))
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [60, 30, 15, 8, 44, 22, 11, 6])
def test_maxpool_matches_keras_same_padding(size):
    x = torch.randn(2, 3, size, size)
    before, after = _same_pad(size, 3, 2)
    explicit = F.max_pool2d(F.pad(x, (before, after, before, after), value=float("-inf")), 3, stride=2)
    torch.testing.assert_close(keras_same_maxpool(size)(x), explicit, rtol=0, atol=0)


def test_import_matches_float_layers_of_fer_tflite(pretrained, fer_files):
    """The fer file keeps the stem and first module in float: they must match to rounding."""
    faces = parity_inputs(64)["real_faces"][:16]
    worst = float_layers(pretrained, fer_files / "emotion_model_quantized.tflite", faces)
    assert max(worst.values()) < 1e-5, worst


def test_import_agrees_with_fer_tflite_end_to_end(pretrained, fer_files):
    report = end_to_end(pretrained, fer_files / "emotion_model_quantized.tflite", parity_inputs(64))
    assert report["all"]["n_inputs"] >= 400
    assert report["all"]["top1_agreement"] >= 0.99, report
    # The fer file has int8 weights in modules 2-4, so probabilities differ by a few %.
    assert report["all"]["max_abs_prob_diff"] < 0.05, report


def test_pretrained_recognises_a_smile(pretrained):
    from edge.features.face import preprocess_faces
    from export.data.faces import astronaut_face

    with torch.no_grad():
        probs = pretrained(torch.from_numpy(preprocess_faces([astronaut_face()], 64)))[0]
    assert FER_LABELS[int(probs.argmax())] == "happy"


def test_broken_hdf5_is_refused(tmp_path):
    import h5py

    from export.fer_import import load_keras_hdf5

    path = tmp_path / "broken.hdf5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = '{"config": {"layers": [{"config": {"batch_input_shape": [null, 64, 64, 1]}}]}}'
        h5.create_group("model_weights")
    with pytest.raises(ValueError, match="not a Keras mini-Xception"):
        load_keras_hdf5(path)
