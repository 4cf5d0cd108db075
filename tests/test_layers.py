"""edge's packages form layers: a module imports its own layer or lower ones, never a higher one.

One home per model (edge.models) and per rule (edge.rules): the rules are pure (numpy and the
label order), the model wrappers sit on the backends, manifests and features, and the file a
device loads is chosen above them (edge.precision). Lazy (function-level) imports count too;
`from edge import X` counts as an import of the module behind X (edge/__init__.py's lazy names).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, Set

import edge
from tests.conftest import ROOT

# Lowest first. A unit is edge/<name>.py or the package edge/<name>/; one of layer i may import
# units of layers 0..i (never a cycle: see the test below), never one of a layer above.
LAYERS = (
    ("edge.errors", "edge.cpu", "edge.native_output"),  # no edge imports at all
    ("edge.config", "edge.safe_load", "edge.http_server", "edge.telemetry"),  # profiles, bounded reading, /metrics
    ("edge.backends",),  # onnxruntime, LiteRT/tflite
    ("edge.manifest",),  # the model contract; opens a file with its backend
    ("edge.features",),  # preprocessing shared with export/ (face crops, log-mel/MFCC, tick vector)
    ("edge.capture",),  # camera, files, mic
    ("edge.rules",),  # the PHQ-8 scale and interval, the frame vote, the trend flags
    ("edge.models",),  # one wrapper per model, given the file to open
    ("edge.precision",),  # which file to load on this CPU; the loaders load_emotion/load_severity
    ("edge.store", "edge.stream", "edge.screen", "edge.reporting", "edge.updates"),  # results on disk, the tick
    # engine, session screening, summaries to the care team (MQTT outbox), model sets (install, self-test, switch)
    ("edge.engine",),  # the public API: Screener, sessions, typed results
    ("edge.apps", "edge.cli", "edge.__main__"),  # edge run / kiosk / nightly / face / ...
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
# What the rules may read from edge: its top-level constants, errors, and the emotion label order.
RULES_MAY_IMPORT = {"edge", "edge.errors", "edge.features.tick", "edge.rules"}
# What no model wrapper or rule may import: the layers that choose files or run sessions.
ABOVE_MODELS = ("edge.precision", "edge.stream", "edge.screen", "edge.store", "edge.engine", "edge.apps",
                "edge.cli")


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _lazy_home(name: str) -> str:
    """The module an `from edge import name` reaches: a submodule, a constant of edge itself, or
    the module behind one of edge/__init__.py's lazy public names."""
    if (ROOT / "edge" / f"{name}.py").is_file() or (ROOT / "edge" / name / "__init__.py").is_file():
        return f"edge.{name}"
    if name in vars(edge):
        return "edge"
    public = getattr(edge, "_PUBLIC", {})
    assert name in public, f"cannot tell which module `from edge import {name}` reaches"
    return public[name]


def _edge_imports(path: Path) -> Iterator[str]:
    """Every edge module `path` imports (top-level and function-level)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "edge":
                yield from (_lazy_home(alias.name) for alias in node.names)
            elif node.module.startswith("edge."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "edge")


def _imports_by_module() -> Dict[str, Set[str]]:
    return {_module_of(path): set(_edge_imports(path)) for path in sorted((ROOT / "edge").rglob("*.py"))}


def test_every_unit_has_a_layer():
    units = {_unit(module) for module in _imports_by_module()} - {"edge"}
    assert sorted(units - set(LAYER)) == [], "place new modules in LAYERS"


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, targets in _imports_by_module().items():
        if module == "edge":
            continue  # its lazy public names reach every layer, on first use only
        for target in sorted(targets):
            unit, wanted = _unit(module), _unit(target)
            if wanted != "edge" and LAYER.get(wanted, -1) > LAYER.get(unit, len(LAYERS)):
                upward.append(f"{module} -> {target}")
    assert upward == [], f"imports of a higher layer: {upward}"


def test_models_and_rules_never_import_what_chooses_files_or_runs_sessions():
    imports = _imports_by_module()
    bad = sorted(f"{module} -> {target}" for module, targets in imports.items() for target in targets
                 if _unit(module) in ("edge.models", "edge.rules") and _unit(target) in ABOVE_MODELS)
    assert bad == [], "model wrappers and rules sit below edge.precision and the session layers"
    impure = sorted(f"{module} -> {target}" for module, targets in imports.items() for target in targets
                    if _unit(module) == "edge.rules" and target not in RULES_MAY_IMPORT
                    and not target.startswith("edge.rules."))
    assert impure == [], "edge.rules is pure: numpy, errors, edge's constants and the label order only"


def test_the_device_packages_have_no_import_loops():
    """No loop between edge's units, nor between two modules of features, rules or models."""
    graph: Dict[str, Set[str]] = {}
    for module, targets in _imports_by_module().items():
        unit = _unit(module)
        for target in targets:
            if _unit(target) not in (unit, "edge"):
                graph.setdefault(unit, set()).add(_unit(target))
            if unit in ("edge.features", "edge.rules", "edge.models") and _unit(target) == unit \
                    and target not in (module, unit):
                graph.setdefault(module, set()).add(target)

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, seen + (n,))) for n in graph.get(start, ()))

    loops = sorted(unit for unit in graph if reaches(unit, unit))
    assert loops == [], f"import loops through {loops}"


def test_each_model_and_rule_has_one_home():
    """The PHQ-8 scale and the old homes of the wrappers and rules exist once, in edge.models/edge.rules."""
    gone = ("edge/emotion.py", "edge/features/blazeface.py", "edge/features/detectors.py", "edge/stream/severity.py",
            "edge/screen/vote.py")
    assert [p for p in gone if (ROOT / p).exists()] == []
    defined = []
    for path in sorted((ROOT / "edge").rglob("*.py")) + sorted((ROOT / "export").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AnnAssign) else []
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            if names & {"PHQ8_MAX", "BAND_UPPER", "BAND_NAMES", "BAND_CUTOFFS", "INTERVAL_Z"}:
                defined.append(str(path.relative_to(ROOT)))
    assert sorted(set(defined)) == ["edge/rules/phq8.py"]
