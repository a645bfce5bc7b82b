"""Process-mode clusters: they start with a leader, fail over under real kill -9, and leave nothing.

Each cluster test starts its own members on free loopback ports; soaks run at the shortest TTL the
backend allows so that the file stays within a few tens of seconds.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import redis

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendUnavailable, ConfigurationError, FaultUnsupported, Lease
from lockchaos.backends.sentinel import parse_sentinel_url
from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.verdicts import judge
from lockchaos.harness.cli import main
from lockchaos.harness.faults.proxy import FaultProxy
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario
from lockchaos.harness.servers.clusters import EtcdCluster, EtcdMember, RedisNode, SentinelCluster
from lockchaos.harness.servers.peerproxies import port_owned_by
from lockchaos.harness.servers.process import RedisServer

RECOVERY_S = 15.0
"""Bound for a client to be granted again after a leader dies: far above the declared failover, for
a loaded CI machine; the declared bound itself is judged by the liveness checker in the soak test."""


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _renew_until_granted(lock: object, key: str, owner: str, ttl_ms: int) -> Lease:
    deadline = time.monotonic() + RECOVERY_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            lease = lock.renew(key, owner, ttl_ms)  # type: ignore[attr-defined]
            assert lease is not None, "the lock was lost across the leader change"
            return lease  # type: ignore[no-any-return]
        except BackendUnavailable as exc:  # the call that hit the dead leader: outcome unknown, retry
            last = exc
            time.sleep(0.05)
    raise AssertionError(f"no renew granted within {RECOVERY_S} s after the leader died: {last}")


@pytest.mark.etcd
def test_etcd_cluster_starts_with_a_leader_and_stops_leaving_nothing() -> None:
    cluster = EtcdCluster().start()
    try:
        pids = [m.pid for m in cluster.members if m.pid is not None]
        dirs = [m.workdir for m in cluster.members]
        assert len(pids) == 3 and len(_alive(pids)) == 3
        assert cluster.leader() in {"m0", "m1", "m2"}
        assert cluster.url.count(",") == 2
    finally:
        cluster.stop()
    assert _alive(pids) == []
    assert all(d is not None and not d.exists() for d in dirs)


@pytest.mark.etcd
def test_etcd_leader_kill_elects_a_new_leader_and_the_holder_keeps_its_lock() -> None:
    with EtcdCluster() as cluster:
        lock = open_backend(cluster.url)
        try:
            granted = lock.acquire("k", "a", 5000)
            assert granted is not None
            old = cluster.leader()
            cluster.kill_member(old)
            new = cluster.leader()
            assert new != old
            renewed = _renew_until_granted(lock, "k", "a", 5000)
            assert renewed.token == granted.token  # linearizable: the grant survived the election
            cluster.restart_member(old)
            assert cluster.member(old).is_running()
            assert lock.capabilities.replication == "linearizable"
        finally:
            lock.close()


@pytest.mark.etcd
@pytest.mark.slow
def test_soak_leader_crash_on_etcd_cluster_passes_and_reports_failover_time(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    code = main(["soak", "--backend", "etcd-cluster", "--scenario", "leader-crash", "--seed", "5",
                 "--ttl-ms", "1000", "--quiet", "--out", str(out)])
    summary = json.loads((out / "etcd-cluster" / "leader-crash" / "summary.json").read_text())
    assert code == 0, summary["checks"]
    assert summary["checks"]["verdict"] == "pass"
    live = summary["checks"]["checkers"]["liveness"]["stats"]
    assert live["leader_failovers"] == 1
    assert 0 < live["leader_max_s"] <= live["leader_bound_s"]


@pytest.mark.redis
def test_sentinel_group_starts_with_a_primary_and_stops_leaving_nothing() -> None:
    cluster = SentinelCluster().start()
    try:
        pids = [m.pid for m in cluster.members if m.pid is not None]
        dirs = [m.workdir for m in cluster.members]
        assert len(cluster.nodes) == 3 and len(cluster.sentinels) == 3 and len(_alive(pids)) == 6
        assert cluster.leader() == "r0"
        assert [n.role() for n in cluster.nodes] == ["master", "slave", "slave"]
    finally:
        cluster.stop()
    assert _alive(pids) == []
    assert all(d is not None and not d.exists() for d in dirs)


@pytest.mark.redis
def test_sentinel_promotes_a_replica_when_the_primary_dies_and_a_client_follows() -> None:
    with SentinelCluster() as cluster:
        lock = open_backend(cluster.url)
        try:
            assert lock.capabilities.replication == "async"
            granted = lock.acquire("k", "a", 10_000)
            assert granted is not None
            old = cluster.leader()
            cluster.kill_member(old)
            lease = _renew_until_granted(lock, "k", "a", 10_000)  # replicas were in sync: nothing lost
            assert lease.token == granted.token
            assert cluster.leader() != old
        finally:
            lock.close()


@pytest.mark.redis
@pytest.mark.slow
def test_soak_leader_crash_on_redis_sentinel_completes_with_a_verdict(tmp_path: Path) -> None:
    result = run_scenario(backend_target("redis-sentinel"), find_scenario("leader-crash"),
                          RunOptions(seed=3, ttl_ms=1000), tmp_path)
    assert result.status == "ran", result.reason
    assert result.judgement is not None
    assert result.judgement.verdict in ("pass", "known-unsafe"), result.judgement.to_dict()
    live = result.judgement.to_dict()["checkers"]["liveness"]["stats"]
    assert live["leader_failovers"] == 1


@pytest.mark.redis
def test_leader_faults_are_skipped_with_the_reason_on_a_single_server(tmp_path: Path) -> None:
    for name in ("leader-crash", "leader-pause"):
        result = run_scenario(backend_target("redis"), find_scenario(name), RunOptions(seed=1, ttl_ms=300),
                              tmp_path / name)
        assert result.status == "skipped"
        assert "no leader" in result.reason


def test_leader_faults_on_the_reference_lose_no_lock(tmp_path: Path) -> None:
    for name in ("leader-crash", "leader-pause"):
        result = run_scenario(backend_target("fake"), find_scenario(name),
                              RunOptions(seed=1, virtual_time=True), tmp_path / name)
        assert result.status == "ran" and result.judgement is not None
        assert result.judgement.verdict == "pass", result.judgement.to_dict()


# --- judging a failover: hand-written histories (TTL 1000 ms), no server -------------------------------

MS = 1_000_000


def _history(replication: str, *, failover_ms: int = 500) -> list[Record]:
    """a holds token 7; the leader dies; the new leader has neither the lock nor the counter."""
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": False,
            "fencing_tokens": True, "replication": replication, "failover_ms": failover_ms}
    return [
        NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}}),
        OpRecord("a", "acquire", "k", {"owner": "a", "ttl_ms": 1000}, 0, 5 * MS, "ok",
                 {"owner": "a", "token": 7, "ttl_ms": 1000}),
        FaultRecord("leader-crash", "start", "leader:r0", 100 * MS),
        FaultRecord("leader-crash", "end", "leader:r0", 200 * MS),
        OpRecord("b", "acquire", "k", {"owner": "b", "ttl_ms": 1000}, 300 * MS, 305 * MS, "ok",
                 {"owner": "b", "token": 1, "ttl_ms": 1000}),
        OpRecord("a", "renew", "k", {"owner": "a", "ttl_ms": 1000}, 320 * MS, 325 * MS, "fail", None),
    ]


def _severities(records: list[Record]) -> dict[str, set[str]]:
    _, res = check_history(records)
    out: dict[str, set[str]] = {}
    for r in res:
        for f in r.findings:
            out.setdefault(f.severity, set()).add(f"{r.checker}/{f.kind}")
    return out


def test_lock_lost_on_promotion_is_known_unsafe_under_declared_async_replication() -> None:
    found = _severities(_history("async"))
    assert "violation" not in found, found
    assert {"exclusion-grants/double-grant", "fencing/lost-on-promotion",
            "fencing/token-regression"} <= found["known-unsafe"]
    assert judge(_history("async")).verdict == "known-unsafe"


def test_lock_lost_on_failover_is_a_failure_under_declared_linearizable_replication() -> None:
    found = _severities(_history("linearizable"))
    assert {"exclusion-grants/double-grant", "fencing/token-regression",
            "conformance/renew-refused-for-holder"} <= found["violation"]
    assert judge(_history("linearizable")).failed


def test_slow_leader_failover_is_judged_against_the_declared_failover_time() -> None:
    records = _history("linearizable", failover_ms=100)[:4]
    late = OpRecord("a", "renew", "k", {"owner": "a", "ttl_ms": 1000}, 2900 * MS, 2905 * MS, "ok",
                    {"owner": "a", "token": 7, "ttl_ms": 1000})
    _, res = check_history([*records, late, NoteRecord("end", 3000 * MS, {})])
    live = next(r for r in res if r.checker == "liveness")
    assert [f.kind for f in live.violations] == ["slow-failover"]
    assert live.stats["leader_failovers"] == 1 and live.stats["leader_max_s"] == 2.805


@pytest.mark.parametrize("url", [
    "redis+sentinel://127.0.0.1:26379",  # no service
    "redis+sentinel://127.0.0.1:26379/a/b",  # two services
    "redis+sentinel://:26379/mymaster",  # no host
    "redis+sentinel://127.0.0.1:26379/mymaster?durable=1",  # not an option here
    "redis+sentinel://u:p@127.0.0.1:26379/mymaster",  # credentials
])
def test_bad_sentinel_url_is_one_configuration_error_before_any_io(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_backend(url)


def test_sentinel_url_names_every_sentinel_and_the_service() -> None:
    config = parse_sentinel_url("redis+sentinel://h1:1,h2/svc?timeout_ms=300")
    assert config.sentinels == (("h1", 1), ("h2", 26379))
    assert (config.service, config.timeout_ms) == ("svc", 300)


@pytest.mark.redis
def test_sigkilled_harness_leaves_no_member_no_sentinel_and_no_temp_dir(tmp_path: Path) -> None:
    from tests.test_harness_dies_clean import dirs_of, gone, start_soak, wait_until

    out = tmp_path / "run"
    proc = start_soak(out, "--backend", "redis-sentinel", "--scenario", "clean-handover", "--duration", "60")
    harness = psutil.Process(proc.pid)

    def members() -> list[psutil.Process]:
        try:
            return [c for c in harness.children(recursive=True)
                    if c.name() in ("redis-server", "redis-sentinel", "redis-check-rdb")]
        except psutil.NoSuchProcess:
            return []

    try:
        assert wait_until(lambda: len(members()) == 6 and any(
            h.stat().st_size > 1000 for h in out.rglob("history.jsonl")), timeout=30), "the soak never got going"
        started = members()
    finally:
        proc.kill()
    assert proc.wait(10) == -9
    assert wait_until(lambda: all(gone(m) for m in started), timeout=10), "a member outlived the harness"
    assert wait_until(lambda: not dirs_of(proc.pid), timeout=10), f"temp dirs left: {dirs_of(proc.pid)}"


# --- leader-isolated: the members' own traffic through the harness's proxies ---------------------------

PROBE_S = 10.0
"""Bound for a condition that a healthy (or healed) cluster reaches in well under a second."""


def _wait(cond: Callable[[], bool], timeout: float = PROBE_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def _ping(sock: socket.socket) -> bool:
    """One PING over a raw connection; False if no PONG within a short probe window."""
    sock.settimeout(0.5)
    try:
        sock.sendall(b"PING\r\n")
        return sock.recv(64) == b"+PONG\r\n"
    except OSError:
        return False


@pytest.mark.redis
def test_cut_clients_blackholes_only_the_picked_connections_both_ways_and_heal_restores_new_ones() -> None:
    with RedisServer(persistence=False) as server, FaultProxy(server.host, server.port, name="cut") as proxy:
        picked = socket.create_connection(proxy.address, timeout=2)
        other = socket.create_connection(proxy.address, timeout=2)
        try:
            assert _ping(picked) and _ping(other)
            port = picked.getsockname()[1]
            proxy.cut_clients(lambda p: p == port)
            before = proxy.stats()
            assert not _ping(picked)  # the request vanished, or its reply did: no answer, no reset
            assert _ping(other)  # the connection not picked keeps flowing
            assert proxy.stats().bytes_dropped > before.bytes_dropped
            proxy.heal()
            fresh = socket.create_connection(proxy.address, timeout=2)
            try:
                assert _ping(fresh)
            finally:
                fresh.close()
        finally:
            picked.close()
            other.close()


def test_port_owned_by_knows_a_socket_of_its_process_and_not_of_another() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert port_owned_by([os.getpid()])(port)
        assert not port_owned_by([os.getppid()])(port)
        assert not port_owned_by([])(port)


def _leader_id(member: EtcdMember) -> str | None:
    st = member.status()
    return None if st is None else str(st.get("leader", "0"))


@pytest.mark.etcd
def test_etcd_isolated_leader_hears_no_peer_both_ways_while_the_others_elect_and_heals() -> None:
    with EtcdCluster() as cluster:
        old = cluster.leader()
        isolated = cluster.member(old)
        others = [m for m in cluster.members if m is not isolated]
        assert isinstance(isolated, EtcdMember) and all(isinstance(m, EtcdMember) for m in others)
        assert cluster.peers.stats(old).bytes_up > 0  # peers really dial the proxy, not the member
        cluster.isolate_member(old)
        try:
            # Until their election timeout the others still name the old leader: wait for their vote.
            assert _wait(lambda: cluster.leader() != old), "the two connected members elected nobody"
            new = cluster.leader()
            new_id = _leader_id(cluster.member(new))  # type: ignore[arg-type]
            # The new leader's heartbeats never reach the old one by either path (its own proxy, or the
            # connections it dialled to the others' proxies): it never names the new leader.
            before = cluster.peers.stats(old)
            seen = []
            for _ in range(10):  # half a second: fifty of its heartbeat intervals, five election timeouts
                time.sleep(0.05)
                seen.append(_leader_id(isolated))
            assert new_id not in seen, seen
            after = cluster.peers.stats(old)
            assert (after.bytes_up, after.bytes_down) == (before.bytes_up, before.bytes_down)
            assert after.bytes_dropped > before.bytes_dropped
        finally:
            cluster.heal_member(old)
        assert _wait(lambda: len({_leader_id(m) for m in cluster.members}) == 1)  # type: ignore[arg-type]
        assert cluster.leader() in {m.name for m in cluster.members}  # type: ignore[attr-defined]


@pytest.mark.redis
def test_sentinel_isolated_primary_is_replaced_while_the_kept_client_still_reaches_it() -> None:
    with SentinelCluster() as cluster:
        lock = open_backend(cluster.url)  # Sentinel names the primary's proxy: this client crosses it
        try:
            granted = lock.acquire("k", "a", 30_000)
            assert granted is not None
            old = cluster.member(cluster.leader())
            assert isinstance(old, RedisNode)
            direct = redis.Redis(host=old.host, port=old.port, socket_timeout=2, decode_responses=True)
            try:
                replicas = [n for n in cluster.nodes if n is not old]
                direct.set("before", "1")
                assert _wait(lambda: all(redis.Redis(port=n.port).exists("before") for n in replicas))
                cluster.isolate_member(old.name, keep_pids=[os.getpid()])
                try:
                    direct.set("during", "1")  # written on the old primary once its replicas are cut off
                    # Sentinels (cut off too) promote a replica: down-after, their vote, the promotion.
                    assert _wait(lambda: cluster.leader() != old.name), "no replica was promoted"
                    assert old.role() == "master"  # nobody could tell it
                    renewed = lock.renew("k", "a", 30_000)  # the kept client still reaches it
                    assert renewed is not None and renewed.token == granted.token
                    assert not any(redis.Redis(port=n.port).exists("during") for n in replicas)
                finally:
                    cluster.heal_member(old.name)
                # Healed, the Sentinels demote the old primary, which resyncs and forgets what it took alone.
                # Sentinel demotes only after the old primary reported its role for 4 hello periods (8 s) plus an INFO
                # period: well over 10 s on a loaded machine.
                assert _wait(lambda: old.role() in ("slave", "syncing"), timeout=PROBE_S + 30)
                assert _wait(lambda: old.role() == "slave" and not direct.exists("during"))
            finally:
                direct.close()
        finally:
            lock.close()


def _soak(tmp_path: Path, backend: str, seed: int) -> dict[str, object]:
    out = tmp_path / f"{backend}-{seed}-{len(list(tmp_path.iterdir()))}"
    main(["soak", "--backend", backend, "--scenario", "leader-isolated", "--seed", str(seed), "--quiet",
          "--out", str(out)])
    checks: dict[str, object] = json.loads((out / backend / "leader-isolated" / "summary.json").read_text())["checks"]
    return checks


def _double_grants(checks: dict[str, object]) -> list[str]:
    grants = checks["checkers"]["exclusion-grants"]  # type: ignore[index]
    return [f"{f['severity']}/{f['kind']}: {f['message']}" for f in grants["first"]]


@pytest.mark.redis
@pytest.mark.slow
def test_soak_leader_isolated_on_redis_sentinel_is_known_unsafe_with_two_holders_reproducibly(
        tmp_path: Path) -> None:
    runs = [_soak(tmp_path, "redis-sentinel", 7) for _ in range(2)]
    for checks in runs:
        assert checks["verdict"] == "known-unsafe", checks
        found = _double_grants(checks)
        assert any(f.startswith("known-unsafe/double-grant") and "lost on promotion" in f for f in found), found
    kinds = [sorted({f.split(":")[0] for f in _double_grants(c)}) for c in runs]
    assert kinds[0] == kinds[1]  # the same seed, the same finding


@pytest.mark.etcd
@pytest.mark.slow
def test_soak_leader_isolated_on_etcd_cluster_passes(tmp_path: Path) -> None:
    checks = _soak(tmp_path, "etcd-cluster", 7)
    assert checks["verdict"] == "pass", checks


@pytest.mark.redis
def test_leader_isolated_is_skipped_with_the_reason_on_a_single_server(tmp_path: Path) -> None:
    result = run_scenario(backend_target("redis"), find_scenario("leader-isolated"), RunOptions(seed=1, ttl_ms=300),
                          tmp_path)
    assert result.status == "skipped"
    assert "no leader" in result.reason


def test_leader_isolated_on_the_reference_loses_no_lock(tmp_path: Path) -> None:
    result = run_scenario(backend_target("fake"), find_scenario("leader-isolated"),
                          RunOptions(seed=1, virtual_time=True), tmp_path)
    assert result.status == "ran" and result.judgement is not None
    assert result.judgement.verdict == "pass", result.judgement.to_dict()


@pytest.mark.redis
def test_leader_isolated_on_sentinel_refuses_thread_workers_whose_holder_cannot_be_told_apart(
        tmp_path: Path) -> None:
    with pytest.raises(FaultUnsupported, match="use process workers"):
        run_scenario(backend_target("redis-sentinel"), find_scenario("leader-isolated"),
                     RunOptions(seed=1, ttl_ms=1000, workers_mode="thread"), tmp_path)


# --- network faults of one worker on a cluster the harness launched -----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("etcd-cluster", marks=pytest.mark.etcd),
                                     pytest.param("redlock", marks=pytest.mark.redis)])
def test_partition_of_the_holder_runs_on_a_cluster_the_harness_launched(backend: str, tmp_path: Path) -> None:
    # Each worker reaches every member through a proxy of its own: the holder's partition cuts all of
    # them at once (real bytes dropped), the other workers and the members' own traffic untouched.
    out = tmp_path / "run"
    assert main(["soak", "--backend", backend, "--scenario", "partition-holder", "--seed", "1", "--quiet",
                 "--out", str(out)]) == 0
    summary = json.loads((out / backend / "partition-holder" / "summary.json").read_text())
    checks = summary["checks"]
    # Redlock's declared hazard: acquires sent at one instant split the masters' votes and all are
    # refused (capabilities.spurious_refusals), counted known-unsafe; seen once in ten CI runs, at the
    # run's first three acquires. Nothing else may be found.
    unsafe = {(name, f["kind"]) for name, c in checks["checkers"].items() for f in c["first"]}
    declared = backend == "redlock" and checks["verdict"] == "known-unsafe" \
        and unsafe == {("conformance", "refused-free-key")}
    assert summary["status"] == "ran" and (checks["verdict"] == "pass" or declared), checks
    history = [json.loads(line) for line in (out / backend / "partition-holder" / "history.jsonl").open()]
    window = [r for r in history if r["type"] == "fault" and r["fault"] == "partition"]
    assert [r["phase"] for r in window] == ["start", "end"]
    cut = window[0]["target"]
    start, end = window[0]["time_ns"], window[1]["time_ns"]
    # The partitioned worker's calls inside the window got no answer; another worker's did.
    inside = [r for r in history if r["type"] == "op" and start < r["invoke_ns"] and r["complete_ns"] < end]
    assert all(r["outcome"] == "indeterminate" for r in inside if r["client"] == cut), inside
    assert any(r["outcome"] != "indeterminate" for r in inside if r["client"] != cut), inside
