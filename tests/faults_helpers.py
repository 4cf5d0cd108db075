"""Shared pieces of the fault, fuzz and exposure tests (tests/test_faults*.py, test_fuzz*.py,
test_exposure.py, test_apps_run_signals.py): a real `edge run` in a subprocess, a profile in a
temporary folder, a small real tmpfs, and the checks every fault must pass."""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO_VIDEO = str(ROOT / "edge" / "samples" / "demo_face.mp4")
DEMO_WAV = str(ROOT / "edge" / "samples" / "demo_speech.wav")


def write_profile(folder: Path, out: Optional[Path] = None, **sections) -> Path:
    """A profile whose outputs go to `out` (default folder/out); `sections` override whole
    sections' keys, e.g. output={"tick_jsonl": True}."""
    out = Path(out or folder / "out")
    data: Dict = {"profile": "faults", "output": {"dir": str(out), "database": str(out / "sessions.sqlite")}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = Path(folder) / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def edge_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "edge", *args]


def edge_run(profile: Path, *extra: str, duration: float = 1.0, fast: bool = True, timeout: float = 120,
             env: Optional[Dict] = None) -> subprocess.CompletedProcess:
    """A real `edge run` on the demo sample, in its own process."""
    args = ["run", "--config", str(profile), "--video", DEMO_VIDEO, "--audio", DEMO_WAV,
            "--duration", str(duration), *extra]
    if fast:
        args.append("--fast")
    return subprocess.run(edge_cmd(*args), cwd=str(ROOT), capture_output=True, text=True, timeout=timeout,
                          env=env)


def assert_one_line_error(proc, *needles: str, code: int = 2) -> None:
    err = proc.stderr
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and err.count("\n") == 1, err[-2000:]
    for needle in needles:
        assert needle in err, (needle, err)


def assert_no_partial_files(folder: Path) -> None:
    """Nothing under `folder` is an empty or unparsable summary, or a leftover temporary."""
    if not Path(folder).is_dir():
        return
    for path in Path(folder).rglob("*"):
        if path.name.endswith(".tmp") or path.name.endswith(".part"):
            raise AssertionError(f"temporary left behind: {path}")
        if path.suffix == ".json":
            assert path.stat().st_size > 0, f"0-byte {path}"
            json.loads(path.read_text())  # a truncated file fails here


def integrity(db: Path) -> str:
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def session_ids(db: Path) -> List[str]:
    if not Path(db).exists():
        return []
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return [r[0] for r in con.execute("SELECT session_id FROM sessions")]
    finally:
        con.close()


def _try_mount(target: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target)],
                          capture_output=True, text=True)
    return proc.returncode == 0


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "8m"):
    """A real tmpfs of `size` mounted at folder/mnt (root only); skips where mounting is not allowed."""
    target = Path(folder) / "mnt"
    target.mkdir()
    if not _try_mount(target, size):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); "
                    "the injected-OSError tests cover the same write sites")
    try:
        yield target
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(target)], capture_output=True)
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def remount(target: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(target)], check=True, capture_output=True)


def fill(target: Path, leave_bytes: int = 0) -> None:
    """Fill a filesystem until fewer than `leave_bytes` are free (ENOSPC for anything bigger)."""
    filler = Path(target) / "filler"
    with open(str(filler), "ab") as f:
        while True:
            st = os.statvfs(str(target))
            free = st.f_bavail * st.f_frsize
            if free <= leave_bytes:
                break
            try:
                f.write(b"\0" * min(1 << 20, max(4096, free - leave_bytes)))
                f.flush()
            except OSError:
                break


@contextlib.contextmanager
def as_user(uid: int = 65534, gid: int = 65534):
    """Run the block with another effective uid (root only): file modes then apply, as
    they do for the unprivileged user a device runs as. Not root: modes already apply."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
