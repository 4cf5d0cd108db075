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
from typing import Any

from edge.errors import EdgeError, first_line

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
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EdgeError(f"{origin} is not valid YAML: {first_line(exc)[:200]}") from None


def load_yaml_file(path: str, what: str, max_bytes: int) -> Any:
    """read_text_file + load_yaml."""
    return load_yaml(read_text_file(path, what, max_bytes), f"{what} {path}")
