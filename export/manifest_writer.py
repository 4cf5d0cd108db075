"""Write `edge/models/<name>/manifest.json`: what every shipped file is and how good it is."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Dict, List

from edge.backends import open_backend
from edge.manifest import MANIFEST_NAME, MANIFEST_SCHEMA_VERSION, sha256_of
from export.determinism import BUILD_THREADS


def _tensor(spec) -> dict:
    out = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}
    out["quantization"] = {"scale": spec.scale, "zero_point": spec.zero_point} if spec.quantized else None
    return out


def file_entry(path: Path, fmt: str, precision: str, **extra) -> dict:
    """Manifest entry of one model file: size, sha256 and its I/O as the runtime sees it."""
    backend = open_backend(fmt, path)
    entry = {
        "file": path.name,
        "format": fmt,
        "precision": precision,
        "bytes": path.stat().st_size,
        "sha256": sha256_of(path),
        "inputs": [_tensor(s) for s in backend.inputs],
        "outputs": [_tensor(s) for s in backend.outputs],
    }
    entry.update(extra)
    return entry


def write_manifest(folder: Path, manifest: Dict, files: List[dict]) -> Path:
    """Write the manifest (keys sorted, stable) and return its path."""
    data = dict(manifest)
    data["schema_version"] = MANIFEST_SCHEMA_VERSION
    data["files"] = files
    data.setdefault("built_with", {
        "python": platform.python_version(),
        "torch": package_version("torch"), "onnx": package_version("onnx"),
        "onnxruntime": package_version("onnxruntime"),
        "litert_torch": package_version("litert-torch"), "ai_edge_litert": package_version("ai-edge-litert"),
        "torch_threads": BUILD_THREADS,
    })
    path = folder / MANIFEST_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"
