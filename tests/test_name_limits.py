"""Keys and owners are judged by ``validate_call`` alone: the same answer on the fake, Redis and etcd.

Real servers are started by the tests on free loopback ports and stopped after them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lockchaos.backends import open_backend
from lockchaos.backends.base import MAX_KEY_BYTES, MAX_OWNER_BYTES, LockBackend, validate_call
from lockchaos.harness.cli import main
from lockchaos.harness.contract.rules import find_rule
from lockchaos.harness.contract.runner import run_rule
from tests.broken_adapters import ValidatesWithoutNameLimits

pytestmark = [pytest.mark.redis, pytest.mark.etcd]

RULE = "names_beyond_the_shared_limits_raise_value_error"


@pytest.fixture(scope="module")
def backend_url(each_backend_url: str) -> str:
    return each_backend_url


@pytest.fixture
def lock(backend_url: str) -> Iterator[LockBackend]:
    backend = open_backend(backend_url)
    yield backend
    backend.close()


def _ttl(lock: LockBackend) -> int:
    return lock.capabilities.applied_ttl(max(2000, lock.capabilities.min_ttl_ms))


BAD_NAMES: list[tuple[str, Callable[[LockBackend, int], object]]] = [
    ("surrogate key acquire", lambda b, t: b.acquire("k\ud800", "me", t)),
    ("surrogate key holder", lambda b, t: b.holder("\udcffk")),
    ("surrogate key release", lambda b, t: b.release("k\ud800", "me")),
    ("surrogate owner acquire", lambda b, t: b.acquire("k-owner", "me\ud800", t)),
    ("surrogate owner renew", lambda b, t: b.renew("k-owner", "me\ud800", t)),
    ("surrogate owner release", lambda b, t: b.release("k-owner", "\udcffme")),
    ("1 MiB key acquire", lambda b, t: b.acquire("k" * (1 << 20), "me", t)),
    ("key one byte over acquire", lambda b, t: b.acquire("k" * (MAX_KEY_BYTES + 1), "me", t)),
    ("key over in two-byte chars", lambda b, t: b.acquire("\u00e9" * (MAX_KEY_BYTES // 2 + 1), "me", t)),
    ("owner one byte over acquire", lambda b, t: b.acquire("k-long-owner", "o" * (MAX_OWNER_BYTES + 1), t)),
]


@pytest.mark.parametrize("label, call", BAD_NAMES, ids=[label for label, _ in BAD_NAMES])
def test_bad_names_raise_the_same_value_error_on_every_backend(lock: LockBackend, label: str,
                                                             call: Callable[[LockBackend, int], object]) -> None:
    ttl = _ttl(lock)
    with pytest.raises(ValueError) as caught:
        call(lock, ttl)
    # The one message validate_call gives, not a codec's or a server's.
    assert not isinstance(caught.value, UnicodeError)
    assert ("not valid UTF-8" in str(caught.value)) or ("at most" in str(caught.value))


def test_names_exactly_at_the_limits_are_stored_on_every_backend(lock: LockBackend) -> None:
    key = "k" + "\u00e9" * ((MAX_KEY_BYTES - 1) // 2) + "x" * ((MAX_KEY_BYTES - 1) % 2)
    owner = "\u00e9" * (MAX_OWNER_BYTES // 2)
    assert len(key.encode()) == MAX_KEY_BYTES and len(owner.encode()) == MAX_OWNER_BYTES
    lease = lock.acquire(key, owner, _ttl(lock))
    assert lease is not None and (lease.key, lease.owner) == (key, owner)
    seen = lock.holder(key)
    assert seen is not None and seen.owner == owner
    assert lock.release(key, owner) is True


def test_contract_rule_on_name_limits_passes_on_every_backend(backend_url: str) -> None:
    result = run_rule(find_rule(RULE), lambda: open_backend(backend_url))
    assert result.status == "passed", result.message


def test_contract_rule_on_name_limits_fails_an_adapter_that_skips_them() -> None:
    result = run_rule(find_rule(RULE), lambda: ValidatesWithoutNameLimits("fake://unchecked-names"))
    assert result.status == "failed"
    assert "instead of raising ValueError" in result.message


def test_contract_command_names_the_rule_an_adapter_without_name_limits_fails(
        capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["contract", "--adapter", "tests.broken_adapters:validates_without_name_limits",
                   "--server", "none"])
    out = capsys.readouterr().out
    assert status == 1
    failed_line = next(line for line in out.splitlines() if "rule(s) failed" in line)
    assert failed_line.rstrip().endswith(RULE)  # that rule, and no other


def test_validate_call_measures_names_in_bytes_of_utf8() -> None:
    validate_call("\u00e9" * (MAX_KEY_BYTES // 2), "o" * MAX_OWNER_BYTES, 1)
    with pytest.raises(ValueError, match=f"at most {MAX_KEY_BYTES}"):
        validate_call("\u00e9" * (MAX_KEY_BYTES // 2) + "x")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        validate_call("ok", "\ud83d")
