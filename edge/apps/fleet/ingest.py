"""What a received message is: its topic, its size, its JSON, its schema, who may have sent it.

`Checker.check(topic, payload)` gives a Message (edge.apps.fleet.store) or the one-line reason
it goes to the dead-letter table instead. The rules:
- topics: `<prefix>/<gateway>/<person>/nightly`, `<prefix>/<gateway>/state`,
  `<prefix>/<site>/session`; anything else is refused;
- at most `fleet.max_payload_bytes`, UTF-8 JSON without NaN or Infinity, an object;
- valid against its shipped JSON Schema (edge.schema_path; jsonschema, Draft 2020-12);
- the ids in the payload are the topic's: a gateway publishes only under its own id, its
  message ids start with that id (so no one can block another gateway's messages by sending
  their ids first), a nightly's person is the topic's person. With per-gateway broker
  credentials and an ACL (`pattern write edge/%u/#`, deploy/mosquitto/) a gateway cannot write
  under another's id at all; this check holds without them too.
"""
from __future__ import annotations

import json
import re
from typing import Dict, Optional, Tuple, Union

from edge import schema_path
from edge.apps.fleet.store import Message

_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
KINDS = {"nightly": "nightly_payload", "state": "gateway_state", "session": "kiosk_session"}


def subscriptions(prefix: str, share_group: Optional[str]) -> Tuple[str, ...]:
    """The topic filters the service subscribes to (shared when a group is given)."""
    filters = (f"{prefix}/+/+/nightly", f"{prefix}/+/state", f"{prefix}/+/session")
    if share_group:
        return tuple(f"$share/{share_group}/{f}" for f in filters)
    return filters


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


class Checker:
    """Validators compiled once; see the module docstring."""

    def __init__(self, prefix: str, max_payload_bytes: int):
        import fastjsonschema
        import jsonschema

        self.prefix = prefix.split("/")
        self.max_payload_bytes = max_payload_bytes
        self.validators = {}
        self.fast = {}
        for kind, name in KINDS.items():
            schema = json.loads(schema_path(name).read_text())
            cls = jsonschema.validators.validator_for(schema)
            self.validators[kind] = cls(schema, format_checker=None)
            # The schemas use draft-07's keywords only: fastjsonschema (compiled to Python, about 17x faster
            # than jsonschema here) decides; jsonschema explains a refusal. tests/test_apps_fleet.py checks
            # that the two agree.
            self.fast[kind] = fastjsonschema.compile(schema)
        self._fast_error = fastjsonschema.JsonSchemaException

    def kind_of(self, topic: str) -> Union[Tuple[str, str, Optional[str]], str]:
        """(kind, gateway or site, person) for a topic this service takes, else why not."""
        levels = topic.split("/")
        n = len(self.prefix)
        if levels[:n] != self.prefix:
            return f"topic {topic[:120]!r} is outside {'/'.join(self.prefix)}/"
        rest = levels[n:]
        if len(rest) == 3 and rest[2] == "nightly" and rest[0] and rest[1]:
            return "nightly", rest[0], rest[1]
        if len(rest) == 2 and rest[1] in ("state", "session") and rest[0]:
            return rest[1], rest[0], None
        return f"topic {topic[:120]!r} is not <prefix>/<gateway>/<person>/nightly, /<gateway>/state or /<site>/session"

    def check(self, topic: str, payload: bytes) -> Union[Message, str]:
        kind = self.kind_of(topic)
        if isinstance(kind, str):
            return kind
        kind, source, person = kind
        if len(payload) > self.max_payload_bytes:
            return f"payload of {len(payload)} bytes is over fleet.max_payload_bytes ({self.max_payload_bytes})"
        try:
            data = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return f"not UTF-8 JSON: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        if not isinstance(data, dict):
            return f"the payload is a JSON {type(data).__name__}, not an object"
        try:
            self.fast[kind](data)
        except self._fast_error as exc:
            error = _first_error(self.validators[kind], data) or str(exc)[:200]
            return f"not valid against {KINDS[kind]}.schema.json: {error}"
        problem = _too_long(kind, source, data) or _forged(kind, source, person, data)
        if problem:
            return problem
        return Message(kind, source, data)


def _first_error(validator, data: Dict) -> Optional[str]:
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the object)"
    return f"{where}: {error.message[:200]}"


def _too_long(kind: str, source: str, data: Dict) -> Optional[str]:
    """What the schemas leave open but the tables bound (ids, the state's timestamps)."""
    if len(source) > 100:
        return "the gateway or site id is over 100 characters"
    if len(data["message_id"]) > 200:
        return "message_id is over 200 characters"
    if kind == "state" and not all(_UTC.match(data[k]) for k in ("started_utc", "finished_utc")):
        return "started_utc/finished_utc must look like 2026-12-01T03:00:00Z"
    return None


def _forged(kind: str, source: str, person: Optional[str], data: Dict) -> Optional[str]:
    """The reason when the payload's ids are not the topic's (a forged or misrouted message)."""
    named = data["site"] if kind == "session" else data["gateway"]
    if named != source:
        return f"the topic names {source[:100]!r} but the payload says {str(named)[:100]!r} (forged or misrouted)"
    if kind == "nightly" and data["person"] != person:
        return f"the topic names person {person[:64]!r} but the payload says {data['person'][:64]!r}"
    if not data["message_id"].startswith(source + "/"):
        return f"message_id {data['message_id'][:100]!r} does not start with the sender's id {source[:100]!r}/"
    if kind == "session" and data["message_id"] != f"{source}/session/{data['session_id']}":
        return "message_id is not <site>/session/<session_id>"
    return None
