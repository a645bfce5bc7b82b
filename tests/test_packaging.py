"""lockchaos installs under one name, so a user's own ``harness``/``backends`` packages keep working."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("lockchaos-*.whl")
    return built


@pytest.mark.slow
def test_wheel_puts_only_lockchaos_at_the_top_of_site_packages(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"lockchaos"}
    assert "lockchaos/backends/base.py" in names
    assert "lockchaos/harness/contract/plugin.py" in names
    assert "lockchaos/backends/py.typed" in names


@pytest.mark.slow
def test_wheel_entry_points_name_the_namespaced_modules(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        (ep,) = [n for n in z.namelist() if n.endswith("entry_points.txt")]
        text = z.read(ep).decode()
    assert "lockchaos = lockchaos.harness.cli:entry" in text
    assert "lockchaos = lockchaos.harness.contract.plugin" in text


@pytest.mark.slow
def test_users_own_harness_and_backends_packages_run_their_pytest(tmp_path: Path) -> None:
    """The pytest11 plugin loads in every session: it must not resolve to the user's ``harness``."""
    for pkg in ("harness", "backends"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"WHO = 'user {pkg}'\n")
    (tmp_path / "test_mine.py").write_text(
        "import harness, backends\n"
        "from lockchaos.backends import open_backend\n\n"
        "def test_mine():\n"
        "    assert harness.WHO == 'user harness' and backends.WHO == 'user backends'\n"
        "    assert open_backend('fake://x').acquire('k', 'o', 1000) is not None\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_python_dash_m_lockchaos_runs_the_cli(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "lockchaos", "scenarios"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "holder-crash" in proc.stdout
