"""Shipped models and their manifests (the contract between export/ and edge/).

Models live in `<models_dir>/<name>/` with a `manifest.json`. The directory is the one
given by `--models-dir`, else `$EDGE_MODELS_DIR`, else the `edge/models` package data.
Every file is checked against the sha256 in its manifest before it is loaded.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

from edge.errors import EdgeError, shown
from edge.safe_load import load_json_file

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1
MANIFEST_MAX_BYTES = 1 << 20  # the shipped ones are under 10 KB
_SHA256 = re.compile(r"[0-9a-f]{64}")
PACKAGE_MODELS_DIR = Path(__file__).resolve().parent / "models"


def models_dir(override: Optional[str] = None) -> Path:
    """The folder that holds the model folders (see the module docstring)."""
    chosen = override or os.environ.get("EDGE_MODELS_DIR")
    path = Path(chosen) if chosen else PACKAGE_MODELS_DIR
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a parent folder this user may not enter
        raise EdgeError(f"models directory {path} cannot be read: {exc.strerror or exc}") from None
    if not is_dir:
        raise EdgeError(f"models directory {path} does not exist; check --models-dir or EDGE_MODELS_DIR")
    if not os.access(str(path), os.R_OK | os.X_OK):
        raise EdgeError(f"models directory {path} cannot be read by this user; "
                        "fix its permissions (chmod a+rX) or give another --models-dir")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelManifest:
    """One model's manifest.json, with helpers to pick and verify its files."""

    def __init__(self, folder: Path, data: dict):
        self.folder = folder
        self.data = data

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def labels(self) -> List[str]:
        return list(self.data.get("labels", []))

    @property
    def preprocess(self) -> dict:
        return self.data["preprocess"]

    @property
    def demo_weights(self) -> bool:
        return self.data.get("trained_on") == "synthetic"

    @property
    def files(self) -> List[dict]:
        return list(self.data["files"])

    def find_file(self, backend: str, precision: str) -> dict:
        """The file entry for a backend ('onnx' or 'tflite') and precision ('fp32', 'int8')."""
        for entry in self.data["files"]:
            if entry["format"] == backend and entry["precision"] == precision:
                return entry
        have = ", ".join(f"{e['format']}/{e['precision']}" for e in self.data["files"])
        raise EdgeError(f"model {self.name} has no {backend}/{precision} file (it has: {have})")

    def verified_path(self, entry: dict) -> Path:
        """Path of a file entry after checking that it exists and its sha256 matches."""
        path = self.folder / entry["file"]
        try:
            mode = os.stat(str(path)).st_mode
        except FileNotFoundError:
            raise EdgeError(f"model file {path} is missing; reinstall the package or run `make models`") from None
        except OSError as exc:
            raise EdgeError(f"model file {path} cannot be read: {exc.strerror or exc}; "
                            "fix its permissions or reinstall the package") from None
        if not stat.S_ISREG(mode):  # a FIFO would block the sha256 read for ever
            raise EdgeError(f"model file {path} is not a regular file (a folder, pipe or device); "
                            "reinstall the package or run `make models`")
        try:
            actual = sha256_of(path)
        except OSError as exc:
            raise EdgeError(f"model file {path} cannot be read: {exc.strerror or exc}; "
                            "fix its permissions (chmod a+r) or reinstall the package") from None
        if actual != entry["sha256"]:
            raise EdgeError(
                f"model file {path} does not match its manifest (sha256 {actual[:12]}... "
                f"expected {entry['sha256'][:12]}...); the file is corrupt or was replaced: reinstall it"
            )
        return path


    def open(self, entry: dict, threads: int = 1, providers: Optional[Sequence[str]] = None):
        """A Backend running a file entry, after its sha256 check (see `verified_path`)."""
        from edge.backends import open_backend

        path = self.verified_path(entry)
        backend = open_backend(entry["format"], path, threads=threads, providers=providers)
        _check_signature(path, entry, backend)
        return backend


def _check_signature(path: Path, entry: dict, backend) -> None:
    """One-line EdgeError when the file's inputs/outputs are not the ones its manifest entry
    declares (another model's file behind a forged entry): never a failure at the first frame."""
    def same(declared, found) -> bool:
        if len(declared) != len(found):
            return False
        for want, got in zip(declared, found):
            shape = list(want.get("shape", got.shape))
            if len(shape) != len(got.shape) or want.get("dtype", got.dtype) != got.dtype:
                return False
            if any(a != b and -1 not in (a, b) for a, b in zip(shape, got.shape)):
                return False
        return True

    for kind in ("inputs", "outputs"):
        declared, found = entry.get(kind), getattr(backend, kind)
        if declared is not None and not same(declared, found):
            seen = ", ".join(f"{s.dtype}{list(s.shape)}" for s in found)
            raise EdgeError(f"model file {path} is not the model its manifest describes (its {kind}: {seen}); "
                            "it is another model's file or was replaced: reinstall it")


def load_manifest(name: str, directory: Optional[str] = None) -> ModelManifest:
    """Read `<models_dir>/<name>/manifest.json`; one-line EdgeError when absent or broken."""
    folder = models_dir(directory) / name
    path = folder / MANIFEST_NAME
    try:
        exists = os.path.lexists(str(path))
    except OSError:
        exists = True  # let the read below say why
    if not exists:
        raise EdgeError(f"no manifest for model {name!r} at {path}; check --models-dir")
    data = load_json_file(str(path), "manifest", MANIFEST_MAX_BYTES)
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != MANIFEST_SCHEMA_VERSION:
        raise EdgeError(f"manifest {path} has schema_version {shown(version)}; this runtime reads version "
                        f"{MANIFEST_SCHEMA_VERSION}: install the package that matches these models")
    for key in ("name", "files", "preprocess"):
        if key not in data:
            raise EdgeError(f"manifest {path} lacks the key {key!r}; rebuild it with `make models`")
    problem = _manifest_problem(data)
    if problem:
        raise EdgeError(f"manifest {path}: {problem}; rebuild it with `make models`")
    return ModelManifest(folder, data)


def plain_file_name(name: object) -> bool:
    """True for a file name that stays inside its folder: no path separator, not `.` or
    `..`, not hidden, no NUL (a manifest entry `../../../etc/passwd` is refused)."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and "/" not in name and "\\" not in name
            and "\0" not in name and not name.startswith("."))


def _manifest_problem(data: dict) -> Optional[str]:
    """What is wrong with a manifest's types, in a few words; None when it is usable."""
    if not isinstance(data["name"], str) or not data["name"]:
        return f"name must be a text, not {shown(data['name'])}"
    if not isinstance(data["preprocess"], dict):
        return f"preprocess must be an object, not {shown(data['preprocess'])}"
    labels = data.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        return f"labels must be a list of texts, not {shown(labels)}"
    files = data["files"]
    if not isinstance(files, list) or not files:
        return f"files must be a non-empty list of file entries, not {shown(files)}"
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            return f"files[{i}] must be an object, not {shown(entry)}"
        for key in ("file", "format", "precision", "sha256"):
            if not isinstance(entry.get(key), str):
                return f"files[{i}].{key} must be a text, not {shown(entry.get(key))}"
        if not plain_file_name(entry["file"]):
            return f"files[{i}].file must be a plain file name inside the model's folder, not {shown(entry['file'])}"
        if not _SHA256.fullmatch(entry["sha256"]):
            return f"files[{i}].sha256 must be 64 lowercase hex digits, not {shown(entry['sha256'])}"
    return None


class ImageContract(NamedTuple):
    """How an image model wants its input, read from its manifest's `preprocess`."""

    input_size: int
    layout: str  # NCHW | NHWC
    color: str  # gray | rgb
    scale: float  # pixel x becomes x * scale + offset
    offset: float
    margin_ratio: float  # the face crop's margin (square_margin rule); 0 where there is no crop


def image_contract(manifest: ModelManifest, layout: str, color: str) -> ImageContract:
    """The manifest's image contract, refused in one line when this runtime's code for
    the model (which lays out `layout` tensors in `color`) cannot honour it."""
    pre = manifest.preprocess
    where = f"manifest of {manifest.name}"
    try:
        size = [int(v) for v in pre["input_size"]]
        normalize = pre["normalize"]
        scale, offset = float(normalize["scale"]), float(normalize["offset"])
        margin = float(pre.get("crop", {}).get("margin_ratio", 0.0))
    except (KeyError, TypeError, ValueError):
        raise EdgeError(f"{where}: preprocess needs input_size and normalize.scale/offset; "
                        "rebuild it with `make models`") from None
    if len(size) != 2 or size[0] != size[1] or size[0] <= 0:
        raise EdgeError(f"{where}: preprocess.input_size must be a square [S, S], got {pre['input_size']}")
    if pre.get("layout") != layout or pre.get("color") != color:
        raise EdgeError(f"{where}: wants {pre.get('color')} {pre.get('layout')} input; this runtime feeds "
                        f"{color} {layout} to this model: update the package or the model")
    crop_rule = pre.get("crop", {}).get("rule")
    if crop_rule not in (None, "square_margin"):
        raise EdgeError(f"{where}: unknown crop rule {crop_rule!r} (this runtime knows square_margin)")
    return ImageContract(size[0], layout, color, scale, offset, margin)


def list_manifests(directory: Optional[str] = None) -> Dict[str, ModelManifest]:
    root = models_dir(directory)
    found = {}
    try:
        children = sorted(root.iterdir())
    except OSError as exc:
        raise EdgeError(f"models directory {root} cannot be read: {exc.strerror or exc}") from None
    for child in children:
        try:
            has_manifest = os.path.lexists(str(child / MANIFEST_NAME))
        except OSError:
            has_manifest = True
        if has_manifest:
            found[child.name] = load_manifest(child.name, str(root))
    return found
