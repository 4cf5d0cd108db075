"""Audio files as recorders, wearables and phones write them, read as 16 kHz mono float32.

    info = inspect_audio_file("night.flac")       # container, encoding, rate, declared vs present length
    source = AudioFileSource("night.flac")         # chunks() -> float32 16 kHz mono

Taken: WAV in every PCM width (8-32 bit), IEEE float (32/64 bit), WAVE_FORMAT_EXTENSIBLE,
mu-law and A-law; FLAC; Ogg Vorbis and Ogg Opus. Decoding is libsndfile's, through
`soundfile` (the `formats` extra; its wheels bundle libsndfile for x86-64 and for aarch64
with glibc >= 2.28; elsewhere, e.g. a Jetson Nano on JetPack 4.6, the system's libsndfile,
which reads Opus only from 1.0.29 on). Without it, integer PCM and float WAV (plain or
EXTENSIBLE) are still read by the built-in reader here, and anything else is refused in one
line that names the extra. An encoding we do not take is named as such ("unsupported
encoding: WAV MP3 (format 0x0055)"), never called corrupt; a file whose header cannot be
parsed is "corrupt".

Length: a WAV header declares its data length and FLAC's STREAMINFO its sample count. A
file with fewer frames than declared (`missing_s` beyond TRUNCATION_TOLERANCE_S) is
truncated: callers decide (`edge run` uses what is there and marks the gap; the nightly job
quarantines it and keeps the file). A WAV whose data length says "unknown" (0 or 0xFFFFFFFF,
written by a recorder that was still streaming) and Ogg (no declared length) are taken at
the length that is there.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from edge.capture.resample import Resampler
from edge.errors import EdgeError, first_line, shown
from edge.features.audio import SAMPLE_RATE_HZ

FORMATS_EXTRA_HINT = "pip install 'edge-depression-screening[formats]' (soundfile, libsndfile)"
TRUNCATION_TOLERANCE_S = 0.05  # a recorder's last partial block; more missing is a truncated file
_HEADER_BYTES = 1 << 16  # WAV chunks before `data` (LIST, bext, JUNK) are read up to this far
_OPUS_MIN_LIBSNDFILE = (1, 0, 29)

# WAVE format tags: the ones we decode, and names for the ones we name when refusing.
_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
_TAG_NAMES = {_PCM: "PCM", _FLOAT: "IEEE float", _ALAW: "A-law", _MULAW: "mu-law", 0x0002: "MS ADPCM",
              0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0050: "MPEG", 0x0055: "MP3", 0x0092: "Dolby AC3",
              0x00FF: "AAC", 0x1610: "AAC", 0x2000: "AC3", 0x674F: "Ogg Vorbis", 0x704F: "Opus",
              0xF1AC: "FLAC"}
_DECODED_TAGS = (_PCM, _FLOAT, _ALAW, _MULAW)
_MAGIC = ((b"ID3", "MP3"), (b"\xff\xfb", "MP3"), (b"\xff\xf3", "MP3"), (b"\xff\xf1", "AAC"),
          (b"\x00\x00\x00", "MP4/M4A"), (b"#!AMR", "AMR"), (b"{", "JSON"), (b"<", "XML/HTML"))


@dataclass(frozen=True)
class AudioFileInfo:
    """What an audio file's header says, and how much of it is there.

    container: "WAV" | "FLAC" | "Ogg"; encoding: e.g. "PCM 24-bit", "IEEE float 32-bit",
    "mu-law", "FLAC", "Opus"; declared_frames: the length the header declares (None when it
    declares none); present_frames: the frames in the file (None when only decoding can
    tell, e.g. a cut FLAC); decoder: "libsndfile 1.2.2" or "built-in WAV reader"."""

    path: str
    container: str
    encoding: str
    rate_hz: int
    channels: int
    declared_frames: Optional[int]
    present_frames: Optional[int]
    decoder: str

    @property
    def frames(self) -> int:
        """The frames to expect when reading: what is there, else what is declared."""
        if self.present_frames is not None:
            return self.present_frames
        return self.declared_frames or 0

    @property
    def duration_s(self) -> float:
        return self.frames / float(self.rate_hz)

    @property
    def missing_s(self) -> float:
        """Seconds the header declares that are not in the file (0.0 when none or unknown)."""
        if self.declared_frames is None or self.present_frames is None:
            return 0.0
        return max(0, self.declared_frames - self.present_frames) / float(self.rate_hz)

    @property
    def tolerance_s(self) -> float:
        """Seconds a file may lack against its header before it counts as truncated."""
        return TRUNCATION_TOLERANCE_S

    @property
    def truncated(self) -> Optional[str]:
        """Why the file counts as truncated (one line), or None."""
        if self.missing_s <= TRUNCATION_TOLERANCE_S:
            return None
        return (f"truncated: the header declares {self.declared_frames / float(self.rate_hz):.3f} s, "
                f"the file holds {self.present_frames / float(self.rate_hz):.3f} s")


def _soundfile() -> Tuple[Any, Optional[str]]:
    """(the soundfile module or None, why not)."""
    try:
        import soundfile
    except ImportError:
        return None, f"soundfile is not installed: {FORMATS_EXTRA_HINT}"
    except OSError as exc:  # the py-none-any wheel without a system libsndfile
        return None, f"libsndfile cannot be loaded ({first_line(exc)}): apt-get install libsndfile1"
    return soundfile, None


def _libsndfile_version(sf) -> Tuple[int, ...]:
    text = str(getattr(sf, "__libsndfile_version__", "0"))
    return tuple(int(p) for p in text.split("-")[0].split(".")[:3] if p.isdigit())


def _corrupt(path: str, why: str) -> EdgeError:
    return EdgeError(f"audio {path} is corrupt: {why}")


def _unsupported(path: str, what: str, hint: str = "") -> EdgeError:
    return EdgeError(f"audio {path}: unsupported encoding: {what}"
                     + (f"; {hint}" if hint else "; convert it: ffmpeg -i IN -ac 1 -ar 16000 out.flac"))


@dataclass
class _Wav:
    tag: int  # format tag (EXTENSIBLE resolved to its sub-format)
    channels: int
    rate_hz: int
    bits: int
    block_align: int
    data_offset: int
    declared_bytes: Optional[int]  # None: "unknown" (streaming recorder)
    file_bytes: int
    extensible: bool


def _parse_wav(path: str, head: bytes, file_bytes: int) -> _Wav:
    """RIFF chunks up to `data`: the fmt fields and where the data lies (raises corrupt)."""
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(head):
                raise _corrupt(path, f"its fmt chunk ({size} bytes) is cut short or too small")
            tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", head[body:body + 16])
            extensible = tag == _EXTENSIBLE
            if extensible:
                if size < 40 or body + 40 > len(head):
                    raise _corrupt(path, "its WAVE_FORMAT_EXTENSIBLE fmt chunk is short")
                tag = struct.unpack("<H", head[body + 24:body + 26])[0]  # the sub-format GUID's first field
            fmt = (tag, channels, rate, bits, block_align, extensible)
        elif cid == b"data":
            if fmt is None:
                raise _corrupt(path, "its data chunk comes before any fmt chunk")
            tag, channels, rate, bits, block_align, extensible = fmt
            if channels < 1 or rate < 1 or block_align < 1:
                raise _corrupt(path, f"its fmt chunk says {channels} channel(s), {rate} Hz, "
                                     f"{block_align}-byte frames")
            declared = None if size in (0, 0xFFFFFFFF) else size
            return _Wav(tag, channels, rate, bits, block_align, body, declared, file_bytes, extensible)
        pos = body + size + (size & 1)
    raise _corrupt(path, "no data chunk in its first "
                         f"{min(len(head), _HEADER_BYTES)} bytes" if fmt else "no fmt chunk")


def _wav_encoding(wav: _Wav) -> str:
    name = _TAG_NAMES.get(wav.tag, f"format 0x{wav.tag:04X}")
    if wav.tag in (_PCM, _FLOAT):
        name += f" {wav.bits}-bit"
    return name + (" (EXTENSIBLE)" if wav.extensible else "")


def _ogg_codec(head: bytes) -> str:
    segments = head[26] if len(head) > 26 else 0
    payload = head[27 + segments:27 + segments + 16]
    for magic, name in ((b"OpusHead", "Opus"), (b"\x01vorbis", "Vorbis"), (b"Speex   ", "Speex"),
                        (b"\x7fFLAC", "FLAC"), (b"fishead", "Skeleton")):
        if payload.startswith(magic):
            return name
    return "unknown codec"


def inspect_audio_file(path: str) -> AudioFileInfo:
    """The file's container, encoding, rate, channels and lengths, from its header (WAV
    without decoding anything). Raises EdgeError (one line): missing, not an audio file
    we take, an unsupported encoding (named), or corrupt."""
    path = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise EdgeError(f"audio {path} does not exist") from None
    except OSError as exc:
        raise EdgeError(f"audio {path} cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        file_bytes = os.fstat(f.fileno()).st_size
        head = f.read(_HEADER_BYTES)
    if file_bytes == 0:
        raise _corrupt(path, "empty file (0 bytes)")
    sf, why_not = _soundfile()
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        container = "WAV"
    elif head[:4] == b"fLaC":
        container = "FLAC"
    elif head[:4] == b"OggS":
        container = "Ogg"
    elif head[:4] in (b"RF64", b"RIFX") and head[8:12] == b"WAVE":
        container = "RF64" if head[:4] == b"RF64" else "RIFX"
    else:
        kind = next((name for magic, name in _MAGIC if head.startswith(magic)), "unknown data")
        raise EdgeError(f"audio {path}: wrong format: not WAV, FLAC or Ogg (the content looks like {kind})")
    if container == "WAV":
        wav = _parse_wav(path, head, file_bytes)
        encoding = _wav_encoding(wav)
        if wav.tag not in _DECODED_TAGS:
            raise _unsupported(path, f"WAV {encoding}")
        if wav.tag == _PCM and wav.bits not in (8, 16, 24, 32) or wav.tag == _FLOAT and wav.bits not in (32, 64):
            raise _unsupported(path, f"WAV {encoding}")
        present_bytes = max(0, file_bytes - wav.data_offset)
        declared = None if wav.declared_bytes is None else wav.declared_bytes // wav.block_align
        present = present_bytes // wav.block_align
        if declared is not None:
            present = min(present, declared)
        if sf is None and wav.tag not in (_PCM, _FLOAT):
            raise _unsupported(path, f"WAV {encoding} here ({why_not})", hint="or convert it to PCM WAV")
        return AudioFileInfo(path, "WAV", encoding, wav.rate_hz, wav.channels, declared, present,
                             _decoder_name(sf))
    if sf is None:
        raise _unsupported(path, f"{container} here ({why_not})", hint="or convert it to PCM WAV")
    codec = _ogg_codec(head) if container == "Ogg" else container
    if codec == "Opus" and _libsndfile_version(sf) < _OPUS_MIN_LIBSNDFILE:
        raise _unsupported(path, f"Ogg Opus with libsndfile {sf.__libsndfile_version__}",
                           hint="Opus needs libsndfile 1.0.29 or newer (the `formats` extra's wheel has it)")
    try:
        info = sf.info(path)
    except (RuntimeError, ValueError, TypeError) as exc:
        if container == "Ogg" and codec not in ("Opus", "Vorbis", "FLAC", "unknown codec"):
            raise _unsupported(path, f"Ogg {codec}") from None
        raise _corrupt(path, f"{container} that libsndfile cannot open, cut short or damaged "
                             f"({shown(first_line(exc), 120)})") from None
    if info.samplerate < 1 or info.channels < 1:
        raise _corrupt(path, f"it says {info.channels} channel(s) at {info.samplerate} Hz")
    declared = int(info.frames) if container == "FLAC" and info.frames > 0 else None
    present = None if declared is not None else int(max(info.frames, 0))
    return AudioFileInfo(path, container, codec, int(info.samplerate), int(info.channels), declared, present,
                         _decoder_name(sf))


def _decoder_name(sf) -> str:
    return "built-in WAV reader" if sf is None else f"libsndfile {sf.__libsndfile_version__}"


class AudioFileSource:
    """An audio file (see the module docstring) as 16 kHz mono float32 chunks.

    Other rates are resampled and more channels averaged to mono; both said in `notes`.
    `frames` is the length to expect; `frames_read` counts what chunks() read, so a reader
    can tell a file that ended early (damaged past some point) from a whole one."""

    live = False

    def __init__(self, path: str, chunk_ms: int = 100):
        self.path = str(path)
        self.name = self.path
        self.chunk_ms = chunk_ms
        self.info = inspect_audio_file(self.path)
        self.rate_hz = self.info.rate_hz
        self.channels = self.info.channels
        self.frames = self.info.declared_frames if self.info.declared_frames is not None else self.info.frames
        self.frames_read = 0
        self.notes: List[str] = []
        if self.rate_hz < 8000:
            raise EdgeError(f"audio {path} is at {self.rate_hz} Hz; give 8 kHz or more")
        if self.info.container != "WAV" or "PCM" not in self.info.encoding:
            self.notes.append(f"{self.info.container} {self.info.encoding} decoded by {self.info.decoder}")
        if self.channels > 1:
            self.notes.append(f"{self.channels} channels averaged to mono")
        if self.rate_hz != SAMPLE_RATE_HZ:
            self.notes.append(f"resampled {self.rate_hz} Hz -> {SAMPLE_RATE_HZ} Hz")

    @property
    def duration_s(self) -> float:
        return self.info.duration_s

    def _blocks(self, per_chunk: int) -> Iterator[np.ndarray]:
        """(frames, channels) float32 blocks of the file until its end or its damage."""
        sf, _ = _soundfile()
        if sf is None:
            yield from _builtin_wav_blocks(self.path, per_chunk)
            return
        try:
            with sf.SoundFile(self.path) as f:
                while True:
                    block = f.read(per_chunk, dtype="float32", always_2d=True)
                    if len(block):
                        yield block
                    if len(block) < per_chunk:
                        return
        except (RuntimeError, ValueError, TypeError, OSError):
            return  # damaged past this point: ends here, as a truncated file

    def chunks(self) -> Iterator[np.ndarray]:
        """Yields 16 kHz float32 chunks of about chunk_ms each (resampled as needed)."""
        resampler = Resampler(self.rate_hz, SAMPLE_RATE_HZ)
        per_chunk = max(1, self.rate_hz * self.chunk_ms // 1000)
        self.frames_read = 0
        pending = None
        for block in self._blocks(per_chunk):
            if pending is not None:
                out = resampler.process(pending)
                if len(out):
                    yield out
            mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            # A float file may hold NaN or values far out of range (damaged or crafted): bounded here.
            pending = np.clip(np.nan_to_num(mono.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0),
                              -1.0, 1.0)
            self.frames_read += len(block)
        out = resampler.process(pending if pending is not None else np.zeros(0, np.float32), final=True)
        if len(out):
            yield out


def _builtin_wav_blocks(path: str, per_chunk: int) -> Iterator[np.ndarray]:
    """Integer PCM and float WAV without libsndfile: the data chunk read as numpy."""
    from edge.capture.audio import pcm_to_float

    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
        wav = _parse_wav(path, head, os.fstat(f.fileno()).st_size)
        f.seek(wav.data_offset)
        left = wav.declared_bytes if wav.declared_bytes is not None else wav.file_bytes - wav.data_offset
        width = wav.block_align // wav.channels
        while left > 0:
            raw = f.read(min(left, per_chunk * wav.block_align))
            raw = raw[: len(raw) - len(raw) % wav.block_align]
            if not raw:
                return
            left -= len(raw)
            if wav.tag == _FLOAT:
                x = np.frombuffer(raw, "<f4" if width == 4 else "<f8").astype(np.float32)
                yield x.reshape(-1, wav.channels)
            else:
                yield pcm_to_float(raw, width, 1).reshape(-1, wav.channels)
