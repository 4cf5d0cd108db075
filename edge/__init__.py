"""Edge runtime of the depression-screening package (device side: no torch).

A screening aid, not a diagnosis.
"""
import os

__version__ = "0.1.0"

# OpenCV's FFmpeg backend reads this once, when cv2 is first imported: without it a
# truncated MP4 prints `moov atom not found` before our own one-line error. setdefault
# keeps a user's own setting (e.g. to debug a stream).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# OpenCV's own pixel limit (read once, at import; its default is 2^30 px, 3 GB as BGR): a
# second guard behind the header check (edge/capture/image_file.py), at the largest
# video.max_pixels a profile may set.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "250000000")

SCREENING_DISCLAIMER = "Screening aid only, not a diagnosis."
DEMO_WEIGHTS_NOTICE = "demo weights, not for screening"

# The public API, imported on first use so that `import edge` stays light for the CLI's
# quick commands (PEP 562). Applications (edge/apps: run, kiosk, nightly) use these names
# only, never a module behind them (tests/test_public_api.py checks it).
_PUBLIC = {
    # the engine: models loaded once, sessions, typed results, where results go
    "Screener": "edge.engine", "ScreenerOptions": "edge.engine", "Session": "edge.engine",
    "SourceRun": "edge.engine", "SourceProbe": "edge.engine", "StreamProbe": "edge.engine",
    "Tick": "edge.engine", "SessionResult": "edge.engine", "VoteResult": "edge.engine",
    "PHQ8Result": "edge.engine", "DataQuality": "edge.engine", "ModelInfo": "edge.engine",
    "RunningEstimate": "edge.engine", "SessionMedia": "edge.engine", "StopKind": "edge.engine",
    "StopReason": "edge.engine", "SessionWriter": "edge.engine", "check_outputs": "edge.engine",
    "release_memory": "edge.engine", "probe_sources": "edge.engine",
    # profiles (frozen, typed) and errors
    "load_config": "edge.config", "Profile": "edge.config", "EngineConfig": "edge.config",
    "updated": "edge.config", "is_loopback": "edge.config",
    "EdgeError": "edge.errors", "SourceError": "edge.errors", "first_line": "edge.errors",
    # vocal measures over a session's audio (the nightly job's audio tap)
    "VoiceMeasures": "edge.features.voice",
    # audio files as recorders write them (WAV of every kind, FLAC, Ogg): header, length, truncation
    "inspect_audio_file": "edge.capture.audio_file", "AudioFileInfo": "edge.capture.audio_file",
    # JSON that devices hand us (sidecars), read within size and depth caps
    "load_json_file": "edge.safe_load",
    # owner-only folders and files written whole (temporary + rename + fsync)
    "private_dir": "edge.store.files", "write_atomic": "edge.store.files", "write_text_atomic": "edge.store.files",
    "FILE_MODE": "edge.store.files",
    # a small HTTP server on the standard library: token and Host checked, bounded (the kiosk's page)
    "BoundedHTTPServer": "edge.http_server", "GuardedHandler": "edge.http_server", "HttpLimits": "edge.http_server",
    # summaries (never media) to the care team over MQTT: an on-disk outbox published in order (edge.reporting)
    "BrokerSettings": "edge.reporting.mqtt", "broker_settings": "edge.reporting.mqtt",
    "parse_mqtt_url": "edge.reporting.mqtt", "Outbox": "edge.reporting.mqtt", "DrainResult": "edge.reporting.mqtt",
    "publish_outbox": "edge.reporting.mqtt", "mqtt_client": "edge.reporting.mqtt",
    "nightly_topic": "edge.reporting.mqtt", "state_topic": "edge.reporting.mqtt",
    "session_topic": "edge.reporting.mqtt", "check_topic_part": "edge.reporting.mqtt",
    "schema_path": "edge.reporting.mqtt", "SessionReporter": "edge.reporting.sessions",
    "session_payload": "edge.reporting.sessions",
    # signed model releases: verified before loading; installed, self-tested, switched and rolled back
    "ModelStore": "edge.updates", "UpdateResult": "edge.updates", "Release": "edge.models.release",
    "verify_release": "edge.models.release",
    # the sessions table (SQLite, versioned) that every application's database holds
    "ResultStore": "edge.store", "summary_row": "edge.store.results",
}
__all__ = ["DEMO_WEIGHTS_NOTICE", "SCREENING_DISCLAIMER", "__version__"] + sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
