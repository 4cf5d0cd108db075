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

from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from edge import (
    EdgeError,
    SessionWriter,
    SourceError,
    VoiceMeasures,
    first_line,
    inspect_audio_file,
    private_dir,
    updated,
)
from edge.apps.nightly.inbox import Recording

TRUNCATED_GAP = "audio file truncated"  # the reason edge.capture's file reader gives a cut file's gap


class RecordingRejected(Exception):
    """The recording cannot be processed (empty, corrupt, truncated, an encoding we do not
    take, ...): quarantine it (kept, never deleted) with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Processed:
    outcome: Dict  # the ledger's columns (edge.apps.nightly.db.NightlyStore.commit_done)
    summary: Dict  # the session summary (SessionResult.to_dict() + "nightly")


def _reason(exc: Exception, path: Path) -> str:
    """A decoder's one-line message without the inbox path (the quarantine keeps the name)."""
    text = first_line(exc)
    for prefix in (f"audio {path}: ", f"audio {path} is ", f"audio {path} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def check_audio(path: Path):
    """RecordingRejected with the reason when the file cannot be a whole recording: not an
    audio file we take, an encoding we do not decode (named), corrupt, empty, or shorter
    than its header declares (edge.capture.audio_file.TRUNCATION_TOLERANCE_S)."""
    try:
        info = inspect_audio_file(str(path))
    except EdgeError as exc:
        raise RecordingRejected(_reason(exc, path)) from None
    if info.truncated:
        raise RecordingRejected(info.truncated)
    if not info.frames:
        raise RecordingRejected("empty recording: the file holds no audio samples")
    return info


def process_recording(screener, recording: Recording, out_dir: Path) -> Processed:
    """Run one recording; its summary and features go to `<out_dir>/<person>/<stem>.*`.

    Raises RecordingRejected when the file cannot be a recording."""
    info = check_audio(recording.path)
    folder = private_dir(private_dir(out_dir) / recording.person)
    stem = recording.path.stem
    voice = VoiceMeasures()
    samples = [0]

    def on_audio(chunk) -> None:
        samples[0] += len(chunk)
        voice.add(chunk)

    try:
        run = screener.run(video=None if recording.video is None else str(recording.video),
                           audio=str(recording.path), fast=True, on_audio=on_audio)
    except SourceError as exc:
        raise RecordingRejected(_reason(exc, recording.path)) from None
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
    cut = [g for g in result.quality.gaps.get("audio", []) if g[2] == TRUNCATED_GAP and g[1] - g[0] > info.tolerance_s]
    if cut:  # a cut the header could not show (FLAC frames missing, data damaged half-way)
        writer.abort()
        raise RecordingRejected(f"truncated: the audio ends at {cut[0][0]:.3f} s of the {cut[0][1]:.3f} s "
                                "its header declares")
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
        "features_file": result.outputs["features_file"], "phq8_label": recording.phq8,
    }
    return Processed(outcome, summary)
