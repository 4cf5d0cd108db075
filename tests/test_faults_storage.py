"""Storage faults under `edge run`: a session is reported saved only when its row and its
summary are on disk; otherwise the run names what was lost and where the rest went and
exits 4, and nothing written is ever an empty or truncated file.

Real parts: a real tmpfs (mounted read-only mid-session, or full), a real second sqlite3
process holding the write lock, an unprivileged user facing a read-only database file;
where the machine cannot give a part (no mount permission), the test skips and the
injected-OSError tests below cover the same write sites.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from faults_helpers import (
    DEMO_VIDEO,
    DEMO_WAV,
    as_user,
    assert_no_partial_files,
    edge_cmd,
    edge_run,
    fill,
    integrity,
    remount,
    session_ids,
    small_tmpfs,
    write_profile,
)

from edge.cli import main
from edge.store import files as store_files
from edge.store.results import ResultStore


def summaries(folder: Path):
    return sorted(Path(folder).glob("*.json"))


def assert_reported_lost(proc_out: str, proc_err: str, *lost: str) -> None:
    """Not 'complete and saved': stderr names each lost output and says where the rest went."""
    first = proc_out.splitlines()[0] if proc_out else ""
    assert "NOT SAVED" in first, first  # the headline does not read as a saved, complete session
    for name in lost:
        assert name in proc_err, (name, proc_err)
    assert "Traceback" not in proc_err


# ----- a real tmpfs -------------------------------------------------------------------
@pytest.mark.slow
def test_output_folder_made_read_only_mid_session(tmp_path):
    with small_tmpfs(tmp_path) as mnt:
        out = mnt / "out"
        prof = write_profile(tmp_path, out)
        cmd = edge_cmd("run", "--config", str(prof), "--video", DEMO_VIDEO, "--audio", DEMO_WAV, "--duration", "3")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.8)  # models loaded, the session running in real time
        remount(mnt, "ro")
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 4, stderr
        assert_reported_lost(stdout, stderr, "database row", "summary")
        assert "printed above" in stderr  # where the rest went: only the printed summary is left
        remount(mnt, "rw")
        assert summaries(out) == [] and session_ids(out / "sessions.sqlite") == []
        assert_no_partial_files(out)


@pytest.mark.slow
def test_disk_full_loses_nothing_silently_and_leaves_no_empty_json(tmp_path):
    with small_tmpfs(tmp_path, "2m") as mnt:
        out = mnt / "out"
        prof = write_profile(tmp_path, out, output={"tick_jsonl": True})
        first = edge_run(prof)
        assert first.returncode == 0, first.stderr  # the database exists; now the disk fills up
        fill(mnt)
        proc = edge_run(prof)
        assert proc.returncode == 4, proc.stderr
        assert_reported_lost(proc.stdout, proc.stderr, "summary")
        assert_no_partial_files(out)
        assert len(summaries(out)) == 1
        # Room again (SQLite's checker needs room for its -shm too): intact, and the next session saves.
        (mnt / "filler").unlink()
        assert integrity(out / "sessions.sqlite") == "ok"
        again = edge_run(prof)
        assert again.returncode == 0, again.stderr
        assert len(session_ids(out / "sessions.sqlite")) == 2 + ("database row" not in proc.stderr)
        assert_no_partial_files(out)


@pytest.mark.slow
def test_disk_full_with_room_for_the_row_but_not_the_summary(tmp_path):
    """A nearly full disk: whichever of row and summary fails is named; a summary that was
    written names the lost row, a row that was written has a summary or an error."""
    with small_tmpfs(tmp_path, "2m") as mnt:
        out = mnt / "out"
        prof = write_profile(tmp_path, out)
        assert edge_run(prof).returncode == 0
        for leave in (2048, 8192, 20000):
            fill(mnt, leave_bytes=leave)
            proc = edge_run(prof)
            assert proc.returncode in (0, 4), proc.stderr
            if proc.returncode == 0:
                assert "NOT SAVED" not in proc.stdout
            else:
                assert_reported_lost(proc.stdout, proc.stderr)
            assert_no_partial_files(out)
            (mnt / "filler").unlink()
            assert integrity(out / "sessions.sqlite") == "ok"
        for path in summaries(out):  # every summary on disk names its row, or says it was lost
            summary = json.loads(path.read_text())
            lost_row = any("database row NOT saved" in w for w in summary["warnings"])
            assert lost_row or summary["session_id"] in session_ids(out / "sessions.sqlite")


# ----- the database -------------------------------------------------------------------
def _hold_exclusive_lock(db: Path) -> subprocess.Popen:
    """A real second process (the sqlite3 shell) that takes the write lock and keeps it."""
    sqlite_bin = shutil.which("sqlite3")
    if sqlite_bin is None:
        pytest.skip("the sqlite3 command-line shell is not installed (apt-get install sqlite3)")
    holder = subprocess.Popen([sqlite_bin, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN EXCLUSIVE;\nINSERT INTO sessions (session_id, started_utc, duration_s, complete, "
                       "demo_weights, summary_json) VALUES ('holder', 'x', 0, 0, 0, '{}');\nSELECT 'locked';\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_database_locked_by_another_process_longer_than_the_timeout(tmp_path, capsys, monkeypatch):
    prof = write_profile(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--config", str(prof), "--video", DEMO_VIDEO, "--duration", "0.5", "--fast"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(ResultStore.__init__, "__defaults__", (0.5,))  # the busy timeout, shortened
    holder = _hold_exclusive_lock(out / "sessions.sqlite")
    try:
        code = main(["run", "--config", str(prof), "--video", DEMO_VIDEO, "--duration", "0.5", "--fast"])
        captured = capsys.readouterr()
    finally:
        holder.stdin.write("ROLLBACK;\n.quit\n")
        holder.stdin.close()
        holder.wait(timeout=10)
    assert code == 4
    assert_reported_lost(captured.out, captured.err, "database row", "locked")
    saved = [json.loads(p.read_text()) for p in summaries(out)]
    lost_one = [s for s in saved if any("database row NOT saved" in w for w in s["warnings"])]
    assert len(lost_one) == 1 and lost_one[0]["session_id"] not in session_ids(out / "sessions.sqlite")
    assert str(summaries(out)[0].parent) in captured.err  # where the rest went: the summary file
    assert main(["run", "--config", str(prof), "--video", DEMO_VIDEO, "--duration", "0.5", "--fast"]) == 0
    assert len(session_ids(out / "sessions.sqlite")) == 2


@pytest.fixture
def shared_folder():
    """A folder the unprivileged user owns (the pytest tmp tree is root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="edge-faults-"))
    os.chmod(str(folder), 0o755)
    if os.geteuid() == 0:
        os.chown(str(folder), 65534, 65534)
    yield folder
    shutil.rmtree(str(folder), ignore_errors=True)


def test_read_only_database_leaves_no_read_only_shm_behind(shared_folder):
    """SQLite gives -wal and -shm the database file's mode: opening a read-only database
    used to create a read-only -shm, and every later writer failed with 'attempt to write
    a readonly database' even after the database was writable again."""
    from test_store import summary

    folder = shared_folder
    db = folder / "s.sqlite"
    with as_user():
        store = ResultStore(str(db))
        store.save_session(summary("a"))
        store.close()
        os.chmod(str(db), 0o400)
        with pytest.raises(Exception, match="read-only|readonly"):
            store = ResultStore(str(db))
            store.save_session(summary("b"))
        os.chmod(str(db), 0o600)
        for side in folder.glob("s.sqlite-*"):
            os.chmod(str(side), 0o400)  # as an older version, or another tool, left them
        for sid in ("c", "d"):
            store = ResultStore(str(db))
            store.save_session(summary(sid))
            store.close()
        store = ResultStore(str(db))
        assert [s["session_id"] for s in store.sessions()] == ["a", "c", "d"]
        store.close()


def test_edge_run_with_a_read_only_database_exits_4_and_the_next_run_saves(shared_folder, capsys):
    folder = shared_folder
    prof = write_profile(folder, folder / "out")
    args = ["run", "--config", str(prof), "--video", DEMO_VIDEO, "--duration", "0.5", "--fast"]
    assert main(args) == 0  # as root: loads every module this test needs
    capsys.readouterr()
    out = folder / "out"
    db = out / "sessions.sqlite"
    for path in [out] + list(out.iterdir()):
        os.chown(str(path), 65534, 65534) if os.geteuid() == 0 else None
    with as_user():
        os.chmod(str(db), 0o400)
        code = main(args)
        captured = capsys.readouterr()
        assert code == 4
        assert_reported_lost(captured.out, captured.err, "database row", "read-only")
        os.chmod(str(db), 0o600)
        assert main(args) == 0
        captured = capsys.readouterr()
        assert "NOT SAVED" not in captured.out
    assert len(session_ids(db)) == 2 and integrity(db) == "ok"
    assert_no_partial_files(out)


# ----- an injected OSError at each write site (runs everywhere) ----------------------
class _Failing:
    """A file whose write/flush raises `err` once `after` bytes were written."""

    def __init__(self, handle, err, after=0):
        self._h, self._err, self._left = handle, err, after

    def write(self, data):
        if len(data) > self._left:
            self._h.write(data[:self._left])
            self._left = 0
            raise OSError(self._err, os.strerror(self._err))
        self._left -= len(data)
        return self._h.write(data)

    def __getattr__(self, name):
        return getattr(self._h, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._h.close()


@pytest.mark.parametrize("site", ["summary write", "summary fsync", "summary rename", "database row",
                                  "tick lines", "features"])
def test_enospc_at_each_write_site(tmp_path, capsys, monkeypatch, site):
    from edge.engine import outputs

    prof = write_profile(tmp_path, output={"tick_jsonl": True})
    out = tmp_path / "out"
    features = tmp_path / "features.npz"
    enospc = OSError(errno.ENOSPC, "No space left on device")
    real_open = store_files.open_private

    def failing_open(path, mode="w"):
        handle = real_open(path, mode)
        name = Path(path).name
        if (site == "summary write" and name.endswith(".tmp") and ".json." in name) or \
                (site == "tick lines" and ".ticks.jsonl" in name):
            return _Failing(handle, errno.ENOSPC, after=100)
        return handle

    monkeypatch.setattr(store_files, "open_private", failing_open)
    monkeypatch.setattr(outputs, "open_private", failing_open)
    if site == "summary fsync":
        real_fsync = os.fsync

        def fsync(fd):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.endswith(".tmp") and ".json." in target:
                raise enospc
            return real_fsync(fd)
        monkeypatch.setattr(store_files.os, "fsync", fsync)
    if site == "summary rename":
        def replace(src, dst):
            raise enospc
        monkeypatch.setattr(store_files.os, "replace", replace)
    if site == "database row":
        def save_session(self, summary):
            raise sqlite3.OperationalError("database or disk is full")
        monkeypatch.setattr(ResultStore, "save_session", save_session)
    if site == "features":
        from edge.store import features_file

        def append(self, vector):
            raise enospc
        monkeypatch.setattr(features_file.SessionFeatureWriter, "append", append)
    code = main(["run", "--config", str(prof), "--video", DEMO_VIDEO, "--audio", DEMO_WAV, "--duration", "1",
                 "--fast", "--save-features", str(features)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert_no_partial_files(out)
    assert not features.exists() or features.stat().st_size > 0
    if site.startswith("summary"):
        assert code == 4
        assert_reported_lost(captured.out, captured.err, "summary", "No space left")
        assert summaries(out) == [] and len(session_ids(out / "sessions.sqlite")) == 1
        assert str(out / "sessions.sqlite") in captured.err  # where the rest went
    elif site == "database row":
        assert code == 4
        assert_reported_lost(captured.out, captured.err, "database row", "disk is full")
        assert len(summaries(out)) == 1 and session_ids(out / "sessions.sqlite") == []
    elif site == "features":
        assert code == 4  # asked-for features that were not saved are a lost output
        assert_reported_lost(captured.out, captured.err, "features")
        assert not features.exists()
    else:  # tick lines: a stream that stopped; the session (row + summary) is saved and says so
        assert code == 0
        summary = json.loads(summaries(out)[0].read_text())
        assert any("tick lines stopped" in w for w in summary["warnings"])
