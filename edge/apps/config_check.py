"""`edge config check FILE...`: validate device profiles without running anything.

For each file: the schema of `edge/config.py` (every schema error, not only the first),
then what the schema alone cannot see: the model files the profile names exist in the
manifests for that backend and precision (and on disk, with their sha256), the source
strings have a known form, a kiosk served beyond loopback has a token, and the files the
profile references exist and can be read here (the MQTT CA and password files, as `edge
nightly` checks them at start; a source that is a file). `--template` leaves those files
out: a profile checked away from its device (the shipped firmware_configs/ on a build host).

Prints `FILE: ok`, or one line per error (`FILE: key 'video.fps' must be ...`); returns 0
when every file passed, 2 otherwise. Opens no camera, microphone or model runtime, so it
runs on the build host as well as on the device.
"""
from __future__ import annotations

import copy
import os
import re
from typing import Any, List, Optional

from edge.config import parse_config, read_profile
from edge.errors import EdgeError, first_line
from edge.manifest import load_manifest

# The face detector that needs a model file of its own (edge.models.blazeface.MODEL_NAME;
# not imported here, so that the check needs neither numpy nor OpenCV).
_DETECTOR_MODELS = {"blazeface": ("blazeface", "tflite", "fp32")}
_KEY_IN_ERROR = re.compile(r"(?:unknown )?key '([^']+)'")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_MAX_SCHEMA_ERRORS = 50


def _drop_key(data: Any, dotted: str) -> bool:
    """Remove `a.b.c` from nested mappings; False when there is nothing to remove."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return False
        node = node[part]
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def schema_errors(data: Any, origin: str):
    """(config or None, every schema error as one line). After each error the offending key
    is dropped (its default applies) and the rest is validated again."""
    data = copy.deepcopy(data)
    errors: List[str] = []
    while len(errors) < _MAX_SCHEMA_ERRORS:
        try:
            config = parse_config(data, origin)
            return (None if errors else config), errors
        except EdgeError as exc:
            message = str(exc)
            if message in errors:
                break
            errors.append(message)
            match = _KEY_IN_ERROR.search(message[len(origin):])
            if match is None or not _drop_key(data, match.group(1)):
                break
    return None, errors


def _model_errors(config, models_dir: Optional[str], origin: str) -> List[str]:
    wanted = [("models.emotion", config.models.emotion)]
    if config.models.severity.enabled:
        wanted.append(("models.severity", config.models.severity))
    errors = []
    for where, section in wanted:
        try:
            manifest = load_manifest(section.name, models_dir)
        except EdgeError as exc:
            errors.append(f"{origin}: key '{where}.name': {exc}")
            continue
        if section.precision == "auto":
            # auto picks among the files of this backend on the device: at least one must exist.
            entries = [e for e in manifest.files if e["format"] == section.backend]
            if not entries:
                errors.append(f"{origin}: key '{where}.backend': model {section.name} has no {section.backend} "
                              "file for precision auto")
        else:
            try:
                entries = [manifest.find_file(section.backend, section.precision)]
            except EdgeError as exc:
                errors.append(f"{origin}: key '{where}': {exc}")
                continue
        for entry in entries:
            try:
                manifest.verified_path(entry)
            except EdgeError as exc:
                errors.append(f"{origin}: key '{where}': {exc}")
    detector = _DETECTOR_MODELS.get(config.face.detector)
    if detector is not None:
        name, backend, precision = detector
        try:
            manifest = load_manifest(name, models_dir)
            manifest.verified_path(manifest.find_file(backend, precision))
        except EdgeError as exc:
            errors.append(f"{origin}: key 'face.detector': {exc}")
    return errors


def _source_errors(config, origin: str) -> List[str]:
    errors = []
    video = config.video.source
    if video is not None:
        if video.startswith("gst:"):
            last = video[len("gst:"):].split("!")[-1].split()
            if not last or last[0] != "appsink":
                errors.append(f"{origin}: key 'video.source' GStreamer pipeline must end in appsink, got {video!r}")
        elif video.startswith("camera:") and not video[len("camera:"):].isdigit():
            errors.append(f"{origin}: key 'video.source' camera must be camera:N (a V4L2 index), got {video!r}")
        elif not video.strip():
            errors.append(f"{origin}: key 'video.source' must not be empty (null: no video)")
    audio = config.audio.source
    if audio is not None:
        if audio.startswith("mic:") and not audio[len("mic:"):].isdigit():
            errors.append(f"{origin}: key 'audio.source' microphone must be mic or mic:N, got {audio!r}")
        elif not audio.strip():
            errors.append(f"{origin}: key 'audio.source' must not be empty (null: no audio)")
    return errors


MIN_TOKEN_CHARS = 16  # a kiosk token is a password on the clinic's LAN


def _kiosk_errors(config, origin: str) -> List[str]:
    if config.kiosk.host not in _LOOPBACK and not config.kiosk.token:
        return [f"{origin}: key 'kiosk.token' is required when kiosk.host is not loopback "
                f"(got host {config.kiosk.host!r})"]
    if config.kiosk.token is not None and len(config.kiosk.token) < MIN_TOKEN_CHARS:
        return [f"{origin}: key 'kiosk.token' is too short ({len(config.kiosk.token)} characters, at least "
                f"{MIN_TOKEN_CHARS}); make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"]
    return []


def _mqtt_errors(config, origin: str, files: bool = True) -> List[str]:
    """The MQTT set-up as `edge nightly` checks it at start (edge.apps.nightly.broker_check):
    a TLS mismatch, and (files=True) the CA and password files it names, read here."""
    from edge.apps.nightly.broker_check import broker_setup_errors

    mqtt = config.mqtt
    if files:
        return [f"{origin}: {line}" for line in broker_setup_errors(mqtt)]
    if mqtt.ca_file and not mqtt.tls:
        return [f"{origin}: key 'mqtt.ca_file' is set but mqtt.tls is false"]
    return []


def _file_source_errors(config, origin: str) -> List[str]:
    """A video or audio source that is a file path must exist (cameras, mics, pipelines and
    URLs are opened only by `edge run`)."""
    errors = []
    for key, value, devices in (("video.source", config.video.source, ("camera:", "gst:", "picamera")),
                                ("audio.source", config.audio.source, ("mic",))):
        if not value or value.startswith(devices) or "://" in value:
            continue
        if not os.path.isfile(value):
            errors.append(f"{origin}: key '{key}': file {value} does not exist")
    return errors


def check_file(path: str, models_dir: Optional[str] = None, files: bool = True) -> List[str]:
    """Every problem of one profile, each as one line starting with the path; [] when fine.
    files=False (`--template`): a profile checked away from its device; the files it
    references (MQTT CA and password, source files) are not looked for."""
    try:  # the same reader as `edge run`: the same verdict on the same file
        data = read_profile(path)
    except EdgeError as exc:
        message = first_line(exc)
        prefix = f"config {path} "
        if message.startswith(prefix):  # "config F is not valid YAML: ..." -> "F: not valid YAML: ..."
            message = message[len(prefix):]
            message = message[3:] if message.startswith("is ") else message
        return [f"{path}: {message}"]
    config, errors = schema_errors(data, str(path))
    if config is None:
        return errors
    return (_model_errors(config, models_dir, str(path)) + _source_errors(config, str(path))
            + _kiosk_errors(config, str(path)) + _mqtt_errors(config, str(path), files)
            + (_file_source_errors(config, str(path)) if files else []))


def run(args) -> int:
    """args.files: profile paths; args.models_dir: models folder or None. 0 if all pass, else 2."""
    failed = False
    for path in args.files:
        errors = check_file(path, getattr(args, "models_dir", None), not getattr(args, "template", False))
        if errors:
            failed = True
            for line in errors:
                print(line.replace("\n", " "))
        else:
            print(f"{path}: ok")
    return 2 if failed else 0
