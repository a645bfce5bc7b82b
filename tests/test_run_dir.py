"""One run per run directory: two soaks started together on one --out give one run and one exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from lockchaos.harness.cli import main
from lockchaos.harness.run.rundir import MARKER, claim, default_run_dir

ROOT = Path(__file__).resolve().parents[1]
SOAK = ("soak", "--backend", "fake", "--virtual-time", "--scenario", "holder-crash", "--quiet")


def _soak(out: Path, seed: int, meet: Path) -> subprocess.Popen[bytes]:
    """A soak whose adapter waits for the other soak: both have passed every check, neither has written."""
    argv = [sys.executable, "-m", "lockchaos", "soak", "--adapter", "tests.kill_helpers:rendezvous",
            "--server", "none", "--virtual-time", "--scenario", "holder-crash", "--quiet",
            "--seed", str(seed), "--out", str(out)]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "LOCKCHAOS_RENDEZVOUS": str(meet)})


@pytest.mark.parametrize("attempt", range(4))
def test_two_soaks_started_together_on_one_out_give_one_run_and_one_exit_2(tmp_path: Path, attempt: int) -> None:
    out, meet = tmp_path / "run", tmp_path / "meet"
    meet.mkdir()
    procs = [_soak(out, 10 + attempt, meet), _soak(out, 20 + attempt, meet)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert loser[2].decode().strip().count("\n") == 0 and "--out" in loser[2].decode()
    histories = list(out.rglob("history.jsonl"))
    assert len(histories) == 1
    seeds = {orjson.loads(line)["data"]["seed"] for line in histories[0].read_bytes().splitlines()
             if b'"meta"' in line}
    assert len(seeds) == 1  # one run's events only, none interleaved from the other


def test_a_finished_run_directory_is_refused_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([*SOAK, "--seed", "1", "--out", str(out)]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main([*SOAK, "--seed", "2", "--out", str(out)]) == 2
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_claim_is_exclusive_among_threads(tmp_path: Path) -> None:
    out = tmp_path / "run"
    won: list[Path] = []
    lost: list[Exception] = []
    gate = threading.Barrier(8)

    def race() -> None:
        gate.wait()
        try:
            won.append(claim(out))
        except ValueError as exc:  # ConfigurationError
            lost.append(exc)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(won) == 1 and len(lost) == 7
    assert (out / MARKER).is_file()


def test_default_run_directories_are_unique_within_one_second(tmp_path: Path) -> None:
    dirs = [default_run_dir(tmp_path / "lockchaos-runs") for _ in range(5)]
    assert len(set(dirs)) == 5
    assert all(d.is_dir() and not any(d.iterdir()) for d in dirs)


def test_two_default_soaks_in_one_second_get_two_directories(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "lockchaos", *SOAK, "--seed", "3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    runs = sorted((tmp_path / "lockchaos-runs").iterdir())
    assert len(runs) == 2
    assert all(len(list(r.rglob("history.jsonl"))) == 1 for r in runs)


@pytest.mark.parametrize("under", ["a-file", "missing-proc"])
def test_out_where_no_directory_can_be_made_is_one_line_exit_2(tmp_path: Path, under: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    if under == "a-file":
        (tmp_path / "f").write_text("not a directory")
        out = tmp_path / "f" / "run"
    else:
        out = Path("/proc/1/lockchaos-run")  # procfs takes no new directory
    assert main(["soak", "--backend", "fake", "--scenario", "clean-handover", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot create it" in err, err
