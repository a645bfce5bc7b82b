"""One run per run directory: a soak claims its ``--out`` atomically before it writes anything there.

Checking that a directory is empty and then writing into it is a race: two soaks started together
both see it empty and interleave one ``history.jsonl``. The claim is the exclusive creation of a
marker file (``O_CREAT | O_EXCL``), which exactly one process can win; the default directory,
named for the second the run started, is itself created exclusively, with a suffix on collision.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness.run.atomicfile import disk_error, is_disk_error

MARKER = ".lockchaos-run"
DEFAULT_PARENT = Path("lockchaos-runs")
_MAX_SUFFIX = 1000


def default_run_dir(parent: Path = DEFAULT_PARENT) -> Path:
    """A new, empty ``parent/<timestamp>`` that no other run can also get, even within one second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, _MAX_SUFFIX + 1):
            candidate = parent / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as exc:
        if is_disk_error(exc):
            raise disk_error(parent, exc) from None
        raise ConfigurationError(f"cannot create a run directory in {parent}: {exc.strerror or exc}") from None
    raise ConfigurationError(f"{parent}: {_MAX_SUFFIX} runs already started in second {stamp}; give --out")


def claim(out: Path) -> Path:
    """Make ``out`` this process's run directory, or a ConfigurationError if another run has it."""
    try:
        if out.exists() and not out.is_dir():
            raise ConfigurationError(f"--out {out} exists and is not a directory")
        if out.is_symlink() and not out.exists():  # mkdir would say it exists: "in use" would mislead
            raise ConfigurationError(f"--out {out} is a symlink to nothing (dangling, or a loop)")
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigurationError(f"--out {out} is in use by another run (or holds one): give an empty directory") \
            from None
    except OSError as exc:
        if is_disk_error(exc):
            raise disk_error(out, exc) from None
        # Not a full disk: a path nobody can make a directory at (/proc, a missing mount, no permission).
        raise ConfigurationError(f"--out {out}: cannot create it: {exc.strerror or exc}") from None
    try:
        os.write(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
    except OSError as exc:
        if is_disk_error(exc):
            raise disk_error(out / MARKER, exc) from None
        raise
    finally:
        os.close(fd)
    others = [p.name for p in out.iterdir() if p.name != MARKER]
    if others:  # files of an older run (or a stranger's) that predate the claim
        (out / MARKER).unlink()
        raise ConfigurationError(f"--out {out} exists and is not an empty directory")
    return out
