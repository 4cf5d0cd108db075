"""Device profiles (`firmware_configs/*.yaml`) read through a schema written in code.

Every key has a type and a default; an unknown key, a wrong type or an out-of-range
value is refused with one line naming the key (`video.analysis_fps`). The schema is the
same for every device (desktop, Jetson, Pi, gateway): a profile only changes values.

    profile = load_config("firmware_configs/desktop.yaml")     # a Profile
    profile.video.analysis_fps, profile.models.emotion.backend, profile.kiosk.port, ...
    profile.engine                                               # the EngineConfig part
    updated(profile, {"face.detector": "haar"})                  # a validated copy

Every section is a frozen dataclass generated from SCHEMA (lists become tuples), so a
profile, once validated, is never changed under the code that reads it: a variant is a
new object made by `updated()`, checked like the file was. `EngineConfig` holds the
sections the screening engine reads (edge.engine); `Profile` adds the applications'
sections (kiosk, nightly, mqtt, fleet), which the engine never sees.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from edge.errors import EdgeError, shown

# A leaf is (types, default, check); check(value) -> error text or None.
_Leaf = Tuple[Tuple[type, ...], Any, Any]


def _positive(value) -> Optional[str]:
    return None if value > 0 else "must be > 0"


def _fraction(value) -> Optional[str]:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


def _share(value) -> Optional[str]:
    return None if 0.0 <= value <= 1.0 else "must be in [0, 1]"


def _between(low, high):
    """A number in [low, high]; NaN and inf fail (NaN fails every comparison)."""
    def check(value) -> Optional[str]:
        return None if low <= value <= high else f"must be between {low} and {high}"
    return check


def _not_empty(value) -> Optional[str]:
    return None if value.strip() else "must not be empty"


def _port(value) -> Optional[str]:
    return None if 0 <= value <= 65535 else "must be a TCP port (0..65535; 0 picks a free one)"


def _strings(value) -> Optional[str]:
    ok = value and all(isinstance(v, str) and v.strip() for v in value)
    return None if ok else "must be a non-empty list of non-empty strings"


def _rates(value) -> Optional[str]:
    ok = value and all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in value)
    return None if ok else "must be a list of positive integers"


def _names(value) -> Optional[str]:
    ok = all(isinstance(v, str) and v.strip() and " " not in v and "/" not in v for v in value)
    return None if ok else "must be a list of host names (no spaces or slashes)"


def _one_of(*choices):
    def check(value) -> Optional[str]:
        return None if value in choices else "must be one of: " + ", ".join(str(c) for c in choices)
    return check


def _backend(value) -> Optional[str]:
    return _one_of("onnx", "tflite")(value)


def _precision(value) -> Optional[str]:
    # auto: the fastest shipped file that meets the agreement floor on this CPU (edge doctor shows it).
    return _one_of("fp32", "int8", "auto")(value)


def _providers(value) -> Optional[str]:
    # onnxruntime names, e.g. TensorrtExecutionProvider, CUDAExecutionProvider; the ones a
    # device lacks are skipped at load time (the CPU is always the last resort).
    ok = value and all(isinstance(v, str) and v.endswith("ExecutionProvider") for v in value)
    return None if ok else "must be a non-empty list of onnxruntime provider names (...ExecutionProvider)"


def release_key_problem(value) -> Optional[str]:
    # "shipped", "none", or 32 bytes in base64 (an Ed25519 public key; edge/models/release.py)
    import base64
    import binascii

    if value in ("shipped", "none"):
        return None
    try:
        raw = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    return None if len(raw) == 32 else "must be 'shipped', 'none' or an Ed25519 public key in base64 (44 characters)"


MAX_PROFILE_BYTES = 256 * 1024  # the shipped profiles are about 3 KB

_INT = (int,)
_NUM = (int, float)
_STR = (str,)
_BOOL = (bool,)
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))
_LIST = (list,)

SCHEMA: Dict[str, Union[dict, _Leaf]] = {
    "profile": (_STR, "desktop", _not_empty),  # desktop | jetson_nano | raspberry_pi | wearable_gateway
    "threads": (_INT, 1, _between(1, 64)),  # inference threads per model
    "video": {
        # Default source when the command line names none: "camera:0", "gst:<pipeline>",
        # "picamera2", a file path, or null (no video).
        "source": (_OPT_STR, "camera:0", None),
        "width": (_INT, 640, _between(16, 7680)),
        "height": (_INT, 480, _between(16, 4320)),
        "fps": (_NUM, 30, _between(0.1, 240)),
        "analysis_fps": (_NUM, 10, _between(0.1, 240)),  # frames per second that reach the face model
        "queue_frames": (_INT, 4, _positive),  # bounded queue; the oldest frame is dropped
        # Largest image or video frame decoded (width x height), checked from the file's header
        # before decoding: a 54 KB JPEG claiming 30000x30000 took 5.2 GB. 50 Mpx is 150 MB as BGR.
        "max_pixels": (_INT, 50_000_000, _between(16 * 16, 250_000_000)),
    },
    "audio": {
        "source": (_OPT_STR, "mic", None),  # "mic", "mic:<index>", a WAV path, or null (no audio)
        "device_rates_hz": (_LIST, [16000, 48000, 44100], _rates),  # tried in order on a microphone
        "chunk_ms": (_INT, 100, _between(10, 1000)),
        "queue_seconds": (_NUM, 30, _between(1, 3600)),  # overflow beyond this is counted and reported
    },
    "face": {
        # blazeface (DNN, TFLite, ~2 ms) or haar (OpenCV cascade, ~28 ms at downscale 0.5); see
        # firmware_configs/README.md. The names are edge.features.detectors.FACE_DETECTORS.
        "detector": (_STR, "blazeface", _one_of("blazeface", "haar")),
        "detect_every": (_INT, 5, _positive),  # analysed frames between detections (tracking between)
        "downscale": (_NUM, 0.5, _fraction),  # Haar runs on a frame scaled by this (BlazeFace: always 128x128)
        "min_size": (_INT, 60, _positive),  # smallest face side in full-frame pixels
        "track_min_score": (_NUM, 0.6, _share),  # template-match score below which the face is lost
    },
    "models": {
        "emotion": {
            "name": (_STR, "mini_xception", None),
            "backend": (_STR, "tflite", _backend),
            "precision": (_STR, "int8", _precision),
            "providers": (_LIST, ["CPUExecutionProvider"], _providers),  # ONNX backend only
        },
        "severity": {
            "enabled": (_BOOL, True, None),
            "name": (_STR, "lstm_moe", None),
            "backend": (_STR, "tflite", _backend),
            "precision": (_STR, "fp32", _precision),
            "context": (_NUM, 0.0, _between(0.0, 1.0)),  # MoE context flag z (0: human-led interview)
            "providers": (_LIST, ["CPUExecutionProvider"], _providers),  # ONNX backend only
        },
        # Signed model releases (edge/models/release.py): the Ed25519 public key (base64) the models
        # folder must be signed with; "shipped": the project's key (the shipped models verify as
        # they are); "none": no signature check (development only; summaries then say "unsigned").
        "release_key": (_STR, "shipped", release_key_problem),
        # Where `edge update` keeps model sets (releases/, current, previous); the services load
        # <store>/current (EDGE_MODELS_DIR in deploy/systemd) once the installer has seeded it.
        "store": (_STR, "/var/lib/edge/models", _not_empty),
    },
    "screen": {
        "vote_frames": (_INT, 1200, _between(3, 100000)),  # the paper's first 1200 analysed face frames
        "min_vote_frames": (_INT, 30, _between(1, 100000)),  # fewer face frames: the vote abstains
        "min_face_share": (_NUM, 0.3, _share),  # share of analysed frames with a face
        "min_voiced_share": (_NUM, 0.05, _share),  # share of audio frames with voice
        "min_ticks": (_INT, 30, _between(1, 864000)),  # PHQ-8 estimate needs this many 100 ms ticks
    },
    "output": {
        "dir": (_STR, "out", _not_empty),  # summary JSON (and tick JSON lines) go here
        "tick_jsonl": (_BOOL, False, None),
        "database": (_OPT_STR, "out/sessions.sqlite", None),  # null: no database
        "store_media": (_BOOL, False, None),  # keep face crops and audio in the database
    },
    "telemetry": {
        "http_port": (_OPT_INT, None, _port),  # /metrics on 127.0.0.1; null: off; 0: any port
        "http_host": (_STR, "127.0.0.1", _not_empty),  # anything but loopback needs `token`
        "token": (_OPT_STR, None, None),  # required by /metrics requests when http_host is not loopback
        # Host names (besides its addresses) a request's Host header may give, e.g. ["gw1.clinic.lan"];
        # any other Host is refused (DNS rebinding).
        "server_names": (_LIST, [], _names),
    },
    # `edge kiosk`: the local screening page (edge/apps/kiosk).
    "kiosk": {
        "host": (_STR, "127.0.0.1", _not_empty),  # anything but loopback needs `token`
        "port": (_INT, 8080, _port),
        "token": (_OPT_STR, None, None),  # required by every request when host is not loopback
        "server_names": (_LIST, [], _names),  # Host names the page may be opened by (see telemetry)
        "capture_seconds": (_NUM, 40, _between(5, 600)),  # one visitor's capture
        "prompts": (_LIST, ["Tell me about your day.", "What did you enjoy doing this week?",
                            "How have you been sleeping lately?", "What are you looking forward to?"], _strings),
        "result_seconds": (_NUM, 30, _between(3, 600)),  # the result screen resets after this
        "walk_away_seconds": (_NUM, 8, _between(1, 120)),  # no face this long while capturing: abstain, reset
        "min_brightness": (_NUM, 40, _between(0, 255)),  # mean grey level below this: "too dark"
        "preview": (_BOOL, True, None),  # mirrored, downscaled live preview (never stored)
        "preview_fps": (_NUM, 10, _between(1, 30)),
        "preview_width": (_INT, 320, _between(64, 1280)),
        # Publish each saved session's summary (no media) to the care team over MQTT (the `mqtt`
        # section's broker and outbox; topic <prefix>/<site_id>/session).
        "report": (_BOOL, False, None),
        "site_id": (_STR, "kiosk", _not_empty),  # the kiosk's opaque id in topics and on the dashboard
        # The PHQ-8 questionnaire on the touch page while the camera and microphone are read
        # (edge.rules.phq8 scores it); none: the sensor readings only.
        "questionnaire": (_STR, "phq8", _one_of("phq8", "none")),
        "language": (_STR, "en", _one_of("en")),  # the page's string catalogue (edge/apps/kiosk/strings.py)
        # Always on the result screen: whom to call when feeling unsafe (a clinic sets its own line).
        "help_line": (_STR, "your local emergency number", _not_empty),
        "show_phq8_estimate": (_BOOL, False, None),  # show the model's PHQ-8 estimate (always marked) to visitors
        "research_opt_in": (_BOOL, True, None),  # offer the second opt-in: keep features + answers as a label
        "answer_timeout_seconds": (_NUM, 90, _between(10, 900)),  # no answer this long: the visitor has gone
        # Loopback clients (the kiosk's own browser) need no token; false behind a local reverse
        # proxy that does not send X-Forwarded-For (requests that carry it always need the token).
        "loopback_without_token": (_BOOL, True, None),
    },
    # `edge nightly`: the gateway's batch job over the day's recordings (edge/apps/nightly).
    "nightly": {
        "gateway_id": (_STR, "gateway", _not_empty),  # opaque id in MQTT topics and reports
        "inbox": (_STR, "inbox", _not_empty),  # recordings arrive here (see README: naming)
        "quarantine": (_STR, "quarantine", _not_empty),  # unreadable recordings go here with their reason
        "reports": (_STR, "reports", _not_empty),  # PNG + HTML per person and night
        "stable_seconds": (_NUM, 30, _between(0, 86400)),  # a file must keep its size this long...
        "done_marker": (_OPT_STR, None, None),  # ...or have a sidecar with this suffix (e.g. ".done")
        "baseline": (_STR, "first_days", _one_of("first_days", "rolling")),
        "baseline_days": (_INT, 14, _between(2, 365)),
        "flag_margin": (_NUM, 3.0, _between(0, 24)),  # PHQ-8 points above the baseline
        "flag_days": (_INT, 3, _between(1, 60)),  # consecutive days beyond the margin to flag
    },
    # Fleet reporting over MQTT (paho-mqtt), used by `edge nightly`.
    "mqtt": {
        "enabled": (_BOOL, False, None),
        "host": (_STR, "127.0.0.1", _not_empty),
        "port": (_INT, 1883, _between(1, 65535)),
        "topic_prefix": (_STR, "edge", _not_empty),  # <prefix>/<gateway>/<person>/nightly
        "tls": (_BOOL, False, None),
        "ca_file": (_OPT_STR, None, None),
        "username": (_OPT_STR, None, None),
        "password_file": (_OPT_STR, None, None),  # a file holding the password (never in the profile)
        "queue_dir": (_STR, "out/mqtt-queue", _not_empty),  # messages wait here while the broker is away
        "timeout_s": (_NUM, 10, _between(0.1, 300)),
    },
    # `edge fleet serve`: the care team's service (edge/apps/fleet) on the `mqtt` section's broker.
    "fleet": {
        "database": (_STR, "out/fleet.sqlite", _not_empty),  # a file (SQLite) or postgresql://... (a URL)
        "client_id": (_STR, "edge-fleet-1", _not_empty),  # MQTT client id: its persistent session at the broker
        "share_group": (_OPT_STR, None, None),  # MQTT 5 shared subscription ($share/<group>/...): several consumers
        "session_expiry_s": (_INT, 604800, _between(60, 4294967295)),  # messages wait this long while it is down
        "max_payload_bytes": (_INT, 65536, _between(1024, 16777216)),  # larger: dead letter
        "batch_messages": (_INT, 200, _between(1, 10000)),  # messages stored per transaction (acked after commit)
        "host": (_STR, "127.0.0.1", _not_empty),  # the dashboard (a TLS reverse proxy in front for others)
        "port": (_INT, 8090, _port),
        "server_names": (_LIST, [], _names),  # Host names the dashboard may be reached by (see telemetry)
        "silent_hours": (_NUM, 36, _between(1, 8760)),  # a gateway silent this long is an alert
        "login_hours": (_NUM, 12, _between(0.1, 720)),  # a log-in lasts this long
        "people_per_page": (_INT, 100, _between(10, 5000)),
    },
}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost (a server there is reachable from this machine only)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _type_name(types: Tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
             list: "a list", type(None): "null"}
    if types == _NUM:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _validate(schema: dict, data: Any, where: str, origin: str, cls: type):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        what = f"key '{where}'" if where else "the file"
        raise EdgeError(f"{origin}: {what} must be a mapping of keys, got {type(data).__name__}")
    for key in data:
        if key not in schema:
            full = f"{where}.{key}" if where else str(key)
            known = ", ".join(sorted(schema))
            if not full.isprintable() or len(full) > 80:  # one short line, whatever the key (fuzzing)
                full = full.encode("unicode_escape").decode("ascii")
                full = full if len(full) <= 80 else full[:77] + "..."
            raise EdgeError(f"{origin}: unknown key '{full}' (known here: {known})")
    values = {}
    for key, spec in schema.items():
        full = f"{where}.{key}" if where else key
        if isinstance(spec, dict):
            values[key] = _validate(spec, data.get(key), full, origin, _SECTION_CLASSES[full])
            continue
        values[key] = _leaf_value(spec, data.get(key, spec[1]), full, origin)
    return cls(**values)


def _leaf_value(spec: _Leaf, value: Any, full: str, origin: str) -> Any:
    """One leaf checked against its spec; lists come back as tuples (frozen)."""
    types, _default, check = spec
    # YAML true/false are bools, which are ints in Python: refuse them where numbers go.
    wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
    if wrong:
        raise EdgeError(f"{origin}: key '{full}' must be {_type_name(types)}, got {shown(value)}")
    if check is not None and value is not None:
        problem = check(value)
        if problem:
            raise EdgeError(f"{origin}: key '{full}' {problem}, got {shown(value)}")
    for text in (value if isinstance(value, list) else [value]):
        if isinstance(text, str) and not _encodable(text):
            raise EdgeError(f"{origin}: key '{full}' must be valid text (it holds a lone surrogate), "
                            f"got {shown(value)}")
    return tuple(value) if isinstance(value, list) else value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def parse_config(data: Any, origin: str = "config") -> Profile:
    """Validate a parsed YAML/JSON mapping against SCHEMA (defaults filled in)."""
    config = _validate(SCHEMA, data, "", origin, Profile)
    _check_across_keys(config, origin)
    return config


def _check_across_keys(config, origin: str) -> None:
    """The rules that tie keys together (a single key's rules live in SCHEMA)."""
    tel = config.telemetry
    if tel.http_port is not None and not is_loopback(tel.http_host) and not tel.token:
        raise EdgeError(f"{origin}: key 'telemetry.token' must be set when telemetry.http_host is not loopback "
                        f"({shown(tel.http_host)}): /metrics is then reachable from the network")
    screen = config.screen
    if not 1 <= screen.min_vote_frames <= screen.vote_frames:
        raise EdgeError(f"{origin}: key 'screen.min_vote_frames' must be between 1 and screen.vote_frames "
                        f"({screen.vote_frames}), got {screen.min_vote_frames}")


def load_config(path: Optional[str]) -> Profile:
    """Read and validate a profile; None gives the defaults. One-line EdgeError on problems."""
    if path is None:
        return parse_config({}, "defaults")
    data = read_profile(path)
    return parse_config(data, str(path))


def read_profile(path: str) -> Any:
    """A profile file's YAML data, read in bounded memory (edge.safe_load): at most
    MAX_PROFILE_BYTES, shallow, few aliases. One-line EdgeError for a missing, unreadable,
    oversized, non-YAML or empty file (`edge run` and `edge config check` share it)."""
    from edge.safe_load import load_yaml, read_text_file

    if not Path(path).exists():
        raise EdgeError(f"config {path} does not exist; see firmware_configs/ for the profiles")
    text = read_text_file(path, "config", MAX_PROFILE_BYTES)
    data = load_yaml(text, f"config {path}")
    if data is None:  # an empty file would silently run on the defaults: say so instead
        raise EdgeError(f"config {path} is empty (or only comments); copy a profile from firmware_configs/ "
                        "or omit --config")
    return data


def updated(config, changes: Dict[str, Any], origin: str = "updated"):
    """A copy of `config` (a Profile, an EngineConfig or a section of either) with
    `changes` applied, keyed by dotted path as in the profile ("face.detector"); each
    value is checked like a profile's. The original is never changed."""
    prefix = _SECTION_PATHS.get(type(config), "")
    for key, value in changes.items():
        config = _replace_path(config, key.split("."), value, prefix, key, origin)
    if isinstance(config, (Profile, EngineConfig)):
        _check_across_keys(config, origin)
    return config


def _replace_path(node, parts: List[str], value: Any, prefix: str, key: str, origin: str):
    name = parts[0]
    full = f"{prefix}.{name}" if prefix else name
    if not dataclasses.is_dataclass(node) or name not in {f.name for f in dataclasses.fields(node)}:
        raise EdgeError(f"{origin}: unknown key '{key}'")
    if len(parts) > 1:
        return dataclasses.replace(node, **{name: _replace_path(getattr(node, name), parts[1:], value, full, key,
                                                                origin)})
    spec = _spec_at(full)
    if isinstance(spec, dict):
        raise EdgeError(f"{origin}: key '{key}' is a section; change its keys one by one")
    return dataclasses.replace(node, **{name: _leaf_value(spec, value, full, origin)})


def _spec_at(full: str):
    spec: Any = SCHEMA
    for part in full.split("."):
        spec = spec[part]
    return spec


# ----- the typed sections, generated from SCHEMA ---------------------------------------
def as_dict(config) -> Dict[str, Any]:
    """A profile or section as plain data (tuples back to lists), as YAML would give it."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return list(value) if isinstance(value, tuple) else value
    return plain(config)


def _hint(types: Tuple[type, ...]):
    hints = [Tuple[Any, ...] if t is list else t for t in types if t is not type(None)]
    hint = hints[0] if len(hints) == 1 else Union[tuple(hints)]
    return Optional[hint] if type(None) in types else hint


_SECTION_CLASSES: Dict[str, type] = {}  # "models.emotion" -> its class
_SECTION_PATHS: Dict[type, str] = {}


def _section_class(schema: dict, where: str) -> type:
    """The frozen dataclass of the section at `where` (and of its subsections)."""
    fields = []
    for key, spec in schema.items():
        full = f"{where}.{key}"
        fields.append((key, _section_class(spec, full) if isinstance(spec, dict) else _hint(spec[0])))
    name = "".join(p.title() for p in where.replace(".", "_").split("_")) + "Config"
    cls = dataclasses.make_dataclass(name, fields, frozen=True, namespace={"as_dict": as_dict})
    cls.__module__ = __name__
    cls.__doc__ = f"The profile's `{where}` section (frozen; keys, defaults and checks: edge.config.SCHEMA)."
    _SECTION_CLASSES[where] = cls
    _SECTION_PATHS[cls] = where
    return cls


def _top_fields(keys: Tuple[str, ...]) -> List[Tuple[str, Any]]:
    return [(key, _section_class(SCHEMA[key], key) if isinstance(SCHEMA[key], dict) else _hint(SCHEMA[key][0]))
            for key in keys]


# The engine's part of a profile (what a Screener reads) and the applications' sections.
ENGINE_KEYS = ("profile", "threads", "video", "audio", "face", "models", "screen", "output", "telemetry")
APP_KEYS = ("kiosk", "nightly", "mqtt", "fleet")
assert set(ENGINE_KEYS + APP_KEYS) == set(SCHEMA)

_engine_fields = _top_fields(ENGINE_KEYS)
_EngineConfig = dataclasses.make_dataclass("EngineConfig", _engine_fields, frozen=True,
                                           namespace={"as_dict": as_dict})
_Profile = dataclasses.make_dataclass("Profile", _engine_fields + _top_fields(APP_KEYS), frozen=True,
                                      namespace={"as_dict": as_dict})


class EngineConfig(_EngineConfig):
    """What the screening engine reads from a profile (frozen): `load_config(path).engine`."""


class Profile(_Profile):
    """A whole validated device profile (frozen): the engine's sections and the apps'."""

    @property
    def engine(self) -> EngineConfig:
        """The engine's part (what ScreenerOptions takes); the apps' sections stay here."""
        return EngineConfig(**{key: getattr(self, key) for key in ENGINE_KEYS})
