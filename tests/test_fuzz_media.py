"""Property-based tests (hypothesis) on the media code: the WAV decoder, the audio
features, the crop rule and the tick fusion under random chunking."""
from __future__ import annotations

import io
import wave

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra (pip install -e '.[dev]')")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge.capture.audio import WavSource, pcm_to_float  # noqa: E402
from edge.errors import EdgeError  # noqa: E402
from edge.features import audio as audio_features  # noqa: E402
from edge.features.face import square_crop  # noqa: E402

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


# ----- PCM and WAV --------------------------------------------------------------------
@FAST
@given(width=st.sampled_from([1, 2, 3, 4]), channels=st.integers(1, 6), raw=st.binary(max_size=4096))
def test_pcm_to_float_is_bounded_and_sized(width, channels, raw):
    raw = raw[: len(raw) - len(raw) % width]
    x = pcm_to_float(raw, width, channels)
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    assert np.all(x >= -1.0) and np.all(x < 1.0)
    assert len(x) == (len(raw) // width) // channels


def wav_bytes(rate, channels, width, frames_data: bytes, nframes_claimed=None) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(frames_data)
    data = bytearray(buffer.getvalue())
    if nframes_claimed is not None:  # a header that lies about the length
        data[40:44] = int(nframes_claimed * channels * width).to_bytes(4, "little")
    return bytes(data)


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]), channels=st.integers(1, 4),
       width=st.sampled_from([1, 2, 3, 4]), seconds=st.floats(0.0, 0.6), cut=st.floats(0.0, 1.0),
       lie=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_generated_wavs_decode_to_bounded_16k_mono_or_refuse_in_one_line(tmp_path_factory, rate, channels, width,
                                                                        seconds, cut, lie, seed):
    nframes = int(rate * seconds)
    pcm = np.random.default_rng(seed).integers(0, 256, nframes * channels * width, dtype=np.uint8).tobytes()
    data = wav_bytes(rate, channels, width, pcm, nframes_claimed=nframes * 2 if lie else None)
    data = data[: max(0, int(len(data) * cut))] if cut < 1.0 else data
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    path.write_bytes(data)
    try:
        source = WavSource(str(path))
    except EdgeError as exc:
        assert "\n" not in str(exc)
        return
    chunks = list(source.chunks())
    x = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    # Resampling full-scale noise rings past full scale (the low-pass filter's sum |h| bounds it).
    limit = 1.0 if rate == 16000 else 2.0
    assert np.abs(x).max(initial=0.0) <= limit
    expected = source.frames_read * 16000 / rate
    assert abs(len(x) - expected) <= 2 + expected * 0.001
    assert source.frames_read <= nframes


@pytest.mark.parametrize("rate, channels, width", [(16000, 1, 1), (16000, 1, 3), (44100, 2, 2), (48000, 2, 3),
                                                   (8000, 1, 1), (44100, 1, 4)])
def test_named_wav_formats_keep_a_tone(tmp_path, rate, channels, width):
    """8-bit, 24-bit, 32-bit and 44.1 kHz stereo WAVs give the same 440 Hz tone at 16 kHz."""
    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    if width == 1:
        ints = np.round(tone * 127 + 128).astype(np.uint8)
        pcm = np.repeat(ints, channels).tobytes()
    else:
        full = 2 ** (8 * width - 1) - 1
        ints = np.round(tone * full).astype(np.int64)
        little = ints.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :width]
        pcm = np.repeat(little, channels, axis=0).tobytes()
    path = tmp_path / "tone.wav"
    path.write_bytes(wav_bytes(rate, channels, width, pcm))
    x = np.concatenate(list(WavSource(str(path)).chunks()))
    assert abs(len(x) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(x[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 3
    assert 0.45 < np.abs(x[2000:14000]).max() < 0.55


# ----- audio features -----------------------------------------------------------------
signals = st.one_of(
    st.integers(0, 4000).map(lambda n: np.zeros(n, np.float32)),
    st.tuples(st.integers(0, 4000), st.integers(0, 2 ** 16), st.floats(1e-6, 1.0)).map(
        lambda a: (np.random.default_rng(a[1]).standard_normal(a[0]) * a[2]).clip(-1, 1).astype(np.float32)),
    st.integers(0, 4000).map(lambda n: np.sign(np.sin(np.arange(n) * 0.2)).astype(np.float32)),  # clipped square
    st.integers(0, 4000).map(lambda n: np.full(n, 1.0, np.float32)),  # DC at full scale
)


@FAST
@given(x=signals)
def test_audio_features_are_finite_and_shaped(x):
    frames = audio_features.frame_signal(x)
    assert frames.ndim == 2 and frames.shape[1] == audio_features.WINDOW_SAMPLES
    n = frames.shape[0]
    expected = 0 if len(x) < audio_features.WINDOW_SAMPLES else 1 + (len(x) - audio_features.WINDOW_SAMPLES) \
        // audio_features.HOP_SAMPLES
    assert n == expected
    for name in ("log_mel", "mfcc", "frame_energy_dbfs"):
        out = getattr(audio_features, name)(frames)
        assert len(out) == n and np.all(np.isfinite(out)), name
    pitch, voiced = audio_features.frame_pitch_hz(frames)
    assert len(pitch) == len(voiced) == n and np.all(np.isfinite(pitch))
    if not np.any(x):
        assert not np.any(voiced)  # silence has no pitch


# ----- the crop rule ------------------------------------------------------------------
@settings(max_examples=300, deadline=None, database=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), bx=st.integers(-400, 700), by=st.integers(-400, 700),
       bw=st.integers(1, 500), bh=st.integers(1, 500), margin=st.floats(0.0, 1.0))
def test_square_crop_is_square_and_taken_from_the_image(h, w, bx, by, bw, bh, margin):
    gray = (np.arange(h * w, dtype=np.int64).reshape(h, w) % 251).astype(np.uint8)
    crop = square_crop(gray, (bx, by, bw, bh), margin)
    side = int(round(max(bw, bh) * (1.0 + 2.0 * margin)))
    assert crop.shape == (side, side) and crop.dtype == np.uint8
    # The crop is centred on the box; outside the image the edge pixels repeat.
    cy = int(np.clip(round(by + bh / 2.0 - side / 2.0) + side // 2, 0, h - 1))
    cx = int(np.clip(round(bx + bw / 2.0 - side / 2.0) + side // 2, 0, w - 1))
    assert crop[side // 2, side // 2] == gray[cy, cx]
    inside = (0 <= bx and bx + bw <= w and 0 <= by and by + bh <= h)
    if inside and margin == 0.0 and bw == bh:
        np.testing.assert_array_equal(crop, gray[by:by + bh, bx:bx + bw])


# ----- the tick fusion under random chunking ------------------------------------------
@pytest.fixture(scope="module")
def engine_parts():
    import cv2
    from test_stream_engine import SECONDS, make_engine  # noqa: F401 - the engine the engine tests use

    from edge.capture.video import Frame
    from edge.precision import load_emotion

    cap = cv2.VideoCapture(str(__import__("faults_helpers").DEMO_VIDEO))
    frames = []
    while len(frames) < 30:
        ok, image = cap.read()
        assert ok
        frames.append(Frame(len(frames), len(frames) / 30.0, 0.0, image))
    cap.release()
    with wave.open(__import__("faults_helpers").DEMO_WAV, "rb") as f:
        pcm = np.frombuffer(f.readframes(16000), "<i2").astype(np.float32) / 32768.0
    classifier = load_emotion("tflite", "int8")
    whole = []
    engine = make_engine(classifier)
    for frame in frames:
        whole += engine.push_frame(frame)
    whole += engine.push_audio(pcm)
    whole += engine.finish()
    return frames, pcm, classifier, make_engine, whole


@pytest.mark.slow
@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.large_base_example, HealthCheck.too_slow,
    HealthCheck.data_too_large])
@given(data=st.data())
def test_tick_fusion_is_independent_of_chunking(engine_parts, data):
    frames, pcm, classifier, make_engine, whole = engine_parts
    engine = make_engine(classifier)
    ticks, f, a = [], 0, 0
    while f < len(frames) or a < len(pcm):
        take_video = a >= len(pcm) or (f < len(frames) and data.draw(st.booleans()))
        if take_video:
            n = data.draw(st.integers(1, 8))
            for frame in frames[f:f + n]:
                ticks += engine.push_frame(frame)
            f += n
        else:
            n = data.draw(st.one_of(st.integers(1, 40), st.integers(1, 6000)))
            ticks += engine.push_audio(pcm[a:a + n])
            a += n
    ticks += engine.finish()
    assume(len(whole) == 10)
    assert [t.index for t in ticks] == list(range(len(whole)))
    for one, chunked in zip(whole, ticks):
        np.testing.assert_array_equal(one.features, chunked.features)
        assert one.severity == chunked.severity
