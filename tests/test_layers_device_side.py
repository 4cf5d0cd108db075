"""The device side stays light: no training packages, Python 3.8 syntax and APIs."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE_IMAGE

FORBIDDEN = ("torch", "tensorflow", "fvcore", "export", "litert_torch", "onnx", "h5py", "skimage",
             "mediapipe")


def _imports(path: Path, top_level_only: bool):
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


# edge/ may not import them anywhere. bench/ runs on devices too, but keeps a host-only
# rebuild of its fixed inputs behind a function-level import.
@pytest.mark.parametrize("folder,top_level_only", [("edge", False), ("bench", True)])
def test_device_code_imports_no_training_package(folder, top_level_only):
    offenders = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in _imports(path, top_level_only):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders


def test_edge_runs_with_training_packages_blocked():
    """`edge face` works in a process where importing torch & co. fails."""
    blocker = (
        "import sys\n"
        f"for name in {FORBIDDEN!r}:\n"
        "    sys.modules[name] = None\n"
        "from edge.cli import main\n"
        f"raise SystemExit(main(['face', {str(SAMPLE_IMAGE)!r}, '--json']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"top": "happy"' in proc.stdout


def test_edge_is_python38_compatible():
    vermin = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(vermin).exists():
        pytest.fail("vermin is not installed: `pip install -e .[dev]`")
    proc = subprocess.run([vermin, "-q", "--no-tips", "--target=3.8-", "--violations", "edge"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
