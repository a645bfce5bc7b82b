"""Member faults by role: a follower killed -9 and restarted with its data, and the leader restarted
at once WITHOUT its data (Redis's amnesia), each role resolved when the fault fires.

The soaks run real clusters on loopback at the scenarios' TTL; leader-amnesia on Sentinel is the
documented hazard of a primary without persistence: known-unsafe with the lost lock named, never a
pass and never an unexplained failure.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from lockchaos.backends import open_backend
from lockchaos.backends.base import FaultUnsupported
from lockchaos.harness.faults.fault import FaultStep, Reach
from lockchaos.harness.faults.nemesis import Nemesis
from lockchaos.harness.faults.registry import lookup
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import FaultRecord, Record
from lockchaos.harness.run.runtime import RealRuntime
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario
from lockchaos.harness.servers.clusters import ETCD_WIPE_CONTAINERS, SentinelCluster

SYNC_S = 15.0
"""Bound for a replica to (re)sync a key: far above loopback's milliseconds, for a loaded machine."""
ATTEMPTS = 3
"""A leader-amnesia run in which the Sentinels failed over anyway (the restart outlasted down-after on
a loaded machine) is inconclusive for this hazard: retried, on the next run of the same seed."""


def _wait(cond: Callable[[], bool], timeout: float = SYNC_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


class _RoleCluster:
    """A cluster seam whose leader moves between scheduling and firing: the fault must ask then."""

    def __init__(self) -> None:
        self.lead = "m0"
        self.killed: list[str] = []
        self.rejoined: list[tuple[str, str]] = []
        self.wiped: list[tuple[str, str]] = []

    def leader(self) -> str:
        return self.lead

    def followers(self) -> list[str]:
        return [m for m in ("m0", "m1", "m2") if m != self.lead]

    def kill_member(self, name: str) -> None:
        self.killed.append(name)

    def rejoin_member(self, name: str, leader: str) -> None:
        self.rejoined.append((name, leader))

    def wipe_member(self, name: str, leader: str) -> None:
        self.wiped.append((name, leader))

    def restart_member(self, name: str) -> None:
        raise AssertionError("member faults restart through rejoin_member / wipe_member")

    def pause_member(self, name: str) -> None:
        raise AssertionError("not expected")

    def resume_member(self, name: str) -> None:
        raise AssertionError("not expected")

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


def _fire(cluster: _RoleCluster, step: FaultStep, seed: int = 1) -> list[FaultRecord]:
    records: list[Record] = []
    Nemesis([step], ttl_ms=10, runtime=RealRuntime(), record=records.append, server=cluster, workers=[],
            rng=random.Random(seed)).run()
    return [r for r in records if isinstance(r, FaultRecord)]


def test_follower_crash_kills_a_member_not_leading_when_it_fires_and_rejoins_it_to_that_leader() -> None:
    cluster = _RoleCluster()
    cluster.lead = "m2"  # the leader changed after the cluster started (and after the schedule was drawn)
    edges = _fire(cluster, FaultStep(0, "follower-crash", target="server", duration=0.1))
    assert len(cluster.killed) == 1 and cluster.killed[0] in ("m0", "m1")
    assert cluster.rejoined == [(cluster.killed[0], "m2")]
    assert [(e.phase, e.target, e.detail["leader"]) for e in edges] == [
        ("start", f"follower:{cluster.killed[0]}", "m2"), ("end", f"follower:{cluster.killed[0]}", "m2")]


def test_follower_crash_draws_its_follower_from_the_seed() -> None:
    drawn = set()
    for seed in range(8):
        cluster = _RoleCluster()
        _fire(cluster, FaultStep(0, "follower-crash", target="server"), seed)
        again = _RoleCluster()
        _fire(again, FaultStep(0, "follower-crash", target="server"), seed)
        assert cluster.killed == again.killed
        drawn.update(cluster.killed)
    assert drawn == {"m1", "m2"}  # never m0, the leader


def test_leader_amnesia_wipes_the_member_leading_when_it_fires_back_into_the_lead() -> None:
    cluster = _RoleCluster()
    cluster.lead = "m1"
    edges = _fire(cluster, FaultStep(0, "leader-amnesia", target="server"))
    assert cluster.killed == ["m1"] and cluster.wiped == [("m1", "m1")]
    assert edges[-1].target == "leader:m1" and edges[-1].detail["leader_after"] == "m1"


ETCD_CLUSTER = Reach("etcd-cluster", "etcd", in_process=False, faultable_links=True, cluster_kind="etcd-cluster")
ETCD_CONTAINERS = Reach("etcd-cluster", "etcd", in_process=False, faultable_links=True, cluster_kind="etcd-cluster",
                        wipe_refused=ETCD_WIPE_CONTAINERS)  # as the environment reads it off EtcdContainerCluster
SENTINEL = Reach("redis-sentinel", "redis-sentinel", in_process=False, faultable_links=False,
                 cluster_kind="redis-sentinel")
REDIS = Reach("redis", "redis", in_process=False, faultable_links=True)
REDLOCK = Reach("redlock", "redis", in_process=False, faultable_links=False, cluster_kind="redlock")


@pytest.mark.parametrize(("reach", "fault", "reason"), [
    (SENTINEL, "follower-crash", None),
    (ETCD_CLUSTER, "follower-crash", None),
    (REDIS, "follower-crash", "redis is a single server with no leader to fail over"),
    (REDLOCK, "follower-crash", "Redlock's masters are independent"),
    (SENTINEL, "leader-amnesia", None),
    (ETCD_CLUSTER, "leader-amnesia", None),
    (ETCD_CONTAINERS, "leader-amnesia", "built for process mode only"),
    (REDIS, "leader-amnesia", "redis is a single server with no leader to fail over"),
])
def test_a_member_fault_a_target_cannot_take_gives_the_reason(reach: Reach, fault: str, reason: str | None) -> None:
    why = lookup(fault).unsupported(reach)
    if reason is None:
        assert why is None
    else:
        assert why is not None and why.startswith(f"{fault}: ") and reason in why


@pytest.mark.parametrize("scenario", ["follower-crash", "leader-amnesia"])
def test_member_faults_on_the_reference_lose_no_lock(tmp_path: Path, scenario: str) -> None:
    result = run_scenario(backend_target("fake"), find_scenario(scenario), RunOptions(seed=1, virtual_time=True),
                          tmp_path)
    assert result.status == "ran" and result.judgement is not None
    assert result.judgement.verdict == "pass", result.judgement.to_dict()


@pytest.mark.redis
def test_member_faults_are_skipped_with_the_reason_on_a_single_server(tmp_path: Path) -> None:
    for name in ("follower-crash", "leader-amnesia"):
        result = run_scenario(backend_target("redis"), find_scenario(name), RunOptions(seed=1, ttl_ms=300),
                              tmp_path / name)
        assert result.status == "skipped"
        assert "no leader" in result.reason


@pytest.mark.redis
def test_a_sentinel_primary_wiped_and_restarted_at_once_empties_its_replicas_without_a_failover() -> None:
    with SentinelCluster() as cluster:
        leader = cluster.leader()
        primary = cluster.member(leader)
        replicas = [n for n in cluster.nodes if n.name != leader]
        clients = {n.name: redis.Redis(host=n.host, port=n.port, socket_timeout=2, decode_responses=True)
                   for n in cluster.nodes}
        try:
            clients[leader].set("held", "w0")
            assert _wait(lambda: all(clients[r.name].get("held") == "w0" for r in replicas))
            cluster.kill_member(leader)
            cluster.wipe_member(leader, leader)
            assert primary.is_running() and cluster.leader() == leader  # no failover: still the primary
            assert clients[leader].get("held") is None
            # The replicas resync from the empty primary and drop the key too: gone everywhere.
            assert _wait(lambda: all(clients[r.name].get("held") is None for r in replicas))
            assert _wait(lambda: all(r.role() == "slave" for r in replicas))
        finally:
            for c in clients.values():
                c.close()


@pytest.mark.etcd
def test_an_etcd_leader_wiped_rejoins_as_a_new_member_and_the_granted_lock_survives() -> None:
    from lockchaos.harness.servers.clusters import EtcdCluster

    with EtcdCluster() as cluster:
        lock = open_backend(cluster.url)
        try:
            ttl = max(lock.capabilities.min_ttl_ms, 10_000)
            granted = lock.acquire("wiped/key", "holder", ttl)
            assert granted is not None
            leader = cluster.leader()
            member = cluster.member(leader)
            cluster.kill_member(leader)
            cluster.wipe_member(leader, leader)
            assert member.is_running()
            ids = {str(m.status()["header"]["member_id"]) for m in cluster.members}  # type: ignore[index]
            assert len(ids) == 3  # three members answer, the wiped one under a new id
            # Raft kept the grant on the others, and the new member caught up from them.
            assert lock.acquire("wiped/key", "contender", ttl) is None
            seen = lock.holder("wiped/key")
            assert seen is not None and seen.owner == "holder" and seen.token == granted.token
        finally:
            lock.close()


def test_a_container_sentinel_group_refuses_to_restart_its_primary_empty_with_the_reason() -> None:
    """Never started: the refusal comes before any container (a container restart is not bounded
    below Sentinel's down-after, so it would fail over instead of showing the amnesia)."""
    from lockchaos.harness.servers.container_clusters import SentinelContainerCluster

    with pytest.raises(FaultUnsupported, match="process mode only"):
        SentinelContainerCluster().wipe_member("r0", "r0")
    # Known before a run, so the scenario is skipped with it instead of erroring when the fault fires.
    reach = Reach("redis-sentinel", "redis-sentinel", in_process=False, faultable_links=False,
                  cluster_kind="redis-sentinel", wipe_refused=SentinelContainerCluster.wipe_refused)
    why = lookup("leader-amnesia").unsupported(reach)
    assert why is not None and "process mode only" in why


def _summary(tmp_path: Path, backend: str, scenario: str,
             seed: int) -> tuple[dict[str, object], list[dict[str, object]]]:
    out = tmp_path / f"{backend}-{scenario}-{seed}-{len(list(tmp_path.iterdir()))}"
    result = run_scenario(backend_target(backend), find_scenario(scenario), RunOptions(seed=seed), out)
    assert result.status == "ran", result.reason
    run = next(out.rglob("summary.json")).parent
    summary: dict[str, object] = json.loads((run / "summary.json").read_text())
    lines = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return summary, [rec for rec in lines if rec.get("type") == "fault"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("etcd-cluster", marks=pytest.mark.etcd),
                                     pytest.param("redis-sentinel", marks=pytest.mark.redis)])
def test_follower_crash_passes_on_an_honest_cluster(tmp_path: Path, backend: str) -> None:
    summary, faults = _summary(tmp_path, backend, "follower-crash", 1)
    checks = summary["checks"]
    assert checks["verdict"] == "pass", checks  # type: ignore[index]
    start = faults[0]
    assert start["phase"] == "start" and start["detail"]["member"] != start["detail"]["leader"]  # type: ignore[index]


def _findings(checks: dict[str, object]) -> list[str]:
    return [f"{f['severity']}/{f['kind']}: {f['message']}"
            for c in checks["checkers"].values() for f in c["first"]]  # type: ignore[attr-defined]


@pytest.mark.redis
@pytest.mark.slow
def test_leader_amnesia_on_redis_sentinel_is_known_unsafe_with_the_lost_lock_reproducibly(tmp_path: Path) -> None:
    kinds: list[list[str]] = []
    for _ in range(ATTEMPTS):
        summary, faults = _summary(tmp_path, "redis-sentinel", "leader-amnesia", 1)
        end = faults[-1]["detail"]
        if end["leader_after"] != end["member"]:  # type: ignore[index]
            continue  # the Sentinels failed over after all: inconclusive, run the same seed again
        checks = summary["checks"]
        assert checks["verdict"] == "known-unsafe", checks  # type: ignore[index]
        found = _findings(checks)  # type: ignore[arg-type]
        assert not [f for f in found if f.startswith("violation/")], found
        # The lock lost with the empty primary, found as such: the holder's next renew refused while its
        # lease stood (lost-on-restart), or, when load delays that renew past the lease, what the loss did
        # next (a second owner granted the same token, a token counter gone back), each naming the cause.
        amnesia = sorted({f.split(":")[0] for f in found if f.startswith("known-unsafe/") and "non-durable" in f})
        assert amnesia, found
        kinds.append(amnesia)
        if len(kinds) == 2:
            break
    assert len(kinds) == 2, "the Sentinels failed over in too many runs to judge leader-amnesia"
    # The same seed, the same hazard found each time; which of its consequences shows first (and the
    # other known-unsafe kinds that come with it: a double grant, a loss on a promotion Sentinel made
    # anyway) depends on real-time timing on a loaded machine, not on the seed.
    assert all(kinds), kinds
