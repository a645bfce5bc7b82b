"""A password in ``--url`` appears in no file of a run directory and in neither output stream.

The Redis here is a real ``redis-server`` with ``--requirepass``, started on a free loopback port by
the tests and stopped after them; every command runs as the user runs it (``python -m lockchaos``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from lockchaos.backends.base import Lease
from lockchaos.backends.redaction import redact_text, redact_url
from lockchaos.harness.cli.commandline import _build_parser
from lockchaos.harness.report.html import reproduce_command
from lockchaos.harness.servers.process import RedisServer
from tests.broken_adapters import CorrectAdapter

pytestmark = [pytest.mark.redis, pytest.mark.etcd]

REPO = Path(__file__).resolve().parent.parent
SECRET = f"pw-{uuid.uuid4().hex}"
"""Unique per test session, so that finding it anywhere can only mean a leak."""


class PasswordRedis(RedisServer):
    """A private redis-server that refuses every client without ``SECRET``."""

    def _args(self, workdir: Path) -> list[str]:
        return [*super()._args(workdir), "--requirepass", SECRET]

    def _ready(self) -> bool:
        client = redis.Redis(host=self.host, port=self.port, password=SECRET, socket_timeout=0.25,
                             socket_connect_timeout=0.25)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@pytest.fixture(scope="module")
def server() -> Iterator[PasswordRedis]:
    with PasswordRedis() as srv:
        yield srv


def quotes_its_url(url: str) -> object:
    """An adapter factory whose error quotes the URL it was given, as many client libraries do."""
    raise ConnectionError(f"could not connect to {url}")


class _QuotesItsUrlOnAcquire(CorrectAdapter):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        raise ConnectionError(f"lost the connection to {self.url}")


def quotes_its_url_on_acquire(url: str) -> CorrectAdapter:
    """An adapter that opens fine and then fails every acquire with its URL in the message."""
    return _QuotesItsUrlOnAcquire(url)


def lockchaos(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "lockchaos", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env, check=False)


def assert_no_secret(proc: subprocess.CompletedProcess[str], *places: Path) -> None:
    assert SECRET not in proc.stdout, proc.stdout
    assert SECRET not in proc.stderr, proc.stderr
    files = [f for p in places if p.exists() for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    leaked = [str(f) for f in files if SECRET.encode() in f.read_bytes()]
    assert leaked == []


# --- the function -------------------------------------------------------------------------------------------

REDACTED = [
    ("redis://:S3CR3T@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://alice:S3CR3T@h:1/0?prefix=myapp:&timeout_ms=5", "redis://alice:***@h:1/0?prefix=myapp:&timeout_ms=5"),
    ("redis://S3CR3T@h/0", "redis://***@h/0"),
    ("redis://:abc/S3CR3T+==@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://:pa?S3CR3T@host/0", "redis://:***@host/0"),
    ("redis://:S3CR3T@[::1", "redis://:***@[::1"),
    ("redis://h/0?prefix=a@b&password=S3CR3T", "redis://h/0?prefix=a@b&password=***"),
    ("etcd://h:1,h:2?token=S3CR3T&prefix=x#api_key=S3CR3T", "etcd://h:1,h:2?token=***&prefix=x#api_key=***"),
    ("redis://h:1/0?prefix=lockchaos:", "redis://h:1/0?prefix=lockchaos:"),
    ("fake://default", "fake://default"),
    ("not a url", "not a url"),
]


@pytest.mark.parametrize("url, shown", REDACTED, ids=[u for u, _ in REDACTED])
def test_redact_url_masks_user_info_and_secret_options_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # idempotent: redacting a shown URL changes nothing


def test_redact_text_masks_every_url_inside_a_message() -> None:
    text = "cannot reach 'redis://:S3CR3T@h/0?a=1': from redis://u:S3CR3T@h/0, also etcd://h:1?token=S3CR3T"
    assert "S3CR3T" not in redact_text(text)
    assert "'redis://:***@h/0?a=1'" in redact_text(text)


def test_report_redacts_a_reproduce_line_recorded_with_a_password() -> None:
    """A run recorded before redaction existed must not spread its password into new reports."""
    cmd = reproduce_command({"reproduce": "lockchaos soak --url redis://:S3CR3T@h:1/0 --seed 1"}, {})
    assert cmd is not None and "S3CR3T" not in cmd and "redis://:***@h:1/0" in cmd


# --- every command, success and error paths ------------------------------------------------------------------


@pytest.mark.redis
def test_soak_check_and_report_with_a_password_write_it_nowhere(server: PasswordRedis, tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@{server.host}:{server.port}/0?prefix=myapp:"
    run = tmp_path / "run"
    soak = lockchaos("soak", "--url", url, "--scenario", "clean-handover", "--seed", "5", "--out", str(run),
                     cwd=tmp_path)
    assert soak.returncode == 0, soak.stdout + soak.stderr
    assert_no_secret(soak, run)
    summaries = list(run.rglob("summary.json"))
    assert summaries
    # The reproduce line keeps the options and runs the same URL once the password is put back.
    reproduce = json.loads(summaries[0].read_text())["reproduce"]
    assert "?prefix=myapp:" in reproduce and ":***@" in reproduce
    argv = shlex.split(reproduce.replace("***", SECRET))
    assert argv[0] == "lockchaos"
    assert _build_parser().parse_args(argv[1:]).url == url

    for command in (["check", str(run)], ["check", "--strict", str(run)], ["report", str(run)]):
        proc = lockchaos(*command, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert_no_secret(proc, run)
    json_soak = lockchaos("soak", "--url", url, "--scenario", "clean-handover", "--json",
                          "--out", str(tmp_path / "run-json"), cwd=tmp_path)
    assert json_soak.returncode == 0
    assert_no_secret(json_soak, tmp_path / "run-json")


@pytest.mark.redis
def test_contract_with_a_password_shows_it_nowhere(server: PasswordRedis, tmp_path: Path) -> None:
    proc = lockchaos("contract", "--url", f"redis://:{SECRET}@{server.host}:{server.port}/0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_secret(proc, tmp_path)


@pytest.mark.redis
def test_a_failing_adapter_run_with_a_password_writes_it_nowhere(server: PasswordRedis, tmp_path: Path) -> None:
    """Findings, junit failures and the index of a failed run: every file a failure writes."""
    url = f"redis://:{SECRET}@{server.host}:{server.port}/0"
    run = tmp_path / "run"
    proc = lockchaos("soak", "--url", url, "--adapter", "tests.broken_adapters:no_expiry",
                     "--scenario", "holder-crash", "--seed", "3", "--out", str(run), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (run / "index.json").is_file() and list(run.rglob("report.html"))
    assert_no_secret(proc, run)
    for command in (["check", str(run)], ["report", str(run)]):  # re-judging and re-reporting a failure
        again = lockchaos(*command, cwd=tmp_path)
        assert again.returncode in (0, 1), again.stdout + again.stderr
        assert_no_secret(again, run)
    missing = lockchaos("check", str(run / "no-such-run"), cwd=tmp_path)  # and an error path of check
    assert missing.returncode == 2
    assert_no_secret(missing, run)


@pytest.mark.redis
def test_an_adapter_error_quoting_its_url_is_recorded_redacted(server: PasswordRedis, tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@{server.host}:{server.port}/0"
    run = tmp_path / "run"
    proc = lockchaos("soak", "--url", url, "--adapter", "tests.test_redaction:quotes_its_url_on_acquire",
                     "--scenario", "clean-handover", "--out", str(run), cwd=tmp_path)
    assert proc.returncode in (0, 1, 3), proc.stdout + proc.stderr
    histories = list(run.rglob("history.jsonl"))
    assert histories and "lost the connection to redis://:***@" in histories[0].read_text()
    assert_no_secret(proc, run)


@pytest.mark.redis
@pytest.mark.parametrize("command", ["soak", "contract"])
@pytest.mark.parametrize("case, status", [
    ("wrong password", 2),
    ("unreachable port", 3),
    ("port out of range", 2),
    ("malformed", 2),
    ("fragment", 2),
    ("secret option", 2),
    ("etcd credentials", 2),
    ("adapter quotes its URL", 2),
])
def test_error_paths_with_a_password_show_it_nowhere(server: PasswordRedis, command: str, case: str,
                                                      status: int, tmp_path: Path) -> None:
    host, port = server.host, server.port
    url, extra = {
        "wrong password": (f"redis://:{SECRET}x@{host}:{port}/0", []),
        "unreachable port": (f"redis://:{SECRET}@{host}:1/0", []),
        "port out of range": (f"redis://:{SECRET}@{host}:99999/0", []),
        "malformed": (f"redis://:{SECRET}@[::1", []),
        "fragment": (f"redis://:{SECRET}@{host}:{port}/0#frag", []),
        "secret option": (f"redis://:{SECRET}@{host}:{port}/0?password={SECRET}", []),
        "etcd credentials": (f"etcd://root:{SECRET}@{host}:2379", []),
        "adapter quotes its URL": (f"redis://:{SECRET}@{host}:{port}/0",
                                   ["--adapter", "tests.test_redaction:quotes_its_url"]),
    }[case]
    run = tmp_path / "run"
    argv = [command, "--url", url, *extra]
    if command == "soak":
        argv += ["--scenario", "clean-handover", "--out", str(run)]
    proc = lockchaos(*argv, cwd=tmp_path)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert proc.stderr.strip(), "an error path must say what went wrong"
    assert_no_secret(proc, tmp_path)
