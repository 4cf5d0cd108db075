"""Audio sources: a microphone through pyaudio and a WAV file, both as 16 kHz mono.

    source = open_audio_source("edge/samples/demo_speech.wav")   # or "mic", "mic:2"
    reader = AudioReader(source, clock, fast=True).start()
    item = reader.queue.get(timeout_s=1.0)   # float32 chunk, AudioGap, END or None

Nothing is dropped silently: when the engine is behind, the microphone thread counts
the overflowing samples and, once there is room again, queues an AudioGap of the same
length (silence with a record), so audio and video stay aligned. The microphone's first
chunk is preceded by an AudioGap for the session time before it (the stream opens
after the session clock starts), so audio sample 0 is session time 0 like video's.
"""
from __future__ import annotations

import os
import struct
import wave
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from edge.capture.clock import Backoff, SessionClock
from edge.capture.queues import CaptureThread, DropOldestQueue
from edge.capture.resample import Resampler
from edge.errors import EdgeError, first_line
from edge.features.audio import SAMPLE_RATE_HZ
from edge.native_output import native_stderr_silenced

_PCM_DTYPES = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}


class AudioGap(NamedTuple):
    """`samples` of 16 kHz audio that were lost (device gone, queue overflow): silence."""

    samples: int
    reason: str


def pcm_to_float(raw: bytes, sample_width: int, channels: int) -> np.ndarray:
    """Little-endian PCM bytes -> float32 mono in [-1, 1] (channels averaged)."""
    if sample_width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16))
        ints = np.where(ints & 0x800000, ints - (1 << 24), ints)
        x = ints.astype(np.float32) / float(1 << 23)
    elif sample_width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    else:
        dtype = _PCM_DTYPES[sample_width]
        x = np.frombuffer(raw, dtype).astype(np.float32) / float(2 ** (8 * sample_width - 1))
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1)
    return x.astype(np.float32)


# What Python's wave module raises on a damaged header or chunk (found by fuzzing:
# RuntimeError from a chunk that seeks past its end, struct.error on a short header).
_WAV_ERRORS = (wave.Error, EOFError, RuntimeError, ValueError, OverflowError, struct.error)


class WavSource:
    """A PCM WAV file (8/16/24/32-bit, any channel count, any rate).

    Other rates are resampled to 16 kHz and more channels averaged to mono; both are
    said in `notes`. A WAV that is not PCM (float, compressed) is refused in one line.
    """

    live = False

    def __init__(self, path: str, chunk_ms: int = 100):
        self.path = str(path)
        self.name = self.path
        self.chunk_ms = chunk_ms
        self.notes: List[str] = []
        self.frames_read = 0
        if not os.path.isfile(self.path):
            raise EdgeError(f"audio {path} does not exist")
        try:
            with wave.open(self.path, "rb") as f:
                self.rate_hz = f.getframerate()
                self.channels = f.getnchannels()
                self.sample_width = f.getsampwidth()
                self.frames = f.getnframes()
        except _WAV_ERRORS as exc:
            raise EdgeError(f"audio {path} is not a PCM WAV file ({type(exc).__name__}: {first_line(exc)}); "
                            "convert it: "
                            f"ffmpeg -i {path} -ac 1 -ar 16000 -sample_fmt s16 out.wav") from None
        if self.sample_width not in (1, 2, 3, 4) or self.rate_hz < 8000:
            raise EdgeError(f"audio {path} has {8 * self.sample_width}-bit samples at {self.rate_hz} Hz; "
                            "give 8/16/24/32-bit PCM at 8 kHz or more")
        if self.channels > 1:
            self.notes.append(f"{self.channels} channels averaged to mono")
        if self.rate_hz != SAMPLE_RATE_HZ:
            self.notes.append(f"resampled {self.rate_hz} Hz -> {SAMPLE_RATE_HZ} Hz")

    @property
    def duration_s(self) -> float:
        return self.frames / float(self.rate_hz)

    def chunks(self):
        """Yields 16 kHz float32 chunks of about chunk_ms each (resampled as needed).

        `frames_read` counts the file's frames read so far; a truncated file (fewer
        frames than its header says, or a last frame cut in the middle) ends early
        with what was whole, and the reader compares `frames_read` with `frames`.
        """
        resampler = Resampler(self.rate_hz, SAMPLE_RATE_HZ)
        per_chunk = max(1, self.rate_hz * self.chunk_ms // 1000)
        frame_bytes = self.channels * self.sample_width
        self.frames_read = 0
        with wave.open(self.path, "rb") as f:
            while True:
                try:
                    raw = f.readframes(per_chunk)
                except _WAV_ERRORS:  # damaged past this point: end here, as a truncated file
                    raw = b""
                final = len(raw) < per_chunk * frame_bytes
                raw = raw[: len(raw) - len(raw) % frame_bytes]  # a cut last frame is dropped
                self.frames_read += len(raw) // frame_bytes
                chunk = resampler.process(pcm_to_float(raw, self.sample_width, self.channels), final=final)
                if len(chunk):
                    yield chunk
                if final:
                    return


def _import_pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise EdgeError("pyaudio is not installed: `apt-get install portaudio19-dev && "
                        "pip install 'edge-depression-screening[audio]'`, or use --audio FILE") from None
    return pyaudio


class MicSource:
    """A microphone through pyaudio: 16 kHz mono, or 48/44.1 kHz resampled to 16 kHz."""

    live = True

    def __init__(self, index: Optional[int] = None, rates_hz: Sequence[int] = (16000, 48000, 44100),
                 chunk_ms: int = 100, pyaudio_module: Any = None):
        self.pyaudio = pyaudio_module or _import_pyaudio()
        self.index = index
        self.chunk_ms = chunk_ms
        self.notes: List[str] = []
        self.pa = None
        try:
            with native_stderr_silenced():
                self.pa = self.pyaudio.PyAudio()
                if index is None:
                    info = self.pa.get_default_input_device_info()
                else:
                    info = self.pa.get_device_info_by_index(index)
        except (OSError, ValueError) as exc:
            if self.pa is not None:
                self.pa.terminate()
            which = "default microphone" if index is None else f"microphone {index}"
            raise EdgeError(f"no {which}: {exc}; connect one (see `edge doctor`) or use --audio FILE") from None
        self.device_index = int(info.get("index", index or 0))
        self.name = f"microphone {self.device_index} ({info.get('name', '?')})"
        self.rate_hz = 0
        for rate in rates_hz:
            try:
                if self.pa.is_format_supported(rate, input_device=self.device_index, input_channels=1,
                                               input_format=self.pyaudio.paInt16):
                    self.rate_hz = int(rate)
                    break
            except ValueError:
                continue
        if not self.rate_hz:
            self.pa.terminate()
            tried = ", ".join(str(r) for r in rates_hz)
            raise EdgeError(f"{self.name} supports none of {tried} Hz mono 16-bit; "
                            "set audio.device_rates_hz in the config or use --audio FILE")
        if self.rate_hz != SAMPLE_RATE_HZ:
            self.notes.append(f"microphone at {self.rate_hz} Hz resampled to {SAMPLE_RATE_HZ} Hz")
        self.frames_per_chunk = max(1, self.rate_hz * chunk_ms // 1000)

    def open(self):
        """An open input stream, or None when the device is not there now."""
        try:
            return self.pa.open(format=self.pyaudio.paInt16, channels=1, rate=self.rate_hz, input=True,
                                input_device_index=self.device_index, frames_per_buffer=self.frames_per_chunk)
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self.pa.terminate()


def open_audio_source(spec: Optional[str], rates_hz: Sequence[int] = (16000, 48000, 44100),
                      chunk_ms: int = 100, pyaudio_module: Any = None):
    """An audio source from a spec: "mic", "mic:<index>", a WAV path, or None."""
    if spec is None or spec == "":
        return None
    if spec == "mic" or spec.startswith("mic:"):
        index = None
        if spec.startswith("mic:"):
            try:
                index = int(spec[4:])
            except ValueError:
                raise EdgeError(f"microphone index must be a number, got {spec[4:]!r}") from None
        return MicSource(index, rates_hz, chunk_ms, pyaudio_module)
    return WavSource(spec, chunk_ms)


class AudioReader(CaptureThread):
    """Reads an audio source in its own thread into a bounded queue of 16 kHz chunks.

    WAV files are played in real time (or as fast as the engine takes them with
    fast=True) and never lose a sample. The microphone is read as it comes; see the
    module docstring for overflow and gaps.
    """

    thread_name = "audio capture"

    def __init__(self, source, clock: SessionClock, queue_seconds: float = 30.0, fast: bool = False,
                 backoff: Optional[Backoff] = None, stall_timeout_s: float = 5.0):
        self.source = source
        self.clock = clock
        self.fast = fast and not source.live
        capacity = max(2, int(queue_seconds * 1000 / max(1, source.chunk_ms)))
        self.queue = DropOldestQueue(capacity, block_when_full=not source.live)
        self.samples_in = 0
        self.overflow_samples = 0
        self.gaps: List[Tuple[float, float, str]] = []
        self.warnings: List[str] = []
        self.backoff = backoff or Backoff()
        self.stall_timeout_s = stall_timeout_s
        super().__init__()

    def _run_file(self) -> None:
        for chunk in self.source.chunks():
            if self._stop.is_set():
                return
            if not self.fast:
                wait = self.samples_in / SAMPLE_RATE_HZ - self.clock.now_s()
                if wait > 0:
                    self._stop.wait(wait)
            # With --fast, wait for the engine as long as it takes (see VideoReader._run_file).
            if not self.queue.put(chunk, timeout_s=None if self.fast else self.stall_timeout_s):
                if not self._stop.is_set():
                    self.warnings.append("audio consumer stalled; reading stopped")
                return
            self.samples_in += len(chunk)
        expected = getattr(self.source, "frames", 0)
        read = getattr(self.source, "frames_read", expected)
        if read < expected:
            rate = float(self.source.rate_hz)
            self.warnings.append(f"audio {self.source.name} ended after {read} of {expected} samples "
                                 "(truncated or damaged file); the session used what was there")
            self.gaps.append((round(read / rate, 3), round(expected / rate, 3), "audio file truncated"))

    def _emit(self, item, samples: int) -> None:
        """Queue a chunk or gap; when full, count it as overflow and keep it as a pending gap."""
        self._position += samples
        if self._pending_gap and self.queue.offer(AudioGap(self._pending_gap, "overflow")):
            self._pending_gap = 0
        if self._pending_gap or not self.queue.offer(item):
            self.overflow_samples += samples
            self._pending_gap += samples
            return
        if not isinstance(item, AudioGap):
            self.samples_in += samples

    def _run_live(self) -> None:
        source = self.source
        resampler = Resampler(source.rate_hz, SAMPLE_RATE_HZ)
        self._pending_gap = 0
        self._position = 0  # samples of session time given so far (chunks, gaps, overflow)
        started = False
        stream = source.open()
        gap_start = None if stream is not None else self.clock.now_s()
        gap_mark = gap_start or 0.0
        try:
            while not self._stop.is_set():
                if stream is None:
                    if gap_start is None:
                        gap_start = gap_mark = self.clock.now_s()
                    self._stop.wait(self.backoff.delay())
                    stream = source.open()
                    # Silence for the time away, queued as it passes so the ticks go on.
                    now = self.clock.now_s()
                    lost = int(round((now - gap_mark) * SAMPLE_RATE_HZ))
                    gap_mark += lost / float(SAMPLE_RATE_HZ)
                    if lost:
                        self._emit(AudioGap(lost, "microphone lost"), lost)
                    if stream is not None:
                        self.gaps.append((round(gap_start, 3), round(now, 3), "microphone lost"))
                        gap_start = None
                        self.backoff.reset()
                    continue
                try:
                    raw = stream.read(source.frames_per_chunk, exception_on_overflow=False)
                except OSError:
                    _close(stream)
                    stream = None
                    continue
                chunk = resampler.process(pcm_to_float(raw, 2, 1))
                if len(chunk) and not started:
                    # Audio time is a sample count, video time the session clock: the stream
                    # opened some time after the session started, so the silence before the
                    # first chunk goes first and both streams start at the session's zero.
                    started = True
                    lead = int(round(self.clock.now_s() * SAMPLE_RATE_HZ)) - len(chunk) - self._position
                    if lead > 0:
                        self._emit(AudioGap(lead, "microphone start"), lead)
                if len(chunk):
                    self._emit(chunk, len(chunk))
        finally:
            if stream is not None:
                _close(stream)
            if gap_start is not None:
                self.gaps.append((round(gap_start, 3), round(self.clock.now_s(), 3), "microphone lost"))
            if self._pending_gap:
                self.queue.offer(AudioGap(self._pending_gap, "overflow"))
            source.close()


def _close(stream) -> None:
    try:
        stream.stop_stream()
        stream.close()
    except Exception:
        pass
