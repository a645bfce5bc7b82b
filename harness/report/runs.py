"""The runs of a soak's top directory: from its ``index.json``, or found by their files when it has none."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness.checkers.verdicts import SUMMARY_FILE, judge
from lockchaos.harness.report.loading import read_summary, well_formed_checks
from lockchaos.harness.run import interrupts
from lockchaos.harness.run.history import HISTORY_FILE, MAX_LINE_BYTES, parse_record

INDEX_FILE = "index.json"


@dataclass(frozen=True, slots=True)
class RunEntry:
    backend: str
    scenario: str
    status: str  # ran | skipped | unknown
    reason: str
    directory: Path
    rel: str  # the directory relative to the soak's top directory, with "/"
    summary: dict[str, Any]

    @property
    def history(self) -> Path:
        return self.directory / HISTORY_FILE


@dataclass(frozen=True, slots=True)
class Soak:
    runs: tuple[RunEntry, ...]
    infrastructure_failures: tuple[str, ...]
    seed: object
    finished_at: str


def is_soak_dir(path: Path) -> bool:
    return path.is_dir() and ((path / INDEX_FILE).is_file() or any(_run_dirs(path)))


def _run_dirs(top: Path) -> list[Path]:
    found = {p.parent for p in top.rglob(HISTORY_FILE)} | {p.parent for p in top.rglob(SUMMARY_FILE)}
    return sorted(d for d in found if d != top)


def split_infrastructure(line: str) -> tuple[str, str, str]:
    """``backend/scenario: message``, as the soak records an infrastructure failure."""
    where, _, message = line.partition(": ")
    backend, _, scenario = where.rpartition("/")
    return (backend, scenario, message or line) if backend else ("infrastructure", where, message or line)


def read_index(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / INDEX_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("runs", []), list) \
                or not isinstance(data.get("infrastructure_failures", []), list):
            raise ValueError("not an object with a list of runs")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(f"{path}: not a readable soak index: {exc}") from None
    return data


def discover(out_dir: Path) -> Soak:
    """Every run under ``out_dir`` (a soak's top directory); a ConfigurationError when there is none."""
    if not out_dir.is_dir():
        raise ConfigurationError(f"{out_dir}: no such directory")
    index = read_index(out_dir)
    runs: list[RunEntry] = []
    if index is not None:
        for r in index.get("runs", []):
            if not isinstance(r, dict) or not isinstance(r.get("dir"), str):
                raise ConfigurationError(f"{out_dir / INDEX_FILE}: a run without its directory")
            directory = out_dir / r["dir"]
            if "\x00" in r["dir"] or not _inside(directory, out_dir):  # reports are written into it
                raise ConfigurationError(f"{out_dir / INDEX_FILE}: run directory {r['dir']!r} is not under "
                                         f"{out_dir}")
            summary = read_summary(directory / SUMMARY_FILE)
            runs.append(RunEntry(str(r.get("backend", summary.get("backend", "?"))),
                                 str(r.get("scenario", summary.get("scenario", "?"))),
                                 str(r.get("status", summary.get("status", "unknown"))),
                                 str(r.get("reason") or summary.get("reason") or ""), directory,
                                 Path(r["dir"]).as_posix(), summary))
        infra = tuple(str(x) for x in index.get("infrastructure_failures", []))
        return Soak(tuple(runs), infra, index.get("seed"), str(index.get("finished_at", "")))
    for directory in _run_dirs(out_dir):
        summary = read_summary(directory / SUMMARY_FILE)
        meta = _meta(directory / HISTORY_FILE)
        status = summary.get("status") or ("ran" if (directory / HISTORY_FILE).is_file() else "unknown")
        runs.append(RunEntry(str(summary.get("backend", meta.get("backend", directory.parent.name))),
                             str(summary.get("scenario", meta.get("scenario", directory.name))),
                             str(status), str(summary.get("reason") or ""), directory,
                             directory.relative_to(out_dir).as_posix(), summary))
    if not runs:
        raise ConfigurationError(f"{out_dir}: no {INDEX_FILE} and no run directories here")
    seeds = {r.summary.get("seed") for r in runs}
    return Soak(tuple(runs), (), seeds.pop() if len(seeds) == 1 else None, "")


def _inside(directory: Path, top: Path) -> bool:
    """Whether ``directory`` (symlinks resolved) is ``top`` or under it: an index naming ``/etc`` or
    ``../..`` must not make ``report`` write there."""
    try:
        return directory.resolve().is_relative_to(top.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _meta(history: Path) -> dict[str, Any]:
    """The meta record (the first line) of a history, or {}."""
    if not history.is_file():
        return {}
    try:
        with history.open("rb") as fh:
            rec = parse_record(fh.readline(MAX_LINE_BYTES + 1))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return {}
    data = getattr(rec, "data", None)
    return data if getattr(rec, "kind", None) == "meta" and isinstance(data, dict) else {}


def checks_of(run: RunEntry) -> dict[str, Any] | None:
    """The run's verdicts (``Judgement.to_dict`` layout): from its summary, or judged now; None if none."""
    checks = run.summary.get("checks")
    if well_formed_checks(checks):
        assert isinstance(checks, dict)
        return checks
    if not run.history.is_file():
        return None
    try:
        return interrupts.within_grace(lambda: judge(run.history).to_dict(), "checks")
    except interrupts.Overdue:  # a stopped soak's index: this run's verdict stays unknown
        return None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{run.history}: not a readable lockchaos history: {exc}") from None
