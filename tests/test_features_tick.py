import numpy as np
import pytest

from edge.features import tick


def test_vector_layout_is_documented_sizes():
    assert tick.VISUAL_SIZE == 11 and tick.AUDIO_SIZE == 32 and tick.TICK_FEATURE_COUNT == 43
    assert tick.TICK_FEATURES[:7] == tuple("emotion_" + e for e in tick.EMOTIONS)
    assert len(set(tick.TICK_FEATURES)) == tick.TICK_FEATURE_COUNT


def test_visual_features_of_faces_and_no_face():
    probs = np.array([[0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1]], np.float32)
    boxes = np.array([[0.4, 0.4, 0.2, 0.2], [0.5, 0.4, 0.2, 0.2]], np.float32)
    vec, centre = tick.visual_features(tick.VisualTick(frames=3, emotion_probs=probs, face_boxes=boxes))
    assert vec[3] == pytest.approx(0.5) and vec[6] == pytest.approx(0.5)
    assert vec[7] == pytest.approx(2 / 3)
    assert vec[8] == pytest.approx(0.2)
    assert vec[9] == pytest.approx(0.1 / np.sqrt(2))
    assert vec[10] == pytest.approx(np.log(2) / np.log(7))
    assert np.allclose(centre, [0.6, 0.5])
    empty, kept = tick.visual_features(tick.VisualTick(frames=3), previous_centre=centre)
    assert not empty.any() and kept is centre


def test_assembler_gives_finite_vectors_for_speech_and_silence():
    assembler = tick.TickFeatureAssembler()
    t = np.arange(tick.TICK_SAMPLES) / 16000.0
    voice = (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    spoken = assembler.tick(tick.VisualTick(frames=3), voice)
    silent = assembler.tick(tick.VisualTick(frames=3), None)
    n = 13
    assert spoken.shape == (43,) and np.all(np.isfinite(spoken)) and np.all(np.isfinite(silent))
    audio_part = spoken[tick.VISUAL_SIZE:]
    assert audio_part[2 * n + 2] >= 0.8  # voiced ratio (the first window starts in silence)
    assert audio_part[2 * n + 3] == pytest.approx(np.log2(1.5), abs=0.05)
    # The first two windows of the silent tick still hold the previous tick's voice.
    assert silent[tick.VISUAL_SIZE + 2 * n + 5] == pytest.approx(0.8)  # pause ratio
    with pytest.raises(ValueError, match="1600"):
        assembler.tick(tick.VisualTick(frames=1), np.zeros(10, np.float32))


def test_no_microphone_gives_the_vectors_of_explicit_silence():
    # Without audio the silent part is computed once (issue 23); the vectors must be those of
    # zeros given as samples, faces and motion carried from tick to tick as before.
    probs = np.full((1, 7), 1 / 7.0, np.float32)
    visuals = [tick.VisualTick(frames=1), tick.VisualTick(1, probs, np.array([[0.1, 0.2, 0.3, 0.3]], np.float32)),
               tick.VisualTick(1, probs, np.array([[0.3, 0.2, 0.3, 0.3]], np.float32)), tick.VisualTick(frames=0)]
    without, explicit = tick.TickFeatureAssembler(), tick.TickFeatureAssembler()
    for visual in visuals + visuals:
        a = without.tick(visual, None)
        b = explicit.tick(visual, np.zeros(tick.TICK_SAMPLES, np.float32))
        np.testing.assert_array_equal(a, b)
    assert a[tick.VISUAL_SIZE + 2 * 13 + 5] == 1.0  # pause ratio: all silence


def test_session_file_round_trip(tmp_path):
    features = np.random.default_rng(0).normal(size=(5, 43)).astype(np.float32)
    path = tick.write_session_features(tmp_path / "s.npz", features, context=1.0)
    loaded, context = tick.read_session_features(path)
    assert np.array_equal(loaded, features) and context == 1.0
    with pytest.raises(ValueError, match="43"):
        tick.write_session_features(tmp_path / "bad.npz", features[:, :5])
