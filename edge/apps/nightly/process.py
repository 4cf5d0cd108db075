"""One recording through the Screener and the vocal measures, in bounded memory.

Audio only (the usual case on a gateway): the WAV is read once in chunks (edge.capture's
WavSource: the same decoding and resampling as `edge run`), each chunk goes to a push-mode
session (the same features and models as `edge run`; no video, so the LSTM-MoE's visual
inputs are zero and the emotion vote abstains with its reason) and to the VoiceMeasures
accumulator. With a video beside it, the Screener's source mode reads both files and the
WAV is read a second time for the vocal measures. Per-tick feature vectors are streamed to
an `.npz` beside the summary (edge.store.features_file), never kept in a list; an hour of
audio costs the memory of a minute.

PHQ-8 on audio-only recordings: the engine gives the estimate from the audio alone (the
LSTM-MoE's visual inputs zero) when every other rule passes (enough ticks, enough voice),
and says so (`input: "audio only: visual inputs zero"`); the vote abstains (no faces).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from edge.apps.nightly.inbox import Recording
from edge.capture.audio import WavSource
from edge.engine.results import Tick
from edge.errors import EdgeError
from edge.features.audio import SAMPLE_RATE_HZ
from edge.store.features_file import SessionFeatureWriter
from edge.store.files import private_dir, write_text_atomic

CHUNK_MS = 500  # WAV read size: larger chunks cost less Python per second of audio


# What a file that is not a WAV most likely is (first bytes), for the quarantine reason.
_MAGIC = ((b"ID3", "MP3"), (b"\xff\xfb", "MP3"), (b"OggS", "Ogg"), (b"fLaC", "FLAC"), (b"\x00\x00\x00", "MP4/M4A"),
          (b"RIFF", "a RIFF file that is not WAVE"), (b"{", "JSON"))


class RecordingRejected(Exception):
    """The recording cannot be processed (empty, not a PCM WAV, ...): quarantine it with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Processed:
    outcome: Dict  # the ledger's columns (edge.apps.nightly.db.NightlyStore.commit_done)
    summary: Dict  # the session summary (SessionResult.to_dict() + "nightly")


def _voice_measures():
    from edge.features.voice import VoiceMeasures

    return VoiceMeasures()


def _open_wav(path: Path) -> WavSource:
    try:
        size = os.stat(str(path), follow_symlinks=False).st_size
    except OSError as exc:
        raise RecordingRejected(f"cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise RecordingRejected("empty file (0 bytes)")
    with open(str(path), "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        kind = next((name for magic, name in _MAGIC if head.startswith(magic)), "unknown data")
        raise RecordingRejected(f"wrong format: not a WAV file (the content looks like {kind}); "
                                "the inbox takes PCM WAV recordings")
    try:
        source = WavSource(str(path), chunk_ms=CHUNK_MS)
    except EdgeError as exc:
        raise RecordingRejected(f"corrupt or not PCM: {str(exc).split('; convert')[0]}") from None
    if source.frames == 0:
        raise RecordingRejected("empty recording: the WAV holds no audio samples")
    return source


def process_recording(screener, recording: Recording, out_dir: Path) -> Processed:
    """Run one recording; its summary and features go to `<out_dir>/<person>/<stem>.*`.

    Raises RecordingRejected when the file cannot be a recording."""
    source = _open_wav(recording.path)
    folder = private_dir(private_dir(out_dir) / recording.person)
    stem = recording.path.name[:-4]
    features_path = folder / f"{stem}.features.npz"
    summary_path = folder / f"{stem}.json"
    features = SessionFeatureWriter(features_path, screener.config.models.severity.context)
    voice = _voice_measures()

    def on_tick(tick: Tick) -> None:
        features.append(tick.features)

    try:
        if recording.video is None:
            result = _run_audio_only(screener, source, voice, on_tick)
        else:
            result = _run_with_video(screener, recording, source, voice, on_tick)
    except BaseException:
        features.abort()
        raise
    samples_read = source.frames_read
    if samples_read == 0:
        features.abort()
        raise RecordingRejected("corrupt: not one whole audio sample could be read")
    features.close()
    voice_result = voice.result()
    summary = result.to_dict()
    phq8 = summary["screening"]["phq8"]
    voice_dict = voice_result.to_dict()
    summary["nightly"] = {"recording": recording.key, "person": recording.person, "captured": recording.captured,
                          "day": recording.day, "voice": voice_dict}
    summary["features_file"] = str(features_path)
    summary["summary_file"] = str(summary_path)
    import json

    write_text_atomic(summary_path, json.dumps(summary, indent=2))
    vote = summary["screening"]["emotion_vote"]
    outcome = {
        "session_id": summary["session_id"], "duration_s": float(result.duration_s),
        "speech_s": float(voice_result.seconds_speech or 0.0),
        "phq8_status": phq8["status"], "phq8_mu": phq8.get("mu"), "phq8_sigma": phq8.get("sigma"),
        "phq8_reason": phq8.get("reason"), "vote_status": vote.get("status"), "vote_level": vote.get("level"),
        "voice": voice_dict, "summary_file": str(summary_path), "features_file": str(features_path),
    }
    return Processed(outcome, summary)


def _run_audio_only(screener, source: WavSource, voice, on_tick):
    session = screener.session(video=False, audio=True, on_tick=on_tick)
    session.sources = {"video": None, "audio": source.name}
    session.notes.extend(source.notes)
    complete, reason = False, "internal error"
    try:
        for chunk in source.chunks():
            session.push_audio(chunk)
            voice.add(chunk)
        session.end_audio()
        complete, reason = True, "sources ended"
        if source.frames_read < source.frames:
            session.warnings.append(f"audio {source.name} ended after {source.frames_read} of {source.frames} "
                                    "samples (truncated or damaged file); the session used what was there")
            session.reader_gaps["audio"] = [[round(source.frames_read / float(source.rate_hz), 3),
                                             round(source.frames / float(source.rate_hz), 3),
                                             "audio file truncated"]]
    finally:
        result = session.finish(stop_reason=reason, complete=complete)
    return result


def _run_with_video(screener, recording: Recording, source: WavSource, voice, on_tick):
    run = screener.run(video=str(recording.video), audio=str(recording.path), fast=True, on_tick=on_tick)
    result = run.run()
    for chunk in source.chunks():  # a second pass for the vocal measures
        voice.add(chunk)
    return result


def audio_seconds(source: WavSource) -> float:
    return source.frames / float(source.rate_hz or SAMPLE_RATE_HZ)
