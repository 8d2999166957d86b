"""Folders and files that only their owner may read: the home, the event log, the users file,
the session secret. Password hashes, live sessions and unblinded trial data must not be
readable by other local accounts.

Each helper makes the path private when it creates it (regardless of the umask) and tightens
an existing one that is looser, saying so in a warning (logger ``tract.files``), so a home
written by an older version is fixed the first time it is opened. A mode already stricter
(e.g. 0400) is kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("tract.files")
DIR_MODE, FILE_MODE = 0o700, 0o600
# SQLite's companions of a database file; it creates them with the database file's mode.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _tighten(path: Path, private: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~private:  # any permission the owner-only mode does not grant
        path.chmod(current & private)
        log.warning(
            "%s: permissions %04o tightened to %04o (owner only)", path, current, current & private
        )


def make_private_dirs(path: Path | str) -> Path:
    """``path`` as a folder; the folders created for it (it and its missing parents) get mode
    0700, so a new home is private from its first file on. Existing folders are left as
    they are (a store may live in a folder its owner shares on purpose)."""
    path = Path(path)
    missing, ancestor = [], path
    while not ancestor.exists() and ancestor != ancestor.parent:
        missing.append(ancestor)
        ancestor = ancestor.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
            folder.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask
        except FileExistsError:  # another process made it meanwhile
            pass
    return path


def private_dir(path: Path | str) -> Path:
    """``path`` as an existing folder with mode 0700 (and any parent it creates)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder; move it away")
    if path.exists():
        _tighten(path, DIR_MODE)
    else:
        make_private_dirs(path)
    return path


def private_file(path: Path | str) -> Path:
    """``path`` as an existing file with mode 0600 (created empty when missing)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is filtered by the umask
        os.close(fd)
    return path


def private_database(path: Path | str) -> Path:
    """A SQLite database file and whichever of its -wal, -shm, -journal files exist, 0600."""
    path = private_file(path)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        # none, or another process's SQLite removed it between our look and our stat
        with contextlib.suppress(FileNotFoundError):
            _tighten(companion, FILE_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by its owner, atomically: a temporary file, flushed to disk,
    renamed over ``path``, and the folder flushed (a crash leaves the old file or the new one)."""
    write_private_with(path, lambda tmp: tmp.write_bytes(data))


def write_private_with(path: Path, write: Callable[[Path], None]) -> None:
    """:func:`write_private` for a writer that opens the file itself (Polars writing Parquet):
    ``write(tmp)`` fills the private temporary file, so the bytes never sit in memory whole."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
