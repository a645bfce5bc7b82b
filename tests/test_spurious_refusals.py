"""A refused free key is Redlock's declared hazard (``Capabilities.spurious_refusals``), and a failure
for every lock that does not declare it: the contract's race rule and the conformance checker.

``tests.refusing_adapters`` refuses every acquire that overlapped another (split votes), once
undeclared and once declared; the contract runs only the race rule, the soak the contention scenario.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from lockchaos.harness.cli import main
from lockchaos.harness.contract import find_rule, run_rule
from tests.refusing_adapters import splits_votes, splits_votes_declared

RACE = "acquire_is_atomic_under_contention"


def test_undeclared_split_votes_fail_the_race_rule() -> None:
    url = f"fake://{uuid.uuid4().hex}"
    result = run_rule(find_rule(RACE), lambda: splits_votes(url))
    assert result.status == "failed", result
    assert "0 of 8 simultaneous acquires won" in result.message


def test_declared_split_votes_skip_the_race_rule_with_the_declared_reason() -> None:
    url = f"fake://{uuid.uuid4().hex}"
    result = run_rule(find_rule(RACE), lambda: splits_votes_declared(url))
    assert result.status == "skipped", result
    assert "nobody won" in result.message and "spurious_refusals" in result.message, result


def _contention(adapter: str, out: Path) -> tuple[int, dict[str, dict[str, object]]]:
    status = main(["soak", "--adapter", f"tests.refusing_adapters:{adapter}", "--server", "none",
                   "--scenario", "contention", "--ttl-ms", "200", "--seed", "1", "--quiet", "--out", str(out)])
    summary = json.loads((out / f"tests.refusing_adapters_{adapter}_none" / "contention" / "summary.json").read_text())
    return status, summary["checks"]["checkers"]


def test_undeclared_refusals_of_a_free_key_fail_conformance(tmp_path: Path) -> None:
    status, checkers = _contention("splits_votes", tmp_path)
    assert status == 1, checkers
    conformance = checkers["conformance"]
    assert conformance["verdict"] == "fail", conformance
    assert {f["kind"] for f in conformance["first"]} == {"refused-free-key"}, conformance  # type: ignore[union-attr]


def test_declared_refusals_of_a_free_key_are_known_unsafe_and_counted(tmp_path: Path) -> None:
    status, checkers = _contention("splits_votes_declared", tmp_path)
    assert status == 0, checkers
    conformance = checkers["conformance"]
    assert conformance["verdict"] == "known-unsafe", conformance
    assert conformance["violations"] == 0 and int(conformance["known_unsafe"]) > 0, conformance  # type: ignore[call-overload]
    assert all(v["verdict"] in ("pass", "skipped", "known-unsafe") for v in checkers.values()), checkers  # type: ignore[index]
