"""Capture without hardware: file-backed sources and fakes of cv2.VideoCapture / pyaudio."""
from __future__ import annotations

import struct
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from edge.capture.audio import AudioGap, AudioReader, MicSource, WavSource, open_audio_source
from edge.capture.clock import Backoff, SessionClock, analysis_slot
from edge.capture.queues import END, DropOldestQueue
from edge.capture.resample import Resampler
from edge.capture.video import FileSource, VideoReader, check_opens, gstreamer_available, open_video_source
from edge.errors import EdgeError

ROOT = Path(__file__).resolve().parent.parent
DEMO_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
FAST_BACKOFF = Backoff(0.01, 0.02)


def drain(queue, timeout_s=5.0, limit=100000):
    items, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(items) < limit:
        item = queue.get(timeout_s=0.2)
        if item is END:
            break
        if item is not None:
            items.append(item)
    return items


# ----- queues and resampling ----------------------------------------------------------
def test_drop_oldest_queue_keeps_the_newest_and_counts_drops():
    queue = DropOldestQueue(3)
    for i in range(10):
        queue.put(i)
    assert queue.dropped == 7
    assert [queue.get(0) for _ in range(3)] == [7, 8, 9]
    assert queue.get(0.01) is None
    assert queue.offer(1) and queue.offer(2) and queue.offer(3) and not queue.offer(4)
    assert queue.dropped == 7  # offer never drops


def test_blocking_queue_waits_instead_of_dropping():
    queue = DropOldestQueue(2, block_when_full=True)
    assert queue.put(1) and queue.put(2)
    started = time.monotonic()
    assert queue.put(3, timeout_s=0.1) is False  # still full after the timeout
    assert time.monotonic() - started >= 0.09 and queue.dropped == 0


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000])
def test_resampler_is_accurate_and_independent_of_chunking(rate):
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    whole = Resampler(rate).process(tone, final=True)
    assert abs(len(whole) - 16000) <= 1
    expected = 0.5 * np.sin(2 * np.pi * 300 * np.arange(len(whole)) / 16000)
    assert np.abs(whole[200:-200] - expected[200:-200]).max() < 0.01
    rng = np.random.default_rng(rate)
    resampler, parts, i = Resampler(rate), [], 0
    while i < len(tone):
        n = int(rng.integers(1, 5000))
        parts.append(resampler.process(tone[i:i + n], final=i + n >= len(tone)))
        i += n
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_resampler_removes_what_16khz_cannot_hold():
    t = np.arange(48000) / 48000
    high = np.sin(2 * np.pi * 12000 * t).astype(np.float32)  # above the 8 kHz Nyquist
    out = Resampler(48000).process(high, final=True)
    assert np.abs(out[100:-100]).max() < 0.05


# ----- WAV files ----------------------------------------------------------------------
def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        if width == 2:
            f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
        else:
            f.writeframes((np.clip(samples, -1, 1) * 127 + 128).astype(np.uint8).tobytes())
    return path


def test_wav_16k_mono_reads_unchanged(tmp_path):
    x = (0.3 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    source = WavSource(str(write_wav(tmp_path / "a.wav", x, 16000)))
    assert source.notes == []
    got = np.concatenate(list(source.chunks()))
    assert len(got) == 16000 and np.abs(got - x).max() < 1e-4


def test_wav_at_48k_stereo_is_resampled_and_mixed_and_says_so(tmp_path):
    t = np.arange(48000) / 48000
    left = 0.4 * np.sin(2 * np.pi * 200 * t)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    source = WavSource(str(write_wav(tmp_path / "b.wav", stereo, 48000, channels=2)))
    assert "resampled 48000 Hz -> 16000 Hz" in source.notes
    assert "2 channels averaged to mono" in source.notes
    got = np.concatenate(list(source.chunks()))
    assert abs(len(got) - 16000) <= 1
    assert np.abs(got[200:-200] - 0.4 * np.sin(2 * np.pi * 200 * np.arange(len(got)) / 16000)[200:-200]).max() < 0.01


# (container, subtype) as recorders write them; 44.1 kHz stereo unless said otherwise.
FORMATS = [("WAV", "PCM_U8"), ("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "PCM_32"), ("WAV", "FLOAT"),
           ("WAV", "DOUBLE"), ("WAV", "ULAW"), ("WAV", "ALAW"), ("WAVEX", "PCM_24"), ("WAVEX", "FLOAT"),
           ("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS"), ("OGG", "OPUS")]
# What each may differ from the source signal by (lossy codecs and 8-bit / companded PCM).
TOLERANCE = {"PCM_U8": 0.02, "ULAW": 0.02, "ALAW": 0.02, "VORBIS": 0.05, "OPUS": 0.08}


def _tone(rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


@pytest.mark.parametrize("container,subtype", FORMATS, ids=lambda v: v)
def test_audio_files_as_recorders_write_them(tmp_path, container, subtype):
    sf = pytest.importorskip("soundfile", reason="the `formats` extra (soundfile) is not installed")
    from edge.capture.audio_file import inspect_audio_file

    rate = 48000 if subtype == "OPUS" else 44100  # Opus has no 44.1 kHz
    x = _tone(rate)
    path = tmp_path / f"a.{'ogg' if container == 'OGG' else container.lower()[:4]}"
    sf.write(str(path), np.stack([x, x], axis=1), rate, subtype=subtype, format=container)
    info = inspect_audio_file(str(path))
    assert (info.rate_hz, info.channels) == (rate, 2) and info.truncated is None
    source = open_audio_source(str(path))
    got = np.concatenate(list(source.chunks()))
    assert abs(len(got) - 16000) <= 2
    want = 0.4 * np.sin(2 * np.pi * 300 * np.arange(len(got)) / 16000)
    # Lossy codecs delay the signal a little: compare levels there, samples elsewhere.
    if subtype in ("VORBIS", "OPUS"):
        assert abs(np.sqrt(np.mean(got[2000:-2000] ** 2)) - 0.4 / np.sqrt(2)) < TOLERANCE[subtype]
    else:
        assert np.abs(got[400:-400] - want[400:-400]).max() < TOLERANCE.get(subtype, 0.01)
    assert "2 channels averaged to mono" in source.notes


def test_unsupported_encodings_are_named_and_damage_is_called_corrupt(tmp_path):
    from edge.capture.audio_file import inspect_audio_file

    data = np.zeros(160, "<i2").tobytes()

    def wav(tag, bits, block):
        return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
            "<IHHIIHH", 16, tag, 1, 16000, 16000 * block, block, bits) + b"data" + struct.pack("<I", len(data)) + data)

    cases = {"mp3.wav": (wav(0x55, 0, 1), "unsupported encoding: WAV MP3"),
             "adpcm.wav": (wav(0x11, 4, 256), "unsupported encoding: WAV IMA ADPCM"),
             "float16.wav": (wav(3, 16, 2), "unsupported encoding: WAV IEEE float 16-bit"),
             "notes.wav": (b"hello", "wrong format: not WAV, FLAC or Ogg"),
             "id3.wav": (b"ID3\x03" + bytes(200), "looks like MP3"),
             "cut_header.wav": (wav(1, 16, 2)[:30], "corrupt"),
             "speex.ogg": (b"OggS" + bytes(22) + b"\x01\x50" + b"Speex   " + bytes(80),
                           "unsupported encoding: Ogg Speex")}
    for name, (raw, message) in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(EdgeError, match=message) as info:
            inspect_audio_file(str(tmp_path / name))
        assert "\n" not in str(info.value)
    with pytest.raises(EdgeError, match="does not exist"):
        open_audio_source(str(tmp_path / "absent.wav"))


def test_without_soundfile_pcm_and_float_wav_still_read_and_the_rest_names_the_extra(tmp_path, monkeypatch):
    import edge.capture.audio_file as audio_file

    monkeypatch.setattr(audio_file, "_soundfile", lambda: (None, "soundfile is not installed: pip install "
                                                                  "'edge-depression-screening[formats]'"))
    x = _tone(16000)
    pcm = write_wav(tmp_path / "pcm.wav", x, 16000)
    got = np.concatenate(list(audio_file.AudioFileSource(str(pcm)).chunks()))
    assert np.abs(got - x).max() < 1e-3
    raw = x.astype("<f4").tobytes()  # IEEE float WAV by hand
    (tmp_path / "float.wav").write_bytes(b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32) + b"data" + struct.pack("<I", len(raw)) + raw)
    got = np.concatenate(list(audio_file.AudioFileSource(str(tmp_path / "float.wav")).chunks()))
    assert np.abs(got - x).max() < 1e-6
    (tmp_path / "a.flac").write_bytes(b"fLaC" + bytes(100))
    with pytest.raises(EdgeError, match=r"unsupported encoding: FLAC here \(soundfile is not installed.*formats"):
        audio_file.inspect_audio_file(str(tmp_path / "a.flac"))


def test_truncated_files_are_told_from_whole_ones(tmp_path):
    sf = pytest.importorskip("soundfile", reason="the `formats` extra (soundfile) is not installed")
    from edge.capture.audio_file import TRUNCATION_TOLERANCE_S, inspect_audio_file

    x = _tone(44100, 2.0)
    whole = tmp_path / "whole.wav"
    sf.write(str(whole), np.stack([x, x], axis=1), 44100, subtype="PCM_24", format="WAVEX")
    raw = whole.read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[:len(raw) // 4])
    (tmp_path / "last_block.wav").write_bytes(raw[:-6 * 100])  # 100 frames short: within the tolerance
    assert inspect_audio_file(str(whole)).truncated is None
    info = inspect_audio_file(str(tmp_path / "cut.wav"))
    assert info.declared_frames == 88200 and info.present_frames < 22100
    assert info.truncated == "truncated: the header declares 2.000 s, the file holds 0.500 s"
    assert inspect_audio_file(str(tmp_path / "last_block.wav")).missing_s < TRUNCATION_TOLERANCE_S
    # A FLAC's STREAMINFO declares its length; a cut one ends early when read.
    sf.write(str(tmp_path / "a.flac"), x, 44100)
    raw = (tmp_path / "a.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(raw[:len(raw) // 3])
    source = open_audio_source(str(tmp_path / "cut.flac"))
    reader = AudioReader(source, SessionClock(), fast=True).start()
    drain(reader.queue)
    reader.stop()
    assert source.frames == 88200 and source.frames_read < 40000
    assert reader.gaps and reader.gaps[0][2] == "audio file truncated"


def test_wav_reader_thread_delivers_every_sample_in_order(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)
    source = WavSource(str(write_wav(tmp_path / "c.wav", x, 16000)), chunk_ms=100)
    reader = AudioReader(source, SessionClock(), queue_seconds=0.3, fast=True).start()
    time.sleep(0.1)  # the reader fills its 3-chunk queue and waits: nothing is dropped
    got = np.concatenate(drain(reader.queue))
    reader.stop()
    assert len(got) == len(x) and np.abs(got - x).max() < 1e-4
    assert reader.overflow_samples == 0 and reader.queue.dropped == 0


def test_a_truncated_wav_keeps_its_whole_samples_and_says_so(tmp_path):
    x = np.random.default_rng(1).uniform(-0.5, 0.5, 16000).astype(np.float32)
    path = write_wav(tmp_path / "t.wav", x, 16000)
    data = path.read_bytes()
    path.write_bytes(data[:-2001])  # the header still says 16000 samples; the last one is cut in half
    source = WavSource(str(path), chunk_ms=100)
    reader = AudioReader(source, SessionClock(), fast=True).start()
    got = np.concatenate(drain(reader.queue))
    reader.stop()
    assert len(got) == 14999 and np.abs(got - x[:14999]).max() < 1e-4
    assert not any("stopped" in w for w in reader.warnings)
    assert any("ended after 14999 of 16000 samples" in w for w in reader.warnings)
    assert reader.gaps == [(0.937, 1.0, "audio file truncated")]


# ----- video --------------------------------------------------------------------------
class FakeCapture:
    """cv2.VideoCapture stand-in: `plan` lists, per open, how many frames it gives before failing."""

    opens = []

    def __init__(self, plan, size=(48, 64)):
        self.plan = plan
        self.size = size
        self.left = plan.pop(0) if plan else 0
        self.opened = self.left is not None
        FakeCapture.opens.append(self.opened)

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self):
        if not self.opened or self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.full(self.size + (3,), 100, np.uint8)

    def set(self, *args):
        return True

    def get(self, *args):
        return 0.0

    def release(self):
        self.opened = False


def fake_factory(plan):
    return lambda *args: FakeCapture(plan)


def test_a_camera_that_cannot_be_opened_is_a_one_line_error():
    source = open_video_source("camera:3", capture_factory=fake_factory([None]))
    with pytest.raises(EdgeError, match="camera 3 cannot be opened") as info:
        check_opens(source)
    assert "\n" not in str(info.value)


def test_a_camera_that_disappears_is_reopened_and_the_gap_recorded():
    # Open 1 gives 5 frames then fails; two reopen attempts fail; open 4 gives 5 more.
    plan = [5, None, None, 5]
    source = open_video_source("camera:0", capture_factory=fake_factory(plan))
    reader = VideoReader(source, SessionClock(), queue_frames=100, backoff=FAST_BACKOFF).start()
    frames = drain(reader.queue, timeout_s=1.0, limit=10)
    reader.stop()
    assert len(frames) == 10
    assert [f.index for f in frames] == list(range(10))
    assert len(reader.gaps) >= 1
    start, end = reader.gaps[0]
    assert end > start  # the outage lasted at least the back-off delays
    assert all(a.t_s <= b.t_s for a, b in zip(frames, frames[1:]))  # one monotonic clock


def test_live_video_drops_the_oldest_frames_when_the_consumer_is_behind():
    source = open_video_source("camera:0", capture_factory=fake_factory([50]))
    reader = VideoReader(source, SessionClock(), queue_frames=4, backoff=FAST_BACKOFF).start()
    deadline = time.monotonic() + 2.0
    while reader.frames_in < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    frames = drain(reader.queue, timeout_s=0.3, limit=4)
    reader.stop()
    assert reader.frames_in == 50
    assert reader.dropped == 46
    assert [f.index for f in frames] == [46, 47, 48, 49]  # the newest survive


class FrameClock:
    """A session clock that reads the time a fake camera set when it handed over a frame."""

    def __init__(self):
        self.t = 0.0

    def start(self):
        self.t = 0.0

    def now_s(self):
        return self.t


class GrabCamera:
    """cv2.VideoCapture stand-in with OpenCV's grab()/retrieve(): frame i comes at `times[i]`
    on `clock`, its pixels are i % 256, and every retrieve() (a decode) is recorded."""

    def __init__(self, times, clock, size=(48, 64), images=None):
        self.times = list(times)
        self.clock = clock
        self.size = size
        self.images = images
        self.grabbed = 0
        self.retrieved = []

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def grab(self):
        if self.grabbed >= len(self.times):
            return False
        self.clock.t = self.times[self.grabbed]
        self.grabbed += 1
        return True

    def retrieve(self):
        index = self.grabbed - 1
        self.retrieved.append(index)
        if self.images is not None:
            return True, self.images[index].copy()
        return True, np.full(self.size + (3,), index % 256, np.uint8)

    def read(self):
        return (False, None) if not self.grab() else self.retrieve()

    def set(self, *args):
        return True

    def get(self, *args):
        return 0.0

    def release(self):
        pass


def camera_factory(camera):
    cameras = [camera]
    return lambda *args: cameras.pop(0) if cameras else FakeCapture([None])


def test_a_live_camera_decodes_only_the_frames_that_will_be_analysed_and_counts_every_frame():
    clock = FrameClock()
    jitter_s = [0.0, 0.004, 0.011, 0.002, 0.007]  # arrival jitter moves frames across slot edges
    times = [i / 30.0 + jitter_s[i % 5] for i in range(60)]
    camera = GrabCamera(times, clock)
    source = open_video_source("camera:0", capture_factory=camera_factory(camera))
    reader = VideoReader(source, clock, queue_frames=100, backoff=FAST_BACKOFF, analysis_fps=10.0).start()
    frames = drain(reader.queue, timeout_s=2.0, limit=60)
    reader.stop()
    assert reader.frames_in == 60 and reader.dropped == 0
    assert [f.index for f in frames] == list(range(60))  # every frame the camera gave is counted
    assert [f.t_s for f in frames] == times  # stamped when the camera handed it over
    # The frames the engine analyses when every frame is decoded: the first of each slot.
    first_of_slot, last = [], -1
    for f in frames:
        if analysis_slot(f.t_s, 10.0) > last:
            first_of_slot.append(f.index)
            last = analysis_slot(f.t_s, 10.0)
    decoded = [f.index for f in frames if f.image is not None]
    assert decoded == first_of_slot and camera.retrieved == first_of_slot
    assert len(decoded) == 20  # 10 of 30 frames a second
    assert all(int(f.image[0, 0, 0]) == f.index for f in frames if f.image is not None)


def test_a_live_camera_without_an_analysis_rate_decodes_every_frame():
    clock = FrameClock()
    camera = GrabCamera([i / 30.0 for i in range(12)], clock)
    source = open_video_source("camera:0", capture_factory=camera_factory(camera))
    reader = VideoReader(source, clock, queue_frames=100, backoff=FAST_BACKOFF).start()
    frames = drain(reader.queue, timeout_s=2.0, limit=12)
    reader.stop()
    assert [f.index for f in frames] == list(range(12)) and all(f.image is not None for f in frames)
    assert camera.retrieved == list(range(12))


def test_a_slot_whose_decoded_frame_was_dropped_is_decoded_again():
    # Four frames in one analysis slot, a queue of two and no consumer yet: frame 0 (decoded)
    # is dropped when frame 2 comes, so frame 3 is decoded and the slot is still analysed.
    clock = FrameClock()
    camera = GrabCamera([0.0, 0.01, 0.02, 0.03], clock)
    source = open_video_source("camera:0", capture_factory=camera_factory(camera))
    reader = VideoReader(source, clock, queue_frames=2, backoff=FAST_BACKOFF, analysis_fps=10.0).start()
    deadline = time.monotonic() + 2.0
    while reader.frames_in < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    frames = drain(reader.queue, timeout_s=0.3, limit=2)
    reader.stop()
    assert reader.frames_in == 4 and reader.dropped == 2
    assert [f.index for f in frames] == [2, 3]
    assert frames[0].image is None and frames[1].image is not None
    assert camera.retrieved == [0, 3]


def test_the_screener_runs_opencv_on_one_thread():
    import cv2

    from edge.capture.video import single_opencv_thread

    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        assert single_opencv_thread(cv2) == 2
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


def test_gstreamer_needs_an_opencv_built_with_it():
    import cv2

    if gstreamer_available(cv2):
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(EdgeError, match="no GStreamer support") as info:
        open_video_source("gst:videotestsrc ! appsink")
    assert "\n" not in str(info.value)


def test_picamera2_absent_is_a_one_line_error():
    with pytest.raises(EdgeError, match="picamera2 is not installed"):
        open_video_source("picamera2")


def test_video_files_bad_and_truncated(tmp_path):
    with pytest.raises(EdgeError, match="does not exist"):
        open_video_source(str(tmp_path / "none.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(EdgeError, match="cannot be opened") as info:
        open_video_source(str(junk))
    assert "\n" not in str(info.value)
    source = FileSource(str(DEMO_VIDEO))
    assert source.fps == 30.0 and source.frame_count == 150
    # A file that claims 150 frames but gives 20: the session uses them and says so.
    source._factory = fake_factory([20])
    reader = VideoReader(source, SessionClock(), queue_frames=4, fast=True).start()
    frames = drain(reader.queue)
    reader.stop()
    assert len(frames) == 20 and reader.dropped == 0
    assert [round(f.t_s, 4) for f in frames[:3]] == [0.0, round(1 / 30, 4), round(2 / 30, 4)]
    assert any("truncated" in w for w in reader.warnings)


# ----- microphone ---------------------------------------------------------------------
class FakeStream:
    def __init__(self, mic, rate):
        self.mic = mic
        self.rate = rate
        self.opened = time.monotonic()
        self.reads = 0

    def read(self, n, exception_on_overflow=True):
        if self.mic.fail_after is not None:
            if self.mic.reads >= self.mic.fail_after and not self.mic.failed:
                self.mic.failed = True
                raise OSError(-9988, "Stream closed")
        if self.mic.overflow_at is not None and self.mic.reads == self.mic.overflow_at:
            self.mic.overflow_at = None
            time.sleep(0.3)  # the reader was held up: PortAudio's buffer ran over, 0.3 s are gone
            self.opened += 0.3
            if exception_on_overflow:
                raise OSError(-9981, "Input overflowed")
        self.mic.reads += 1
        self.reads += 1
        if self.mic.realtime:  # a device gives a chunk when it has been recorded
            time.sleep(max(0.0, self.opened + self.reads * n / self.rate - time.monotonic()))
        else:
            time.sleep(0.001)
        t = (self.mic.reads * n + np.arange(n)) / self.rate
        return (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()

    def stop_stream(self):
        pass

    def close(self):
        pass


class FakePyAudio:
    """A stand-in for the pyaudio module: devices, supported rates, failures."""

    paInt16 = 8

    paInputOverflowed = -9981

    def __init__(self, devices=1, rates=(16000,), fail_after=None, realtime=False, overflow_at=None):
        self.devices = devices
        self.rates = rates
        self.fail_after = fail_after
        self.realtime = realtime
        self.overflow_at = overflow_at
        self.failed = False
        self.reads = 0
        outer = self

        class PyAudio:
            def get_default_input_device_info(self):
                if not outer.devices:
                    raise OSError("No Default Input Device Available")
                return {"index": 0, "name": "fake mic"}

            def get_device_info_by_index(self, index):
                if index >= outer.devices:
                    raise OSError(-9996, "Invalid device")
                return {"index": index, "name": "fake mic"}

            def is_format_supported(self, rate, **kw):
                if rate not in outer.rates:
                    raise ValueError("Invalid sample rate")
                return True

            def open(self, rate, **kw):
                return FakeStream(outer, rate)

            def terminate(self):
                pass

        self.PyAudio = PyAudio


def test_no_microphone_is_a_one_line_error():
    with pytest.raises(EdgeError, match="No Default Input Device Available") as info:
        open_audio_source("mic", pyaudio_module=FakePyAudio(devices=0))
    assert "\n" not in str(info.value)
    with pytest.raises(EdgeError, match="no microphone 4"):
        open_audio_source("mic:4", pyaudio_module=FakePyAudio(devices=1))


def test_a_microphone_at_an_unsupported_rate():
    with pytest.raises(EdgeError, match="supports none of 16000, 48000, 44100 Hz"):
        MicSource(rates_hz=(16000, 48000, 44100), pyaudio_module=FakePyAudio(rates=(8000,)))
    mic = MicSource(rates_hz=(16000, 48000, 44100), pyaudio_module=FakePyAudio(rates=(48000,)))
    assert mic.rate_hz == 48000 and "resampled" in mic.notes[0]
    reader = AudioReader(mic, SessionClock(), queue_seconds=60).start()
    time.sleep(0.1)
    reader.stop()
    chunks = drain(reader.queue, timeout_s=0.5)
    total = sum(len(c) for c in chunks)
    # 4800 samples a read at 48 kHz become 1600 at 16 kHz (the last read may still be in flight).
    assert mic.pyaudio.reads * 1600 - 1700 < total <= mic.pyaudio.reads * 1600


def test_a_microphone_that_disappears_leaves_a_recorded_gap_and_stays_aligned():
    fake = FakePyAudio(fail_after=3, realtime=True)
    mic = MicSource(pyaudio_module=fake)
    clock = SessionClock()
    reader = AudioReader(mic, clock, queue_seconds=60, backoff=Backoff(0.25, 0.25)).start()
    time.sleep(1.0)
    stopped_s = clock.now_s()
    reader.stop()
    items = drain(reader.queue, timeout_s=0.5)
    gaps = [i for i in items if isinstance(i, AudioGap)]
    lost = [g for g in reader.gaps if g[2] == "microphone lost"]
    assert len(lost) == 1 and {g.reason for g in gaps if g.reason != "microphone start"} == {"microphone lost"}
    # Lost time counts from the last good sample (0.3 s: three chunks), not from when the
    # failure was noticed; the silence fills up to the clock at the reopen.
    start, end, _ = lost[0]
    assert abs(start - 0.3) < 0.05 and end >= start + 0.25
    filled = sum(g.samples for g in gaps if g.reason == "microphone lost")
    assert abs(filled / 16000 - (end - start)) < 0.002
    # After the reconnect, audio is within one tick (0.1 s) of the clock: A/V stay aligned.
    total_s = sum(i.samples if isinstance(i, AudioGap) else len(i) for i in items) / 16000
    assert stopped_s - 0.1 - 0.05 <= total_s <= stopped_s + 0.05
    assert reader.overflow_samples == 0


def test_portaudio_input_overflow_is_read_and_becomes_a_gap():
    fake = FakePyAudio(realtime=True, overflow_at=2)
    mic = MicSource(pyaudio_module=fake)
    clock = SessionClock()
    reader = AudioReader(mic, clock, queue_seconds=60).start()
    time.sleep(0.8)
    stopped_s = clock.now_s()
    reader.stop()
    items = drain(reader.queue, timeout_s=0.5)
    overflow = [g for g in reader.gaps if g[2] == "input overflow"]
    assert len(overflow) == 1 and abs(overflow[0][0] - 0.2) < 0.05
    assert 0.25 * 16000 <= reader.overflow_samples <= 0.45 * 16000
    assert [i.reason for i in items if isinstance(i, AudioGap) and i.reason != "microphone start"] == \
        ["input overflow"]
    total_s = sum(i.samples if isinstance(i, AudioGap) else len(i) for i in items) / 16000
    assert stopped_s - 0.15 <= total_s <= stopped_s + 0.05


def test_a_quiet_session_reports_no_overflow():
    """The chunk read while stop() waits for the reader is not lost: nobody wanted it."""
    mic = MicSource(pyaudio_module=FakePyAudio(realtime=True))
    reader = AudioReader(mic, SessionClock(), queue_seconds=60).start()
    time.sleep(0.35)
    reader.stop()
    drain(reader.queue, timeout_s=0.5)
    assert reader.overflow_samples == 0 and not [g for g in reader.gaps if g[2] != "microphone start"]


def test_microphone_overflow_is_counted_and_kept_as_a_gap():
    mic = MicSource(pyaudio_module=FakePyAudio())
    reader = AudioReader(mic, SessionClock(), queue_seconds=0.3).start()  # room for 3 chunks
    time.sleep(0.1)  # nobody reads: the queue overflows
    first = [reader.queue.get(0.5) for _ in range(3)]
    time.sleep(0.05)
    reader.stop()
    rest = drain(reader.queue, timeout_s=0.5)
    assert reader.overflow_samples > 0
    assert all(isinstance(c, np.ndarray) for c in first)
    gaps = [i for i in rest if isinstance(i, AudioGap)]
    assert gaps and gaps[0].reason == "overflow"
    # Every sample read from the device is either delivered or inside an overflow gap, but
    # the chunk read while stop() waited for the reader (nobody wanted it, not lost).
    delivered = sum(len(i) for i in first + rest if isinstance(i, np.ndarray))
    assert delivered + reader.overflow_samples in (mic.pyaudio.reads * 1600, (mic.pyaudio.reads - 1) * 1600)


def test_microphone_audio_starts_at_the_session_clock():
    mic = MicSource(pyaudio_module=FakePyAudio())
    clock = SessionClock()
    time.sleep(0.3)  # the session started a while before the microphone stream opens
    reader = AudioReader(mic, clock, queue_seconds=60).start()
    first = reader.queue.get(timeout_s=2.0)
    opened_s = clock.now_s()
    reader.stop()
    assert isinstance(first, AudioGap) and first.reason == "microphone start"
    # The gap and the first 1600-sample chunk end when that chunk arrived on the session clock.
    assert 0.3 * 16000 - 1600 <= first.samples <= opened_s * 16000 - 1600
    rest = drain(reader.queue, timeout_s=0.5)
    assert isinstance(rest[0], np.ndarray) and not any(isinstance(i, AudioGap) for i in rest)


def test_picamera2_source_with_a_fake_module():
    from edge.capture.video import Picamera2Source

    class Camera:
        def create_video_configuration(self, main):
            assert main == {"size": (320, 240), "format": "BGR888"}
            return main

        def configure(self, config):
            pass

        def start(self):
            pass

        def capture_array(self):
            return np.zeros((240, 320, 3), np.uint8)

        def stop(self):
            pass

        def close(self):
            pass

    class Module:
        Picamera2 = Camera

    source = Picamera2Source(320, 240, module=Module())
    check_opens(source)
    reader = VideoReader(source, SessionClock(), queue_frames=2).start()
    frame = reader.queue.get(timeout_s=2.0)
    reader.stop()
    assert frame.image.shape == (240, 320, 3) and source.live
