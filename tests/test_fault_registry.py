"""The fault registry: every fault is one registered object, and everyone reads it instead of names."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import get_args

import pytest

from lockchaos.backends.base import ConfigurationError, FaultUnsupported
from lockchaos.harness.checkers import liveness, model
from lockchaos.harness.faults.fault import Fault, FaultContext, FaultStep, LeaseTiming, Reach, TargetKind
from lockchaos.harness.faults.nemesis import Nemesis
from lockchaos.harness.faults.registry import FAULTS, lookup, named, soak_menu
from lockchaos.harness.report.style import fault_colour
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import FaultRecord, Record
from lockchaos.harness.run.runtime import RealRuntime
from lockchaos.harness.run.targets import adapter_target, backend_target
from lockchaos.harness.scenarios import CATALOGUE, find_scenario

FAKE = Reach("fake", "fake", in_process=True, faultable_links=True)
FAKE_BEHIND_ADAPTER = Reach("x@none", "fake", in_process=True, faultable_links=False)
REDIS = Reach("redis", "redis", in_process=False, faultable_links=True)
ETCD = Reach("etcd", "etcd", in_process=False, faultable_links=True)
EXTERNAL_REMOTE = Reach("redis@external", "redis", in_process=False, faultable_links=False,
                        started_here=False, remote=True)
ETCD_CLUSTER = Reach("etcd-cluster", "etcd", in_process=False, faultable_links=True, cluster_kind="etcd-cluster")
SENTINEL = Reach("redis-sentinel", "redis", in_process=False, faultable_links=False, cluster_kind="redis-sentinel")
REDIS_STEPPABLE_CLOCK = Reach("redis", "redis", in_process=False, faultable_links=True, clock_faults=True)
REDIS_NO_FAKETIME = Reach("redis", "redis", in_process=False, faultable_links=True,
                          clock_missing="libfaketime is not installed")
REDLOCK = Reach("redlock", "redis", in_process=False, faultable_links=True, cluster_kind="redlock")


def test_every_fault_the_catalogue_and_the_soak_use_is_registered() -> None:
    used = {s.fault for sc in CATALOGUE for s in sc.faults} | {s.fault for s in soak_menu()}
    assert used <= set(FAULTS), used - set(FAULTS)


def test_an_unknown_fault_name_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown fault 'no-such-fault'; known faults: holder-crash"):
        lookup("no-such-fault")


def test_the_nemesis_refuses_an_unknown_fault_instead_of_skipping_it() -> None:
    records: list[Record] = []
    nemesis = Nemesis([FaultStep(0, "no-such-fault")], ttl_ms=1000, runtime=RealRuntime(),
                      record=records.append, server=_NoServer(), workers=[], rng=random.Random(1))
    with pytest.raises(FaultUnsupported, match="unknown fault 'no-such-fault'"):
        nemesis.run()
    assert records == []


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_each_registered_fault_has_a_colour_a_target_kind_and_only_its_own_soak_steps(name: str) -> None:
    fault = FAULTS[name]
    assert fault.name == name
    assert re.fullmatch(r"#[0-9a-f]{6}", fault.colour)
    assert fault_colour(name) == fault.colour  # the report paints it with the registry's colour
    assert fault.target in get_args(TargetKind)
    assert all(s.fault == name for s in fault.soak)


def test_the_colours_of_the_faults_the_report_drew_before_the_registry_are_kept() -> None:
    """Figures stay as they were: the faults that had no colour of their own got a spare by name."""
    before = {"holder-crash": "#ef4444", "server-kill": "#6b7280", "clock-jump": "#0ea5e9",
              "late-release": "#22c55e", "lose-acquire-reply": "#f43f5e", "leader-crash": "#06b6d4",
              "leader-pause": "#d946ef", "redlock-minority-kill": "#06b6d4", "redlock-master-amnesia": "#d946ef",
              "leader-isolated": "#06b6d4", "follower-crash": "#14b8a6", "leader-amnesia": "#a855f7"}
    assert {n: fault_colour(n) for n in before} == before


def test_the_checkers_read_lease_timing_meanings_from_the_registry() -> None:
    assert set(model.LEADER_FAULTS) == {"leader-crash", "leader-pause", "leader-isolated", "redlock-minority-kill",
                                        "redlock-master-amnesia", "leader-amnesia"}
    assert set(named(lambda t: t.ends_leases_early)) == {"clock-jump"}
    assert set(model.RESTARTS) == {"server-kill", "leader-amnesia"}
    assert set(model.DELAYING) == {"server-pause", "latency", "leader-pause"}
    assert set(liveness.TRIGGERS) == {"holder-crash", "holder-pause", "partition"}
    assert set(liveness.SERVER_TRIGGERS) == {"server-kill", "server-pause", "leader-amnesia"}
    assert set(liveness.LEADER_TRIGGERS) == {"leader-crash", "leader-pause"}
    assert set(liveness.EXCUSING) == {"server-kill", "server-pause", "clock-jump", "latency", "reset-storm",
                                      "leader-amnesia"}


@pytest.mark.parametrize(("reach", "fault", "reason"), [
    (FAKE, "clock-jump", None),
    (FAKE, "leader-crash", None),
    (FAKE, "redlock-master-amnesia", None),
    (FAKE, "partition", None),
    (FAKE_BEHIND_ADAPTER, "partition", "the adapter talks to the in-process fake without a network"),
    (FAKE_BEHIND_ADAPTER, "holder-crash", None),
    (REDIS, "clock-jump", "libfaketime reaches only a redis-server the harness launches as a process"),
    (REDIS_STEPPABLE_CLOCK, "clock-jump", None),
    (REDIS_NO_FAKETIME, "clock-jump", "libfaketime is not installed"),
    (ETCD, "clock-jump", "no clock fault reaches a running etcd"),
    (REDIS, "server-kill", None),
    (REDIS, "latency", None),
    (REDIS, "leader-crash", "redis is a single server with no leader to fail over"),
    (REDIS, "redlock-minority-kill", "redis has no independent Redlock masters to kill"),
    (EXTERNAL_REMOTE, "server-pause", "refused on a server the harness did not start"),
    (EXTERNAL_REMOTE, "leader-pause", "refused on a server the harness did not start"),
    (EXTERNAL_REMOTE, "reset-storm", "the fault proxy only forwards to 127.0.0.1; this server is remote"),
    (ETCD_CLUSTER, "leader-pause", None),
    (ETCD_CLUSTER, "leader-isolated", None),
    (REDIS, "leader-isolated", "redis is a single server with no leader to fail over"),
    (ETCD_CLUSTER, "partition", None),
    (REDLOCK, "latency", None),
    (SENTINEL, "partition", "no per-client fault proxy reaches redis-sentinel's clients"),
    (REDLOCK, "leader-crash", "Redlock's masters are independent, there is no leader to fail over"),
    (REDLOCK, "redlock-master-amnesia", None),
])
def test_a_fault_an_environment_cannot_take_gives_the_reason(reach: Reach, fault: str, reason: str | None) -> None:
    why = lookup(fault).unsupported(reach)
    if reason is None:
        assert why is None
    else:
        assert why is not None and why.startswith(f"{fault}: ") and reason in why


def test_a_link_fault_on_an_in_process_adapter_skips_the_scenario_with_the_reason(tmp_path: Path) -> None:
    target = adapter_target("tests.broken_adapters:correct", "none")
    r = run_scenario(target, find_scenario("partition-holder"), RunOptions(seed=1, virtual_time=True), tmp_path)
    assert r.status == "skipped"
    assert r.reason == lookup("partition").unsupported(FAKE_BEHIND_ADAPTER)


def test_the_fake_takes_the_clock_jump_a_redis_launched_without_libfaketime_cannot(tmp_path: Path) -> None:
    r = run_scenario(backend_target("fake"), find_scenario("clock-jump"),
                     RunOptions(seed=1, virtual_time=True), tmp_path)
    assert r.status != "skipped", r.reason
    assert lookup("clock-jump").unsupported(REDIS) is not None


def test_a_new_fault_is_one_registered_object_the_nemesis_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam for growth: register an object, and the nemesis applies it and records its edges."""

    def apply(fault: Fault, ctx: FaultContext, step: FaultStep) -> None:
        ctx.edge(step, "start", "server", knob=7)
        ctx.edge(step, "end", "server")

    toy = Fault("toy", "server", "#123456", apply, soak=(FaultStep(0, "toy", target="server"),),
                timing=LeaseTiming(excuses_liveness=True))
    monkeypatch.setitem(FAULTS, "toy", toy)
    records: list[Record] = []
    Nemesis([FaultStep(0, "toy", target="server")], ttl_ms=1000, runtime=RealRuntime(), record=records.append,
            server=_NoServer(), workers=[], rng=random.Random(1)).run()
    assert [(r.fault, r.phase, r.target, r.detail) for r in records if isinstance(r, FaultRecord)] == [
        ("toy", "start", "server", {"knob": 7}), ("toy", "end", "server", {})]
    assert "toy" in named(lambda t: t.excuses_liveness)


class _NoServer:
    """A server no test fault should touch."""

    def kill(self) -> None:
        raise AssertionError("not expected")

    def restart(self) -> None:
        raise AssertionError("not expected")

    def pause(self) -> None:
        raise AssertionError("not expected")

    def resume(self) -> None:
        raise AssertionError("not expected")

    def jump_clock(self, delta_ms: int) -> None:
        raise AssertionError("not expected")
