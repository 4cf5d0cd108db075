"""Data that users and devices hand us (profiles, sidecars), read in bounded memory and time.

    data = load_yaml_file("firmware_configs/desktop.yaml", "config", max_bytes=256 * 1024)

A profile is small and flat: a size cap before reading, a nesting cap and an alias cap
while composing (a "billion laughs" file of nested aliases is refused before anything
expands it), no implicit dates (a bad date is a schema error, not a traceback), and an
integer longer than any setting needs is refused. Every problem is a one-line EdgeError.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Union

from edge.errors import EdgeError, first_line, shown

MAX_DEPTH = 16  # mappings and lists inside each other; the schema has 3 levels
MAX_ALIASES = 16  # `*name` references in one document
MAX_INT_DIGITS = 30


def read_text_file(path: str, what: str, max_bytes: int) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; one-line EdgeError otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EdgeError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise EdgeError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise EdgeError(f"{what} {path} is not a regular file")
    if st.st_size > max_bytes:
        raise EdgeError(f"{what} {path} is {st.st_size} bytes, more than the {max_bytes} a {what} may have")
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise EdgeError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:  # grew since the stat
        raise EdgeError(f"{what} {path} is more than the {max_bytes} bytes a {what} may have")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EdgeError(f"{what} {path} is not a text (UTF-8) file") from None


def _loader_class():
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        """SafeLoader with nesting and alias caps, and without implicit timestamps."""

        def __init__(self, stream):
            super().__init__(stream)
            self._depth = 0
            self._aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_ALIASES:
                    raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name): not a device profile")
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_yaml_int(self, node):
            text = str(node.value).replace("_", "")
            if len(text.lstrip("+-")) > MAX_INT_DIGITS:
                raise yaml.YAMLError(f"a number of {len(text)} digits (line {node.start_mark.line + 1})")
            return super().construct_yaml_int(node)

    BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
    # Dates stay strings: no profile key is a date, and a bad one would raise in the constructor.
    BoundedLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", BoundedLoader.construct_yaml_str)
    return BoundedLoader


_LOADER = None


def load_yaml(text: str, origin: str) -> Any:
    """Parse one YAML document within the caps above; one-line EdgeError naming `origin`."""
    global _LOADER
    import yaml

    if _LOADER is None:
        _LOADER = _loader_class()
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError, LookupError,
            AttributeError) as exc:
        # LookupError: PyYAML's float and int constructors index an empty scalar (`!!float &a`,
        # found by fuzzing); every one of these comes from the text, none from our code.
        raise EdgeError(f"{origin} is not valid YAML: {first_line(exc)[:200]}") from None


def load_yaml_file(path: str, what: str, max_bytes: int) -> Any:
    """read_text_file + load_yaml."""
    return load_yaml(read_text_file(path, what, max_bytes), f"{what} {path}")


JSON_MAX_DEPTH = 32  # a sidecar or a manifest is a few levels deep
_JSON_STRING = None  # compiled on first use: a JSON string literal, escapes included
_JSON_BRACKET = None


def _json_depth(text: str) -> int:
    """How deeply arrays and objects nest in `text`, counted without parsing it (the
    parser itself would recurse once a level and die of RecursionError at ~1000)."""
    global _JSON_STRING, _JSON_BRACKET
    import re

    if _JSON_STRING is None:
        # The closing quote is optional so an unterminated string ends the text in one
        # pass; with it required, `"\"\"\"...` would be rescanned from every quote (quadratic).
        _JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)
        _JSON_BRACKET = re.compile(r"[\[\]{}]+")
    depth = deepest = 0
    for run in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        for ch in run.group():
            depth += 1 if ch in "[{" else -1
            if depth > deepest:
                deepest = depth
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number of {len(text)} digits")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:40]!r} appears twice")
        out[key] = value
    return out


def _check_strings(value: Any) -> None:
    """Every string (key or value) is encodable text: a lone surrogate such as "\\ud800"
    parses but would raise later, when SQLite or a log line encodes it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"the string {shown(item, 40)} holds a lone surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def load_json(text: Union[str, bytes], origin: str, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """Parse one JSON document in bounded memory and time; one-line EdgeError naming `origin`.

    Refused: nesting deeper than `max_depth`, integers of more than 30 digits, NaN,
    Infinity and overflowing floats, a key twice in one object, lone surrogates, bytes
    that are not UTF-8. Cap the size before calling (read_text_file or load_json_file)."""
    import json

    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise EdgeError(f"{origin} is not a text (UTF-8) file") from None
    depth = _json_depth(text)
    if depth > max_depth:
        raise EdgeError(f"{origin} is not valid JSON: nested {depth} levels deep, more than {max_depth}")
    try:
        data = json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float,
                          parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
        _check_strings(data)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EdgeError(f"{origin} is not valid JSON: {first_line(exc)[:200]}") from None
    return data


def load_json_file(path: str, what: str, max_bytes: int, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """read_text_file + load_json: a regular file of at most `max_bytes`, parsed within the
    caps of load_json. `what` names the file in errors ("sidecar", "manifest")."""
    return load_json(read_text_file(path, what, max_bytes), f"{what} {path}", max_depth)
