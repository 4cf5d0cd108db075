"""Audio sources: a microphone through pyaudio and an audio file, both as 16 kHz mono.

    source = open_audio_source("edge/samples/demo_speech.wav")   # or "mic", "mic:2"
    reader = AudioReader(source, clock, fast=True).start()
    item = reader.queue.get(timeout_s=1.0)   # float32 chunk, AudioGap, END or None

Nothing is dropped silently, and nothing is called lost that was not. Overflow counts
samples that were really lost: when the engine is behind (the queue is full), the
microphone thread counts the samples it could not queue and, once there is room again,
queues an AudioGap of the same length (silence with a record); when PortAudio reports an
input overflow (its own buffer ran over: `paInputOverflowed`, read, never discarded), the
time lost up to the clock becomes a gap. A chunk that arrives after the session stopped is
not lost: nobody wanted it. The gaps a reader records (`gaps`: start s, end s, reason) are:
- "microphone start": the session time before the first chunk (the stream opens after the
  session clock starts), so audio sample 0 is session time 0 like video's;
- "microphone lost": from the last good sample until the stream is back; the silence
  queued fills up to the clock, so audio and video stay aligned within a tick afterwards;
- "input overflow": samples PortAudio lost.
Reopening a stream runs with native stderr silenced (PortAudio and ALSA print ~20 lines).
"""
from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from edge.capture.audio_file import AudioFileSource
from edge.capture.clock import Backoff, SessionClock
from edge.capture.queues import CaptureThread, DropOldestQueue
from edge.capture.resample import Resampler
from edge.errors import EdgeError
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


# Audio files (WAV of every kind, FLAC, Ogg) have their own module; the old name stays.
WavSource = AudioFileSource


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
        self.rate_hz = _open_rate(self.pa, self.pyaudio, self.device_index, rates_hz)
        if not self.rate_hz:
            self.pa.terminate()
            tried = ", ".join(str(r) for r in rates_hz)
            raise EdgeError(f"{self.name} supports none of {tried} Hz mono 16-bit; "
                            "set audio.device_rates_hz in the config or use --audio FILE")
        if self.rate_hz != SAMPLE_RATE_HZ:
            self.notes.append(f"microphone at {self.rate_hz} Hz resampled to {SAMPLE_RATE_HZ} Hz")
        self.frames_per_chunk = max(1, self.rate_hz * chunk_ms // 1000)

    def open(self):
        """An open input stream, or None when the device is not there now (PortAudio's
        complaints on stderr are silenced: a reopen after a lost server prints ~20 lines)."""
        try:
            with native_stderr_silenced():
                return self.pa.open(format=self.pyaudio.paInt16, channels=1, rate=self.rate_hz, input=True,
                                    input_device_index=self.device_index, frames_per_buffer=self.frames_per_chunk)
        except (OSError, ValueError):
            return None

    def is_overflow(self, exc: BaseException) -> bool:
        """Whether a read's error is PortAudio's input overflow (samples lost, stream fine)."""
        code = getattr(self.pyaudio, "paInputOverflowed", -9981)
        return bool(exc.args) and exc.args[0] == code

    def close(self) -> None:
        self.pa.terminate()


def _open_rate(pa, pyaudio, index: int, rates_hz: Sequence[int]) -> int:
    """The first of `rates_hz` the input opens at (mono, 16-bit), or 0: what MicSource picks."""
    for rate in rates_hz:
        try:
            if pa.is_format_supported(rate, input_device=index, input_channels=1, input_format=pyaudio.paInt16):
                return int(rate)
        except ValueError:
            continue
    return 0


def list_inputs(rates_hz: Sequence[int] = (16000, 48000, 44100), pyaudio_module: Any = None) -> List[dict]:
    """Every input device as {"index", "name", "open_rate_hz" (what edge opens it at; 0:
    none of rates_hz), "device_rate_hz" (PortAudio's default rate), "default" (the
    default input, what "mic" opens)}. Native chatter silenced."""
    pyaudio = pyaudio_module or _import_pyaudio()
    with native_stderr_silenced():
        pa = pyaudio.PyAudio()
        try:
            try:
                default = int(pa.get_default_input_device_info().get("index", -1))
            except (OSError, ValueError):
                default = -1
            inputs = []
            for i in range(pa.get_device_count()):
                info = pa.get_device_info_by_index(i)
                if info.get("maxInputChannels", 0) <= 0:
                    continue
                inputs.append({"index": i, "name": str(info.get("name", "?")),
                               "open_rate_hz": _open_rate(pa, pyaudio, i, rates_hz),
                               "device_rate_hz": int(info.get("defaultSampleRate", 0)), "default": i == default})
        finally:
            pa.terminate()
    return inputs


def open_audio_source(spec: Optional[str], rates_hz: Sequence[int] = (16000, 48000, 44100),
                      chunk_ms: int = 100, pyaudio_module: Any = None):
    """An audio source from a spec: "mic", "mic:<index>", an audio file's path (WAV, FLAC,
    Ogg: edge.capture.audio_file), or None."""
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
    return AudioFileSource(spec, chunk_ms)


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
        """Queue a chunk or gap; when full, count it as overflow and keep it as a pending gap.
        After stop() nothing is counted: the session no longer wants the chunk."""
        if self._stop.is_set():
            return
        self._position += samples
        if self._pending_gap and self.queue.offer(AudioGap(self._pending_gap, "overflow")):
            self._pending_gap = 0
        if self._pending_gap or not self.queue.offer(item):
            self.overflow_samples += samples
            self._pending_gap += samples
            return
        if not isinstance(item, AudioGap):
            self.samples_in += samples

    def _fill_to_clock(self, reason: str) -> int:
        """Queue silence from the last sample given up to the session clock; returns its length."""
        lost = int(round(self.clock.now_s() * SAMPLE_RATE_HZ)) - self._position
        if lost > 0:
            self._emit(AudioGap(lost, reason), lost)
        return max(lost, 0)

    def _run_live(self) -> None:
        source = self.source
        resampler = Resampler(source.rate_hz, SAMPLE_RATE_HZ)
        self._pending_gap = 0
        self._position = 0  # samples of session time given so far (chunks, gaps, overflow)
        # The open gap: its reason and session time from the last good sample. A stream (the
        # first, or one reopened) delivers its first buffer a while after it opens (0.05-1.9 s
        # with PulseAudio): until then the gap stays open, and the first chunk is placed at
        # the clock, so audio sample n is session time n / 16 kHz across every reopen.
        gap_reason: Optional[str] = "microphone start"
        gap_from = 0.0
        stream = source.open()
        try:
            while not self._stop.is_set():
                if stream is None:
                    if gap_reason is None:
                        gap_reason, gap_from = "microphone lost", self._position / float(SAMPLE_RATE_HZ)
                    elif gap_reason == "microphone start" and self._position == 0:
                        gap_reason = "microphone lost"  # never heard: the whole time is the outage
                    self._stop.wait(self.backoff.delay())
                    if self._stop.is_set():
                        break
                    stream = source.open()
                    self._fill_to_clock(gap_reason)  # the ticks go on while the device is away
                    if stream is not None:
                        resampler = Resampler(source.rate_hz, SAMPLE_RATE_HZ)  # a new stream, a new filter
                        self.backoff.reset()
                    continue
                try:
                    raw = stream.read(source.frames_per_chunk, exception_on_overflow=True)
                except OSError as exc:
                    if source.is_overflow(exc):
                        # PortAudio lost input (and pyaudio this read's frames): silence up to the clock.
                        at = self._position / float(SAMPLE_RATE_HZ)
                        lost = self._fill_to_clock("input overflow")
                        self.overflow_samples += lost
                        if lost:
                            self.gaps.append((round(at, 3), round(at + lost / float(SAMPLE_RATE_HZ), 3),
                                              "input overflow"))
                        continue
                    _close(stream)
                    stream = None
                    continue
                chunk = resampler.process(pcm_to_float(raw, 2, 1))
                if len(chunk) and gap_reason is not None:
                    # Audio time is a sample count, video time the session clock: the silence
                    # before this stream's first chunk goes first, up to the clock.
                    lead = int(round(self.clock.now_s() * SAMPLE_RATE_HZ)) - len(chunk) - self._position
                    if lead > 0:
                        self._emit(AudioGap(lead, gap_reason), lead)
                    end_s = self._position / float(SAMPLE_RATE_HZ)
                    if end_s > gap_from:
                        self.gaps.append((round(gap_from, 3), round(end_s, 3), gap_reason))
                    gap_reason = None
                if len(chunk):
                    self._emit(chunk, len(chunk))
        finally:
            if stream is not None:
                _close(stream)
            if gap_reason is not None and self.clock.now_s() > gap_from:
                self.gaps.append((round(gap_from, 3), round(self.clock.now_s(), 3), gap_reason))
            if self._pending_gap:
                self.queue.offer(AudioGap(self._pending_gap, "overflow"))
            source.close()


def _close(stream) -> None:
    try:
        stream.stop_stream()
        stream.close()
    except Exception:
        pass
