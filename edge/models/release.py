"""Signed model releases: which models folder a device may load (issue 24).

A models folder (the shipped `edge/models`, `--models-dir`, `$EDGE_MODELS_DIR`, or an
update's `<store>/current`) is a release when it holds, next to the model folders:

- `release.json`: the release's version and every file of it (path, sha256, bytes, role:
  `manifest`, `model` or `data`), written by `python -m export release`;
- `release.sig`: an Ed25519 signature (PyNaCl/libsodium) of release.json's exact bytes.

A device trusts the public key of its profile (`models.release_key`): `shipped` (the
default) is the project's key below, so the shipped models verify out of the box; a base64
key is a care team's own; `none` turns the check off (development only: every summary and
`edge doctor` then say "unsigned"). With a key, a folder with no signature, a signature by
another key, or a signed file that changed is refused in one line before any model loads.

At load (`verify_release`): the signature, then the sha256 of every manifest and data file
(check inputs, weights, licences); each model file's sha256 is fixed by its manifest, which
is signed, and is checked when the file is opened (edge.manifest). `deep=True` (an update)
hashes every file now. A model folder the release does not list is refused too.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Dict, NamedTuple, Optional

from edge.config import release_key_problem
from edge.errors import EdgeError, shown
from edge.manifest import MANIFEST_NAME, PACKAGE_MODELS_DIR, load_manifest, sha256_of
from edge.safe_load import load_json_file

RELEASE_NAME = "release.json"
SIGNATURE_NAME = "release.sig"
RELEASE_SCHEMA = "edge-model-release/1"
SIGNATURE_SCHEMA = "edge-model-release-signature/1"
RELEASE_MAX_BYTES = 1 << 20
ROLES = ("manifest", "model", "data")
# The project's release key (Ed25519, base64). Its private half signs the shipped models; for
# development it is generated into the gitignored .release-keys/ (export/release.py).
SHIPPED_PUBLIC_KEY = "tKBN5gehfUud9QaEJuHs6a91mvwC89ImsJ4LGfZaw8Y="
KEY_SHIPPED = "shipped"
KEY_NONE = "none"
_VERSION = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}")


class Release(NamedTuple):
    """A verified models folder: its version and who signed it."""

    folder: Path
    version: Optional[str]  # None when unsigned (models.release_key: none)
    key_id: Optional[str]
    models: Dict[str, dict]  # model name -> what release.json says of it

    @property
    def label(self) -> str:
        """One word for summaries and the gateway's state: the version, or `unsigned`."""
        return self.version if self.version is not None else "unsigned"


def key_problem(setting: object) -> Optional[str]:
    """Why a `models.release_key` value is unusable (None when it is fine)."""
    return release_key_problem(setting)


def public_key(setting: str) -> Optional[bytes]:
    """The 32 key bytes a `models.release_key` setting names; None for `none`."""
    if setting == KEY_NONE:
        return None
    problem = key_problem(setting)
    if problem:
        raise EdgeError(f"models.release_key {problem}")
    return base64.b64decode(SHIPPED_PUBLIC_KEY if setting == KEY_SHIPPED else setting)


def key_id(key: bytes) -> str:
    """A short name for a public key (first 16 hex digits of its sha256)."""
    return hashlib.sha256(key).hexdigest()[:16]


def signature_valid(message: bytes, signature: bytes, key: bytes) -> bool:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        VerifyKey(key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _read_signature(folder: Path) -> dict:
    path = folder / SIGNATURE_NAME
    if not path.is_file():
        raise EdgeError(f"models folder {folder} is not signed (no {SIGNATURE_NAME}) and models.release_key "
                        "asks for a signature: install a signed release (edge update --bundle FILE)")
    data = load_json_file(str(path), "release signature", 4096)
    if not isinstance(data, dict) or data.get("schema") != SIGNATURE_SCHEMA or data.get("algorithm") != "ed25519":
        raise EdgeError(f"{path} is not an Ed25519 release signature ({SIGNATURE_SCHEMA}); "
                        "install a signed release (edge update --bundle FILE)")
    try:
        data["signature_bytes"] = base64.b64decode(str(data.get("signature")), validate=True)
    except ValueError:  # binascii.Error is one
        data["signature_bytes"] = b""
    return data


def _release_problem(data: object) -> Optional[str]:
    if not isinstance(data, dict) or data.get("schema") != RELEASE_SCHEMA:
        return f"schema must be {RELEASE_SCHEMA}"
    if not isinstance(data.get("version"), str) or not _VERSION.fullmatch(data["version"]):
        return "version must be 1-64 letters, digits or ._+- (not starting with a dot)"
    files, models = data.get("files"), data.get("models")
    if not isinstance(files, dict) or not files or not isinstance(models, dict):
        return "files and models must be objects"
    for name, entry in files.items():
        parts = name.split("/")
        if (len(parts) > 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or "\\" in name
                or "\0" in name):
            return f"file {shown(name)} is not a plain path inside the release"
        if (not isinstance(entry, dict) or entry.get("role") not in ROLES or not isinstance(entry.get("sha256"), str)
                or len(entry["sha256"]) != 64):
            return f"files[{shown(name)}] needs a role and a sha256"
    return None


def read_release(folder: Path) -> dict:
    """release.json of a folder, type-checked (not verified: see verify_release)."""
    path = folder / RELEASE_NAME
    if not path.is_file():
        raise EdgeError(f"models folder {folder} has a {SIGNATURE_NAME} but no {RELEASE_NAME}; "
                        "install a signed release (edge update --bundle FILE)")
    data = load_json_file(str(path), "release", RELEASE_MAX_BYTES)
    problem = _release_problem(data)
    if problem:
        raise EdgeError(f"{path}: {problem}; it was not written by `python -m export release`")
    return data


def _changed_manifest(folder: Path, name: str, files: Dict[str, dict]) -> EdgeError:
    """The error for a manifest that differs from the signed one: the manifest's own refusal
    when a file does not match it, else which of its entries were changed after signing."""
    manifest = load_manifest(name, str(folder))
    changed = []
    for entry in manifest.files:
        signed = files.get(f"{name}/{entry['file']}")
        if signed is None or signed["sha256"] != entry["sha256"]:
            manifest.verified_path(entry)  # a file that does not even match the edited manifest
            changed.append(entry["file"])
    what = f"its entries for {', '.join(changed)} differ" if changed else "its text differs"
    return EdgeError(f"model {name}: {name}/{MANIFEST_NAME} was changed after the release was signed ({what}); "
                     f"{_reinstall(folder)}")


def _reinstall(folder: Path) -> str:
    if folder.resolve() == PACKAGE_MODELS_DIR.resolve():  # a checkout where someone rebuilt a shipped model
        return ("reinstall the package, or (developers) sign the shipped models again: "
                "python -m export release --sign-shipped")
    return "reinstall the release (edge update --bundle FILE)"


def verify_release(folder: Path, setting: str = KEY_SHIPPED, deep: bool = False) -> Release:
    """Check a models folder against its signed release.json for the key `setting` (a
    `models.release_key` value). Returns the Release; one-line EdgeError when it is unsigned,
    signed by another key, or a signed file changed. deep: hash the model files too (else
    their manifests' sha256 checks them when they are opened)."""
    folder = Path(folder)
    key = public_key(setting)
    if key is None:
        return Release(folder, None, None, {})
    signature = _read_signature(folder)
    message_path = folder / RELEASE_NAME
    try:
        message = message_path.read_bytes() if message_path.stat().st_size <= RELEASE_MAX_BYTES else b""
    except FileNotFoundError:
        raise EdgeError(f"models folder {folder} has a {SIGNATURE_NAME} but no {RELEASE_NAME}; "
                        "install a signed release (edge update --bundle FILE)") from None
    except OSError as exc:
        raise EdgeError(f"{message_path} cannot be read: {exc.strerror or exc}") from None
    if not signature_valid(message, signature["signature_bytes"], key):
        signer = shown(signature.get("key_id"))
        raise EdgeError(f"models folder {folder}: {SIGNATURE_NAME} is not a valid signature of {RELEASE_NAME} by "
                        f"the key in models.release_key (key {key_id(key)}; signed with {signer}): refused; "
                        "install a release signed with this device's key")
    release = read_release(folder)
    files = release["files"]
    for child in sorted(folder.iterdir()):
        if os.path.lexists(str(child / MANIFEST_NAME)) and f"{child.name}/{MANIFEST_NAME}" not in files:
            raise EdgeError(f"model folder {child} is not part of the signed release {release['version']}: "
                            "remove it, or install a release that holds it")
    for name, entry in sorted(files.items()):
        if entry["role"] == "model" and not deep:
            continue
        path = folder / name
        try:
            actual = sha256_of(path) if path.is_file() and not path.is_symlink() else None
        except OSError:
            actual = None
        if actual == entry["sha256"]:
            continue
        if entry["role"] == "manifest" and actual is not None:
            raise _changed_manifest(folder, name.split("/")[0], files)
        state = "is missing (or not a regular file)" if actual is None else "differs from the signed release"
        raise EdgeError(f"{path} {state} (release {release['version']}); {_reinstall(folder)}")
    return Release(folder, release["version"], key_id(key), dict(release["models"]))


def release_label(folder: Path) -> str:
    """What a folder says it is, without verifying (for `edge doctor` when loading failed):
    its release version, or `unsigned` when it has no readable release.json."""
    try:
        return str(read_release(Path(folder))["version"])
    except EdgeError:
        return "unsigned"
