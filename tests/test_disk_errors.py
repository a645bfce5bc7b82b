"""Full and read-only disks: exit 3 with one line, no 0-byte or torn output file, check still judges.

Real small filesystems: a tmpfs of a few hundred KB fills up for real (ENOSPC), and remounting it
read-only gives EROFS. Mounting needs root, as the project's test machines run; without it these
tests fail loudly rather than skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from lockchaos.backends.base import InfrastructureError
from lockchaos.harness.cli import main
from lockchaos.harness.run.atomicfile import write_atomic

pytestmark = [pytest.mark.root, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"these tests mount a tmpfs and need root: {done.stderr.strip()}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount_ro(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def fill(where: Path) -> None:
    """Use up every free block of the filesystem at ``where``."""
    with (where / "filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


def assert_whole(out: Path) -> None:
    """Every output file there is complete; no temporary file is left behind."""
    assert not [p for p in out.rglob("*.tmp")], "a temporary file was left behind"
    for p in out.rglob("*.json"):
        json.loads(p.read_text())
    for p in out.rglob("*.html"):
        assert p.read_text().endswith("</html>\n"), f"{p} is torn"
    for p in out.rglob("junit.xml"):
        ET.parse(p)


def soak(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "lockchaos", "soak", "--seed", "1", "--quiet", "--out", str(out), *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


FAKE_SOAK = ("--backend", "fake", "--virtual-time", "--scenario", "soak", "--duration", "60")


@pytest.mark.parametrize("size", ["48k", "96k", "160k", "256k"])
def test_a_soak_that_fills_its_disk_exits_3_with_one_line_and_no_torn_file(size: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size) as disk:
        done = soak(disk / "run", *FAKE_SOAK, "--scenario", "all")
        assert done.returncode == 3, done.stdout + done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], done.stderr
        assert_whole(disk / "run")


def test_a_full_disk_under_a_real_server_soak_exits_3_and_stops_the_server(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "64k") as disk:
        argv = [sys.executable, "-m", "lockchaos", "soak", "--seed", "1", "--quiet", "--out", str(disk / "run"),
                "--backend", "redis", "--scenario", "soak", "--duration", "30", "--ttl-ms", "300"]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        ps = psutil.Process(proc.pid)
        servers: set[psutil.Process] = set()
        try:
            while proc.poll() is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    servers |= {c for c in ps.children(recursive=True) if c.name() == "redis-server"}
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.05)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 3, out.decode() + err.decode()
        assert len(err.decode().strip().splitlines()) == 1 and "No space left" in err.decode()
        assert servers, "the soak never started its redis-server"
        assert not [s for s in servers if s.is_running() and s.status() != psutil.STATUS_ZOMBIE]
        assert_whole(disk / "run")


def test_an_atomic_write_to_a_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "64k") as disk:
        target = disk / "index.json"
        write_atomic(target, '{"old": true}\n')
        fill(disk)
        with pytest.raises(InfrastructureError, match="No space left on device"):
            write_atomic(target, json.dumps({"new": "x" * 200_000}))
        assert target.read_text() == '{"old": true}\n'
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "index.json"]


@pytest.mark.parametrize("how", ["read-only", "full"])
def test_check_on_a_read_only_or_full_run_dir_prints_its_verdict_without_writing(
        how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "run"
        assert main(["soak", "--backend", "fake", "--virtual-time", "--scenario", "holder-crash", "--seed", "2",
                     "--quiet", "--out", str(out)]) == 0
        summary = out / "fake" / "holder-crash" / "summary.json"
        before = summary.read_bytes()
        if how == "full":
            fill(disk)
        else:
            remount_ro(disk)
        capsys.readouterr()
        assert main(["check", "--strict", str(out)]) == 0  # --strict: a summary would change if written
        printed = capsys.readouterr()
        assert "pass" in printed.out
        assert "not saved" in printed.out
        assert summary.read_bytes() == before
        assert main(["check", str(out)]) == 0  # and it can be checked again
        assert_whole(out)
        if how == "read-only":
            assert main(["report", str(out)]) == 3  # writing the report is infrastructure: one line, exit 3
            assert len(capsys.readouterr().err.strip().splitlines()) == 1
