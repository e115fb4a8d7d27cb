"""Writing a file so that readers (and a resumed run) never see half of it.

`atomic_write` is the one place the project writes a file atomically: the bytes go to a temporary
file in the same folder (so the final rename stays on one filesystem), are flushed and fsynced,
and only then is the temporary file renamed over the target. A crash leaves either the old file
or the new one, never a torn mix, plus at most a hidden ``.<name>.*.tmp`` file that is removed
when the write fails inside Python.

A full disk (ENOSPC, or a quota: EDQUOT) is re-raised as an OSError naming the target file, which
`run_cli` reports as one ``error:`` line saying the disk is full (`is_disk_full`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

FileContent = Union[str, bytes, Callable[[BinaryIO], object]]
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` is the operating system saying the disk (or the user's quota) is full."""
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def atomic_write(path: str | Path, content: FileContent) -> Path:
    """Write `content` to `path` atomically and return `path`.

    `content` is the text (UTF-8) or bytes of the file, or a function that writes them to the
    binary file handle it is given (``lambda fh: np.save(fh, array)``), for writers that stream.
    Parent folders are created. The new file gets the usual permissions (0666 less the umask),
    not the 0600 of a temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if is_disk_full(err) and err.filename is None:  # a failed write names no file; say which one
            raise OSError(err.errno, os.strerror(err.errno), str(path)) from err
        raise
    _fsync_folder(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks; of a folder, of its files' bytes in sorted
    path order (the one checksum used by checkpoints, exports, k-fold state and check_setup)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
