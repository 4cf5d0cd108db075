"""One recording through the Screener and the vocal measures, in bounded memory.

    run = screener.run(video=None, audio=recording, fast=True, on_audio=voice.add)

The recording is read once, in source mode (the same decoding, resampling, features and
models as `edge run`): each 16 kHz chunk goes to the session and, through the run's
audio tap, to the VoiceMeasures accumulator. Audio only (the usual case on a gateway):
no video, so the LSTM-MoE's visual inputs are zero and the emotion vote abstains with
its reason; with a video beside it, both files are read together. The session's
outputs go through the engine's SessionWriter (summary JSON and a per-tick features
`.npz`, streamed, never kept in a list; an hour of audio costs the memory of a minute),
named after the recording in the person's folder; the session row goes into the
nightly ledger's transaction (edge.apps.nightly.db), not through the writer.

PHQ-8 on audio-only recordings: the engine gives the estimate from the audio alone (the
LSTM-MoE's visual inputs zero) when every other rule passes (enough ticks, enough voice),
and says so (`input: "audio only: visual inputs zero"`); the vote abstains (no faces).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from edge import SessionWriter, SourceError, VoiceMeasures, private_dir, updated
from edge.apps.nightly.inbox import Recording

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


def _check_wav(path: Path) -> None:
    """RecordingRejected with the reason when the file cannot be a WAV recording."""
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


def process_recording(screener, recording: Recording, out_dir: Path) -> Processed:
    """Run one recording; its summary and features go to `<out_dir>/<person>/<stem>.*`.

    Raises RecordingRejected when the file cannot be a recording."""
    _check_wav(recording.path)
    probe = screener.probe(audio=str(recording.path)).audio
    if not probe.ok:
        raise RecordingRejected(f"corrupt or not PCM: {probe.reason.split('; convert')[0]}")
    if not probe.length_s:
        raise RecordingRejected("empty recording: the WAV holds no audio samples")
    folder = private_dir(private_dir(out_dir) / recording.person)
    stem = recording.path.name[:-4]
    voice = VoiceMeasures()
    samples = [0]

    def on_audio(chunk) -> None:
        samples[0] += len(chunk)
        voice.add(chunk)

    try:
        run = screener.run(video=None if recording.video is None else str(recording.video),
                           audio=str(recording.path), fast=True, on_audio=on_audio)
    except SourceError as exc:
        raise RecordingRejected(f"corrupt or not PCM: {str(exc).split('; convert')[0]}") from None
    config = screener.config
    out = updated(config.output, {"dir": str(folder), "database": None, "tick_jsonl": False})
    writer = SessionWriter(out, run.session_id, str(folder / f"{stem}.features.npz"), config.models.severity.context,
                           summary_path=str(folder / f"{stem}.json"))
    try:
        for tick in run:
            writer.tick(tick)
    except BaseException:
        writer.abort()
        raise
    result = run.result
    if samples[0] == 0:
        writer.abort()
        raise RecordingRejected("corrupt: not one whole audio sample could be read")
    voice_result = voice.result()
    voice_dict = voice_result.to_dict()
    nightly = {"recording": recording.key, "person": recording.person, "captured": recording.captured,
               "day": recording.day, "voice": voice_dict}
    lost = writer.close(result, extra={"nightly": nightly})
    if lost:
        raise OSError(f"results of {recording.key} NOT saved: {', '.join(lost)} lost ({'; '.join(result.warnings)})")
    summary = result.to_dict()
    summary["nightly"] = nightly
    phq8, vote = result.phq8, result.vote
    outcome = {
        "session_id": result.session_id, "duration_s": float(result.duration_s),
        "speech_s": float(voice_result.seconds_speech or 0.0),
        "phq8_status": phq8.status, "phq8_mu": phq8.mu, "phq8_sigma": phq8.sigma,
        "phq8_reason": phq8.reason, "vote_status": vote.status, "vote_level": vote.level,
        "voice": voice_dict, "summary_file": result.outputs["summary_file"],
        "features_file": result.outputs["features_file"],
    }
    return Processed(outcome, summary)
