"""Model sets on a device: install a signed release beside the running one, self-test it,
switch atomically, keep the old one for rollback (issue 24; `edge update`).

    store/
      releases/<version>/            one verified release each (model folders + release.json/.sig)
      releases/.<version>.previous   the release that was current before <version> (one line)
      current -> releases/<version>  what the services load (EDGE_MODELS_DIR=store/current)

An update unpacks the bundle into a hidden folder of the store, verifies it (the signature
for the profile's `models.release_key`, every file's sha256), runs the self-test (every model
file on this CPU: each opens under its manifest's contract, and every file of a model with
check inputs agrees with the fp32 file of its backend by the checks `precision: auto` uses,
edge.precision.measure), renames it into releases/, records the running set as the new one's
previous, then swaps `current` with one rename of a new symlink over it. The pair (current,
its previous) is that one link: until the rename the old set is current with its own previous,
after it the new one is, whole; a rollback is the same single rename the other way. A power
cut at any moment leaves one of the two (tests/test_apps_update.py kills the process at every
step); what it leaves half-made (a hidden folder, a temporary link) is removed by the next
update. Releases other than current and its previous are removed last.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import numpy as np

from edge.errors import EdgeError
from edge.manifest import PACKAGE_MODELS_DIR, list_manifests
from edge.models.release import RELEASE_NAME, Release, verify_release
from edge.precision import FACES_FILE, MAX_MU_DIFF, MAX_PROB_DIFF, TICKS_FILE, TOP1_FLOOR, measure

MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # unpacked; a release is about 3.5 MB today
MAX_MEMBERS = 1000
STEPS = ("unpacked", "verified", "self_tested", "placed", "previous_recorded", "current_link_made", "switched",
         "pruned")


class UpdateResult(NamedTuple):
    """What an update or a rollback did."""

    version: str
    previous: Optional[str]
    changed: bool  # False: that release was already current
    self_test: Dict[str, str]  # file -> what it measured


def _reached(step: str) -> None:
    """A named point of the switch (tests kill the process here, one step at a time)."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(str(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(str(path), "rb+") as f:
                os.fsync(f.fileno())
    for path in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def _unpack(bundle: Path, into: Path) -> None:
    """A model bundle (tar, optionally gzip) into `into`: regular files and folders only, paths
    of at most two parts inside it, within MAX_BUNDLE_BYTES and MAX_MEMBERS."""
    try:
        archive = tarfile.open(str(bundle), "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise EdgeError(f"model bundle {bundle} cannot be read as a tar file: {exc}") from None
    with archive:
        total = 0
        members = []
        try:
            for count, member in enumerate(archive):
                if count >= MAX_MEMBERS:
                    raise EdgeError(f"model bundle {bundle} holds more than {MAX_MEMBERS} entries; refused")
                name = member.name[2:] if member.name.startswith("./") else member.name
                parts = name.rstrip("/").split("/")
                if name in (".", "./"):
                    continue
                if (len(parts) > 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
                        or not (member.isfile() or member.isdir())):
                    raise EdgeError(f"model bundle {bundle}: entry {member.name!r} is not a plain file of a "
                                    "release (links, devices and paths outside it are refused)")
                total += member.size
                if total > MAX_BUNDLE_BYTES:
                    raise EdgeError(f"model bundle {bundle} unpacks to more than {MAX_BUNDLE_BYTES >> 20} MB; refused")
                members.append((name, member))
            for name, member in members:
                target = into.joinpath(*name.rstrip("/").split("/"))
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                with source, open(str(target), "xb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(str(target), 0o644)
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise EdgeError(f"model bundle {bundle} is damaged: {exc}") from None


def self_test(folder: Path, threads: int = 1) -> Dict[str, str]:
    """Every model file of a release on this CPU: each opens under its manifest's contract;
    for a model with check inputs, every file agrees with its backend's fp32 file (the floors
    of `precision: auto`). Returns file -> figure; one-line EdgeError on the first failure."""
    report = {}
    for name, manifest in sorted(list_manifests(str(folder)).items()):
        has_checks = (manifest.folder / FACES_FILE).is_file() or (manifest.folder / TICKS_FILE).is_file()
        if not has_checks:
            for entry in manifest.files:
                manifest.open(entry, threads=threads)
                report[f"{name}/{entry['file']}"] = "opens"
            continue
        for backend in sorted({e["format"] for e in manifest.files}):
            for file, result in sorted(measure(manifest, backend, threads).items()):
                figure = _figure(result)
                if result.get("skipped") or not result["meets_floor"] or not _finite(result):
                    why = result.get("skipped") or figure
                    raise EdgeError(f"self-test failed: {name}/{file} on this CPU: {why}; the update is refused "
                                    "and the running models stay")
                report[f"{name}/{file}"] = figure
    return report


def _figure(result: dict) -> str:
    if "top1_agreement" in result:
        return (f"top-1 {result['top1_agreement']:.1%} (floor {TOP1_FLOOR:.0%}), max prob diff "
                f"{result['max_abs_prob_diff']:.3f} (< {MAX_PROB_DIFF}) vs fp32")
    if "max_abs_mu_diff" in result:
        return f"max PHQ-8 diff {result['max_abs_mu_diff']:.3f} (<= {MAX_MU_DIFF}) vs fp32"
    return "no figure"


def _finite(result: dict) -> bool:
    return all(np.isfinite(v) for k, v in result.items() if k.startswith("max_abs") or k == "top1_agreement")


class ModelStore:
    """The model sets of one device under `root` (see the module docstring)."""

    def __init__(self, root: str):
        self.root = Path(root)
        self.releases = self.root / "releases"
        self.current = self.root / "current"

    # ----- reading ------------------------------------------------------------------
    def _target(self, link: Path) -> Optional[str]:
        """The version a link points at (None when absent or not into releases/)."""
        try:
            target = os.readlink(str(link))
        except OSError:
            return None
        parts = Path(target).parts
        return parts[1] if len(parts) == 2 and parts[0] == "releases" else None

    def _previous_file(self, version: str) -> Path:
        return self.releases / f".{version}.previous"

    def status(self) -> Dict[str, Optional[str]]:
        """{'current': version, 'previous': version} (None where there is none)."""
        current = self._target(self.current)
        previous = None
        if current is not None:
            try:
                previous = self._previous_file(current).read_text().strip() or None
            except OSError:
                previous = None
        if previous is not None and not (self.releases / previous).is_dir():
            previous = None
        return {"current": current, "previous": previous}

    def installed(self) -> List[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _record_previous(self, version: str, previous: Optional[str]) -> None:
        """Write releases/.<version>.previous whole (temporary + rename); `version` is not current."""
        path = self._previous_file(version)
        temporary = path.with_name(path.name + ".tmp")
        with open(str(temporary), "w") as f:
            f.write((previous or "") + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(str(temporary), str(path))
        _fsync_dir(self.releases)

    # ----- changing -----------------------------------------------------------------
    def _prepare(self) -> None:
        self.releases.mkdir(parents=True, exist_ok=True)
        os.chmod(str(self.root), 0o755)
        # Leftovers of an update that was cut off: half-unpacked folders, temporary links.
        for path in self.root.iterdir():
            if path.name.startswith(".incoming-"):
                shutil.rmtree(str(path), ignore_errors=True)
            elif path.name.startswith(".") and path.name.endswith(".link"):
                path.unlink()
        for path in self.releases.glob(".*.previous.tmp"):
            path.unlink()

    def _link(self, name: Path, version: str) -> None:
        """Point `name` at releases/<version> with one rename (a new link replaces the old)."""
        temporary = self.root / f".{name.name}.link"
        if os.path.lexists(str(temporary)):
            temporary.unlink()
        os.symlink(os.path.join("releases", version), str(temporary))
        _reached(f"{name.name}_link_made")
        os.replace(str(temporary), str(name))
        _fsync_dir(self.root)

    def install_bundle(self, bundle: str, key: str, threads: int = 1) -> UpdateResult:
        """Install a model bundle (`python -m export release`): see the module docstring."""
        path = Path(bundle)
        if not path.is_file():
            raise EdgeError(f"model bundle {bundle} does not exist")
        self._prepare()
        staging = self.root / f".incoming-{os.getpid()}"
        staging.mkdir()
        try:
            _unpack(path, staging)
            _reached("unpacked")
            return self._install(staging, key, threads)
        finally:
            shutil.rmtree(str(staging), ignore_errors=True)

    def install_folder(self, folder: str, key: str, threads: int = 1) -> UpdateResult:
        """Install a models folder as a release (the package's own: `edge update --shipped`)."""
        source = Path(folder or PACKAGE_MODELS_DIR)
        self._prepare()
        staging = self.root / f".incoming-{os.getpid()}"
        try:
            skipped = shutil.ignore_patterns("*.py", "__pycache__", "*.md", "*.npz")  # code, notes, training weights
            shutil.copytree(str(source), str(staging), ignore=skipped)
            _reached("unpacked")
            return self._install(staging, key, threads)
        finally:
            shutil.rmtree(str(staging), ignore_errors=True)

    def _install(self, staging: Path, key: str, threads: int) -> UpdateResult:
        release: Release = verify_release(staging, key, deep=True)
        if release.version is None:
            raise EdgeError("models.release_key is none: an update must be signed; set the care team's key "
                            "(or 'shipped') in the profile")
        _reached("verified")
        status = self.status()
        version = release.version
        target = self.releases / version
        if target.exists():
            verify_release(target, key, deep=True)  # a damaged copy of the same version is an error, not a no-op
            if (target / RELEASE_NAME).read_bytes() != (staging / RELEASE_NAME).read_bytes():
                raise EdgeError(f"release {version} is installed in {target} with other files; a release "
                                "name is used once: give the new one another --version")
            if status["current"] == version:
                return UpdateResult(version, status["previous"], False, {})
        report = self_test(staging, threads)
        _reached("self_tested")
        if not target.exists():
            _fsync_tree(staging)
            os.rename(str(staging), str(target))
            _fsync_dir(self.releases)
        _reached("placed")
        old = status["current"]
        self._record_previous(version, old)
        _reached("previous_recorded")
        self._link(self.current, version)
        _reached("switched")
        self._prune()
        _reached("pruned")
        return UpdateResult(version, old, True, report)

    def rollback(self, key: str) -> UpdateResult:
        """Swap current and previous (after verifying the previous set); one line when there is none."""
        status = self.status()
        old, back = status["current"], status["previous"]
        if back is None or not (self.releases / back).is_dir():
            raise EdgeError(f"no previous model set in {self.root} to roll back to (current: {old or 'none'})")
        self._prepare()
        verify_release(self.releases / back, key, deep=True)
        self._record_previous(back, old)  # so that a second rollback comes back here
        _reached("previous_recorded")
        self._link(self.current, back)
        return UpdateResult(back, old, True, {})

    def _prune(self) -> None:
        keep = {v for v in self.status().values() if v}
        for version in self.installed():
            if version not in keep:
                shutil.rmtree(str(self.releases / version), ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    self._previous_file(version).unlink()

