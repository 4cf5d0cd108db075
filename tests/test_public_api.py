"""The applications (`edge run`, the kiosk, the nightly job) are thin clients of the engine:
they import only the names `edge` exports (and the rules in edge.rules, and their own
package), and never reach into a session's internals. When an application needs more, the
engine grows a public seam (DESIGN.md: "The engine")."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

import edge

ROOT = Path(__file__).resolve().parent.parent
APPS = {  # module files -> the package they may import freely (their own)
    "edge/apps/run.py": "edge.apps.run",
    "edge/apps/kiosk": "edge.apps.kiosk",
    "edge/apps/nightly": "edge.apps.nightly",
    "edge/apps/fleet": "edge.apps.fleet",
    "edge/apps/update.py": "edge.apps.update",
}
PUBLIC_MODULES = ("edge.rules",)  # pure rules: public as modules
# Attributes that belong to the engine's inside: a client that needs one lacks a seam.
INTERNAL_ATTRIBUTES = {"tracker", "media_crops", "media_audio", "video_source", "audio_source", "reader_gaps",
                       "extra_counters", "video_reader", "audio_reader", "classifier", "severity_manifest"}


def app_files() -> Iterator[Tuple[Path, str]]:
    for where, own in APPS.items():
        path = ROOT / where
        for file in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
            yield file, own


def imports_of(tree: ast.AST) -> Iterator[Tuple[int, str, List[str]]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def _name(file: Path) -> str:
    return str(file.relative_to(ROOT)) if file.is_relative_to(ROOT) else file.name


def violations(file: Path, own: str) -> List[str]:
    found = []
    tree = ast.parse(file.read_text(), str(file))
    for line, module, names in imports_of(tree):
        if module != "edge" and not module.startswith("edge."):
            continue
        where = f"{_name(file)}:{line}"
        if module == "edge":
            found += [f"{where}: edge.{n} is not public" for n in names if n not in edge.__all__]
        elif not (module == own or module.startswith(own + ".")
                  or any(module == p or module.startswith(p + ".") for p in PUBLIC_MODULES)):
            found.append(f"{where}: imports {module} (not edge's public API)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in INTERNAL_ATTRIBUTES:
            found.append(f"{_name(file)}:{node.lineno}: reaches into .{node.attr}")
        if (isinstance(node, ast.Attribute) and node.attr == "engine" and isinstance(node.value, ast.Attribute)
                and node.value.attr == "session"):
            found.append(f"{_name(file)}:{node.lineno}: reaches into .session.engine")
    return found


@pytest.mark.parametrize("file, own", list(app_files()), ids=lambda v: str(v).split("/edge/")[-1])
def test_apps_use_only_the_public_api(file, own):
    assert violations(file, own) == []


def test_the_check_finds_a_client_that_reaches_in(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from edge.capture.audio import WavSource\nfrom edge import Screener, _PUBLIC\n"
                   "from edge.apps.kiosk.views import LiveView\nbox = run.session.engine.media_crops\n"
                   "x = screener.tracker.box\nfrom edge.rules.phq8 import phq8_interval\n")
    found = violations(bad, "edge.apps.nightly")
    assert len(found) == 6, found
    assert not any("phq8_interval" in f or "Screener" in f for f in found)


def test_every_public_name_resolves():
    for name in edge.__all__:
        assert getattr(edge, name) is not None, name
    with pytest.raises(AttributeError):
        edge.NoSuchName  # noqa: B018
