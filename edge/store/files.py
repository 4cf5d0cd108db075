"""Writing health results to disk: owner-only, whole or not at all.

Every file the product stores (summaries, tick lines, features, the database) holds
health results, so files are created 0600 and folders 0700 whatever the umask, and a
finished file appears only once it is complete and on disk: it is written to a
temporary name in the same folder, fsynced, renamed over the target, and the folder is
fsynced. A failure (disk full, read-only folder) removes the temporary file and raises
OSError: never a truncated or empty file under the real name.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Union

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Union[str, Path]) -> Path:
    """Create `path` and its missing parents, each owner-only; existing folders are left as they are."""
    path = Path(path)
    if not path.is_dir():
        missing = []
        parent = path
        while not parent.is_dir() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):  # every folder made here, not only the last, is owner-only
            try:
                folder.mkdir(mode=DIR_MODE)
            except FileExistsError:  # made meanwhile by another process: left as it is
                continue
            os.chmod(str(folder), DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def open_private(path: Union[str, Path], mode: str = "w"):
    """Open a new (or truncated) file created 0600 whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(str(path), flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode through O_CREAT
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:  # some filesystems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Union[str, Path], write: Callable, binary: bool = False) -> Path:
    """Write a file through `write(f)` to a temporary name, fsync, rename over `path`.

    OSError when anything fails; the target is then untouched and no temporary is left.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open_private(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(str(tmp), str(path))
    except BaseException:
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text))


def part_path(path: Union[str, Path]) -> Path:
    """Where a file written over a whole session (tick lines, features) grows until it is
    complete: `.<name>.<pid>.part` next to it, renamed to `path` at the end (publish_part)
    or removed; the pid lets the next start remove what a killed process left."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.part")


def publish_part(part: Union[str, Path], path: Union[str, Path]) -> Path:
    """Rename a finished (closed, fsynced) part file to its real name and fsync the folder."""
    os.replace(str(part), str(path))
    _fsync_dir(Path(path).parent)
    return Path(path)


def remove_quietly(path: Union[str, Path]) -> None:
    try:
        os.unlink(str(path))
    except OSError:
        pass


# write_atomic's temporaries (.<name>.<pid>.tmp) and part files (.<name>.<pid>.part)
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.(?:tmp|part)$")


def remove_stale_temporaries(folder: Union[str, Path]) -> int:
    """Delete write_atomic temporaries and part files left in `folder` by a process that no
    longer runs (a power cut or SIGKILL mid-session); the number removed. Live writers'
    files stay."""
    removed = 0
    try:
        names = os.listdir(str(folder))
    except OSError:
        return 0
    for name in names:
        match = _TEMPORARY.match(name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its writer still runs
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError, ValueError):
            continue  # another user's process, or not a pid: not ours to judge
        try:
            os.unlink(os.path.join(str(folder), name))
            removed += 1
        except OSError:
            pass
    return removed
