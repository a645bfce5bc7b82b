"""Output files appear whole or not at all, and a full or read-only disk is an infrastructure failure.

A run's ``summary.json``, ``index.json``, ``index.html``, ``report.html`` and ``junit.xml`` are read
back by ``lockchaos check`` and ``report`` and by CI: a 0-byte or truncated one left by a full disk
would make every later command fail on what looks like bad input. So each is written to a temporary
file in the same directory and renamed over the old one only once it is complete; on any error the
temporary file is removed and the old file, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from lockchaos.backends.base import InfrastructureError

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM})
"""Errors that say the disk, not the run, is at fault: full, over quota, read-only, too large, not ours."""

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it


def is_disk_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def disk_error(path: Path, exc: OSError) -> InfrastructureError:
    """One line naming the file and the cause, e.g. ``cannot write run/index.json: No space left on device``."""
    return InfrastructureError(f"cannot write {path}: {exc.strerror or exc}")


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically; a disk error becomes InfrastructureError."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)  # as an ordinary open() would have made it
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())  # a delayed-allocation ENOSPC shows up here, before the rename
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if is_disk_error(exc):
            raise disk_error(path, exc) from None
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path
