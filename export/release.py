"""`python -m export release`: a signed model bundle for `edge update --bundle` (issue 24).

    python -m export release --out out/models-2026.12.05.tar.gz [--version V] [--models-dir DIR]
    python -m export release --sign-shipped      # re-sign edge/models in place (after `make models`)

A release is the model folders (every manifest, model file and check input) plus
`release.json` (version and every file's sha256, bytes, role) and `release.sig` (Ed25519
over release.json's bytes); see edge/models/release.py for what a device checks.

The signing key (a 32-byte Ed25519 seed, base64, one line) is read from $EDGE_RELEASE_KEY,
else from `.release-keys/ed25519.key` in the checkout (gitignored). `--new-key` makes one
there for development and prints its public half; a care team keeps its real key offline and
puts the public half in its devices' profiles (`models.release_key`). The project's shipped
models are signed with the key whose public half is edge.models.release.SHIPPED_PUBLIC_KEY.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Dict, Optional

from edge.errors import EdgeError
from edge.manifest import MANIFEST_NAME, load_manifest, sha256_of
from edge.models.release import (
    RELEASE_NAME,
    RELEASE_SCHEMA,
    SHIPPED_PUBLIC_KEY,
    SIGNATURE_NAME,
    SIGNATURE_SCHEMA,
    key_id,
    verify_release,
)

ROOT = Path(__file__).resolve().parent.parent
DEV_KEY_PATH = ROOT / ".release-keys" / "ed25519.key"
SHIPPED_MODELS_DIR = ROOT / "edge" / "models"
# What a device gets of a model folder: the package data of pyproject.toml (manifest, model
# files, check inputs, licence). Training weights (.npz) stay on the host.
DEVICE_NAMES = (MANIFEST_NAME, "LICENSE")
DEVICE_SUFFIXES = (".onnx", ".tflite", ".npy")


def key_path() -> Path:
    return Path(os.environ.get("EDGE_RELEASE_KEY") or DEV_KEY_PATH)


def new_key(path: Path):
    """A new Ed25519 signing key written to `path` (mode 0600); refuses to overwrite one."""
    from nacl.signing import SigningKey

    if path.exists():
        raise EdgeError(f"{path} exists: a signing key is never overwritten (move it away first)")
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(bytes(key)).decode() + "\n")
    return key


def load_key(path: Optional[Path] = None):
    """The signing key at `path` (default: key_path()); one-line EdgeError when absent or bad."""
    from nacl.signing import SigningKey

    path = path or key_path()
    try:
        seed = base64.b64decode(path.read_text().strip(), validate=True)
    except FileNotFoundError:
        raise EdgeError(f"no signing key at {path}: set EDGE_RELEASE_KEY to the care team's key file, "
                        "or make a development key with `python -m export release --new-key`") from None
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise EdgeError(f"{path} is not an Ed25519 signing key (one line: 32 bytes in base64)")
    return SigningKey(seed)


def public_key_text(key) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()


def release_json(folder: Path, version: str) -> bytes:
    """release.json for the model folders under `folder`: every file with its sha256, bytes
    and role. Refuses a folder whose model files do not match their manifests."""
    files: Dict[str, dict] = {}
    models: Dict[str, dict] = {}
    for child in sorted(p for p in folder.iterdir() if (p / MANIFEST_NAME).is_file()):
        manifest = load_manifest(child.name, str(folder))
        model_files = set()
        for entry in manifest.files:
            manifest.verified_path(entry)  # never sign a file its own manifest refuses
            model_files.add(entry["file"])
        for path in sorted(child.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.name not in DEVICE_NAMES and path.suffix not in DEVICE_SUFFIXES and path.name not in model_files:
                continue
            role = "manifest" if path.name == MANIFEST_NAME else "model" if path.name in model_files else "data"
            files[f"{child.name}/{path.name}"] = {"sha256": sha256_of(path), "bytes": path.stat().st_size,
                                                  "role": role}
        models[child.name] = {"manifest_sha256": files[f"{child.name}/{MANIFEST_NAME}"]["sha256"],
                              "trained_on": manifest.data.get("trained_on"), "demo_weights": manifest.demo_weights}
    if not models:
        raise EdgeError(f"no model folders (with {MANIFEST_NAME}) in {folder}")
    data = {"schema": RELEASE_SCHEMA, "version": version, "models": models, "files": files}
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def content_hash(folder: Path) -> str:
    """8 hex digits naming the files of a release (the same files give the same name)."""
    return hashlib.sha256(release_json(folder, "x")).hexdigest()[:8]


def shipped_version(folder: Path) -> str:
    return f"shipped-{content_hash(folder)}"


def sign_folder(folder: Path, key, version: str) -> str:
    """Write release.json and release.sig into `folder` (signed with `key`); returns the version."""
    message = release_json(folder, version)
    signature = key.sign(message).signature
    sig = {"schema": SIGNATURE_SCHEMA, "algorithm": "ed25519", "key_id": key_id(bytes(key.verify_key)),
           "signature": base64.b64encode(signature).decode()}
    (folder / RELEASE_NAME).write_bytes(message)
    (folder / SIGNATURE_NAME).write_text(json.dumps(sig, indent=1, sort_keys=True) + "\n")
    verify_release(folder, public_key_text(key), deep=True)
    return version


def write_bundle(folder: Path, out: Path, key, version: str) -> Path:
    """A signed model bundle (tar.gz) of the model folders under `folder`, byte-reproducible."""
    message = release_json(folder, version)
    signature = key.sign(message).signature
    sig = (json.dumps({"schema": SIGNATURE_SCHEMA, "algorithm": "ed25519", "key_id": key_id(bytes(key.verify_key)),
                       "signature": base64.b64encode(signature).decode()}, indent=1, sort_keys=True) + "\n").encode()
    listed = json.loads(message)["files"]
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.part")
    with open(str(temporary), "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        add(RELEASE_NAME, message)
        add(SIGNATURE_NAME, sig)
        for name in sorted(listed):
            data = (folder / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != listed[name]["sha256"]:
                raise EdgeError(f"{folder / name} changed while the bundle was written; run again")
            add(name, data)
    os.replace(str(temporary), str(out))
    return out


def _run(args) -> None:
    path = Path(args.key) if args.key else key_path()
    if args.new_key:
        key = new_key(path)
        print(f"new signing key {path} (keep it private); public key for models.release_key: "
              f"{public_key_text(key)}")
        return
    key = load_key(path)
    if args.sign_shipped:
        if public_key_text(key) != SHIPPED_PUBLIC_KEY:
            raise EdgeError(f"{path} is not the project's release key (its public key {public_key_text(key)} is not "
                            "SHIPPED_PUBLIC_KEY in edge/models/release.py): sign the shipped models with that key")
        version = sign_folder(SHIPPED_MODELS_DIR, key, args.version or shipped_version(SHIPPED_MODELS_DIR))
        print(f"signed {SHIPPED_MODELS_DIR} as release {version} (key {key_id(bytes(key.verify_key))})")
        return
    if not args.out:
        raise EdgeError("give --out FILE (the bundle to write), or --sign-shipped, or --new-key")
    folder = Path(args.models_dir)
    version = args.version or datetime.datetime.now(datetime.timezone.utc).strftime("%Y.%m.%d") + "." + \
        content_hash(folder)
    out = write_bundle(folder, Path(args.out), key, version)
    print(f"wrote {out} ({out.stat().st_size} bytes): release {version}, key {key_id(bytes(key.verify_key))}")


def register(sub) -> None:
    p = sub.add_parser("release", help="a signed model bundle for `edge update --bundle` (or --sign-shipped)")
    p.add_argument("--out", help="the bundle to write (.tar.gz)")
    p.add_argument("--models-dir", default=str(SHIPPED_MODELS_DIR), help="the model folders to release")
    p.add_argument("--version", help="release name (default: UTC date + content hash; shipped: "
                   "shipped-<content hash>)")
    p.add_argument("--key", help="signing key file (default: $EDGE_RELEASE_KEY, else .release-keys/ed25519.key)")
    p.add_argument("--new-key", action="store_true", help="make a development signing key and print its public key")
    p.add_argument("--sign-shipped", action="store_true", help="sign edge/models in place with the project's key")
    p.set_defaults(func=_run)


def build_shipped(args: argparse.Namespace) -> None:
    """After `make models` rewrote the files: sign them again when the project's key is here."""
    try:
        key = load_key()
    except EdgeError as exc:
        print(f"warning: the shipped models are no longer signed ({exc})")
        return
    if public_key_text(key) == SHIPPED_PUBLIC_KEY:
        sign_folder(Path(args.models_dir), key, shipped_version(Path(args.models_dir)))
