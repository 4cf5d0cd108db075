"""Shared pieces of the signed-release tests (test_models_release.py, test_apps_update.py): a
test signing key (never the project's), signed copies of the shipped models, model bundles."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Callable, Optional

import yaml
from nacl.signing import SigningKey

from export.release import sign_folder, write_bundle
from tests.conftest import ROOT

SHIPPED = ROOT / "edge" / "models"
DEMO_VIDEO = str(ROOT / "edge" / "samples" / "demo_face.mp4")
DEMO_WAV = str(ROOT / "edge" / "samples" / "demo_speech.wav")


def new_key() -> SigningKey:
    return SigningKey.generate()


def public(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()


def copy_models(target: Path) -> Path:
    """The shipped model folders (and their release files) copied to `target`."""
    shutil.copytree(str(SHIPPED), str(target), ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.md"))
    return target


def signed_copy(target: Path, key: SigningKey, version: str,
                change: Optional[Callable[[Path], None]] = None) -> Path:
    """A copy of the shipped models, changed by `change(folder)` first, signed with `key`."""
    copy_models(target)
    if change is not None:
        change(target)
    sign_folder(target, key, version)
    return target


def bundle(tmp: Path, key: SigningKey, version: str, change: Optional[Callable[[Path], None]] = None) -> Path:
    folder = signed_copy(tmp / f"src-{version}-{key_tag(key)}", key, version, change)
    return write_bundle(folder, tmp / f"models-{version}-{key_tag(key)}.tar.gz", key, version)


def key_tag(key: SigningKey) -> str:
    return hashlib.sha256(bytes(key.verify_key)).hexdigest()[:6]


def rewrite_bundle(source: Path, out: Path, change: Callable[[str, bytes], Optional[bytes]]) -> Path:
    """A copy of a bundle with each member's bytes passed through change(name, data) (None drops it)."""
    with tarfile.open(str(source), "r:gz") as tin, tarfile.open(str(out), "w:gz") as tout:
        for member in tin:
            data = tin.extractfile(member).read()
            data = change(member.name, data)
            if data is None:
                continue
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    return out


def forge_entry(folder: Path, model: str, file: str) -> None:
    """Make `model`'s manifest vouch for `file` as it now is (what a new user tried in issue 24)."""
    path = folder / model / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["files"]:
        if entry["file"] == file:
            data = (folder / model / file).read_bytes()
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["bytes"] = len(data)
    path.write_text(json.dumps(manifest, indent=2))


def write_profile(folder: Path, key: str, **models) -> Path:
    data = {"profile": "release-test", "threads": 1,
            "models": dict({"release_key": key, "store": str(folder / "store")}, **models),
            "output": {"dir": str(folder / "out"), "database": None}}
    path = folder / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
