"""A cluster the harness did not start (``--url etcd://h1,h2,h3``, ``--url redis+sentinel://...``).

The clusters here are the harness's own process-mode ones, started by the test and handed to the run
as ``--url``: from the run's point of view they are someone else's. Their other keys stay untouched,
the run's keys live under its prefix and are removed through whichever endpoint answers, and no
fault reaches a member.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import etcd3
import pytest
import redis

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendUnavailable, ConfigurationError, InfrastructureError
from lockchaos.backends.sentinel import parse_sentinel_url
from lockchaos.harness.cli import main
from lockchaos.harness.servers.clusters import EtcdCluster, RedisNode, SentinelCluster
from lockchaos.harness.servers.external import purge_prefix

UNREACHABLE_S = 10.0
"""An unreachable cluster must be reported within seconds; generous for a loaded machine."""


def _dead_port() -> int:
    """A loopback port nobody listens on (bound, then closed: refused until someone takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _summary(out: Path, label: str, scenario: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / label / scenario / "summary.json").read_text())
    return data


def _residue_scope(summary: dict[str, object]) -> str:
    return str(summary["checks"]["checkers"]["residue"]["stats"]["scope"])  # type: ignore[index]


@pytest.fixture(scope="module")
def their_etcd() -> Iterator[EtcdCluster]:
    with EtcdCluster(route_peers=False) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def their_sentinel() -> Iterator[SentinelCluster]:
    with SentinelCluster(route_peers=False) as cluster:
        yield cluster


def _primary(cluster: SentinelCluster) -> redis.Redis:
    node = cluster.member(cluster.leader())
    return redis.Redis(host=node.host, port=node.port, socket_timeout=2)


def _dump(client: redis.Redis) -> dict[bytes, object]:
    return {k: client.dump(k) for k in client.scan_iter()}


@pytest.mark.etcd
def test_soak_on_their_etcd_cluster_works_under_the_run_prefix_and_leaves_only_their_keys(
        their_etcd: EtcdCluster, tmp_path: Path) -> None:
    host, port = their_etcd.members[1].host, their_etcd.members[1].port
    client = etcd3.client(host=host, port=port, timeout=2)
    client.put("app/config", "precious")
    try:
        assert main(["soak", "--backend", "etcd", "--url", their_etcd.url, "--scenario", "clean-handover",
                     "--ttl-ms", "2000", "--quiet", "--out", str(tmp_path / "run")]) == 0
        keys = sorted(meta.key.decode() for _, meta in client.get_all())
    finally:
        client.close()
    assert keys == ["app/config"]
    summary = _summary(tmp_path / "run", "etcd-cluster_external", "clean-handover")
    assert summary["status"] == "ran"
    assert _residue_scope(summary).startswith("prefix:lockchaos/run-")


@pytest.mark.redis
def test_soak_on_their_sentinel_group_works_under_the_run_prefix_and_leaves_their_keys(
        their_sentinel: SentinelCluster, tmp_path: Path) -> None:
    primary = _primary(their_sentinel)
    primary.set("app:config", "precious")
    primary.set("lockchaos:not-ours", "theirs")
    before = _dump(primary)
    try:
        assert main(["soak", "--backend", "redis-sentinel", "--url", their_sentinel.url, "--scenario",
                     "clean-handover", "--ttl-ms", "500", "--quiet", "--out", str(tmp_path / "run")]) == 0
        assert _dump(primary) == before
        assert primary.info("commandstats").get("cmdstat_flushall") is None
    finally:
        primary.close()
    summary = _summary(tmp_path / "run", "redis-sentinel_external", "clean-handover")
    assert summary["status"] == "ran"
    assert _residue_scope(summary).startswith("prefix:lockchaos:run-")


@pytest.mark.redis
@pytest.mark.parametrize("scenario, reason", [
    ("leader-crash", "refused on a server the harness did not start"),
    ("server-restart", "refused on a server the harness did not start"),
    ("partition-holder", "per-client fault proxies to a cluster's members are not built yet"),
])
def test_faults_on_their_sentinel_group_are_skipped_with_the_reason_and_touch_no_member(
        their_sentinel: SentinelCluster, tmp_path: Path, scenario: str, reason: str) -> None:
    pids = {m.name: m.pid for m in their_sentinel.members}
    assert main(["soak", "--url", their_sentinel.url, "--scenario", scenario, "--ttl-ms", "500", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    summary = _summary(tmp_path / "run", "redis-sentinel_external", scenario)
    assert summary["status"] == "skipped"
    assert reason in str(summary["reason"])
    assert {m.name: m.pid for m in their_sentinel.members} == pids
    assert all(m.is_running() and not m.paused for m in their_sentinel.members)


@pytest.mark.etcd
def test_leader_faults_on_their_etcd_cluster_are_skipped_with_the_reason(
        their_etcd: EtcdCluster, tmp_path: Path) -> None:
    leader = their_etcd.leader()
    assert main(["soak", "--url", their_etcd.url, "--scenario", "leader-isolated", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    summary = _summary(tmp_path / "run", "etcd-cluster_external", "leader-isolated")
    assert summary["status"] == "skipped"
    assert "refused on a server the harness did not start" in str(summary["reason"])
    assert their_etcd.leader() == leader


@pytest.mark.etcd
def test_partition_of_the_holder_cuts_its_proxies_to_every_member_of_their_etcd_cluster(
        their_etcd: EtcdCluster, tmp_path: Path) -> None:
    leader = their_etcd.leader()
    assert main(["soak", "--url", their_etcd.url, "--scenario", "partition-holder", "--seed", "2", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    run = tmp_path / "run" / "etcd-cluster_external" / "partition-holder"
    summary = _summary(tmp_path / "run", "etcd-cluster_external", "partition-holder")
    assert summary["status"] == "ran"
    # The holder was cut off from the whole cluster (it walks to the next member otherwise): its
    # calls during the partition fail, and the cluster itself never noticed (same leader).
    ops = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    faults = [r for r in ops if r.get("type") == "fault" and r.get("fault") == "partition"]
    assert faults, "the partition never fired"
    start = min(r["time_ns"] for r in faults if r.get("phase") == "start")
    end = max(r["time_ns"] for r in faults if r.get("phase") == "end")
    victim = {r["target"] for r in faults}  # the partitioned worker's client
    failed = [r for r in ops if r.get("type") == "op" and start < r["invoke_ns"] and r["complete_ns"] < end
              and r["outcome"] == "indeterminate" and r["client"] in victim]
    assert failed, "no call of the partitioned holder failed: it reached a member around its proxies"
    healed = [r for r in ops if r.get("type") == "op" and r["invoke_ns"] > end and r["outcome"] in ("ok", "fail")
              and r["client"] in victim]
    assert healed, "the holder never got an answer again after the partition healed"
    assert their_etcd.leader() == leader


@pytest.mark.etcd
def test_purge_removes_the_run_keys_through_any_etcd_endpoint_that_answers(their_etcd: EtcdCluster) -> None:
    prefix = "lockchaos/run-purgetest1/"
    member = their_etcd.members[2]
    client = etcd3.client(host=member.host, port=member.port, timeout=2)
    try:
        client.put(prefix + "a", "1")
        client.put(prefix + "b", "2")
        client.put("app/keep", "3")
        endpoints = ",".join(f"{m.host}:{m.port}" for m in their_etcd.members)
        assert purge_prefix(f"etcd://127.0.0.1:{_dead_port()},{endpoints}", prefix) == 2
        assert list(client.get_prefix(prefix)) == []
        assert client.get("app/keep")[0] == b"3"
    finally:
        client.delete("app/keep")
        client.close()


@pytest.mark.redis
def test_purge_follows_the_primary_after_sentinel_promotes_a_replica() -> None:
    prefix = "lockchaos:run-purgetest2:"
    with SentinelCluster(route_peers=False) as cluster:
        old = cluster.leader()
        primary = _primary(cluster)
        try:
            primary.set(prefix + "a", "1")
            primary.set(prefix + "b", "2")
            primary.set("app:keep", "3")
            assert primary.wait(cluster.replicas, 5000) == cluster.replicas  # both replicas have them
        finally:
            primary.close()
        cluster.kill_member(old)
        deadline = time.monotonic() + 30
        while (new := cluster.leader()) == old:
            assert time.monotonic() < deadline, "no replica was promoted"
            time.sleep(0.1)
        assert purge_prefix(cluster.url, prefix, settle=True) == 2  # the Sentinels may still be agreeing
        promoted = _primary(cluster)
        try:
            assert cluster.leader() == new
            assert list(promoted.scan_iter(match=prefix + "*")) == []
            assert promoted.get("app:keep") == b"3"
        finally:
            promoted.close()


def test_settling_purge_gives_up_at_once_when_no_sentinel_answers() -> None:
    # The end-of-run purge waits out a failover only while a Sentinel answers: a group that is gone
    # must not hold the user's error back for the whole settle time.
    url = f"redis+sentinel://127.0.0.1:{_dead_port()},127.0.0.1:{_dead_port()}/mymaster"
    start = time.monotonic()
    with pytest.raises(InfrastructureError, match="could not remove the run's keys"):
        purge_prefix(url, "lockchaos:run-gone:", settle=True)
    assert time.monotonic() - start < 3.0


@pytest.mark.parametrize("argv, message", [
    (["--url", "etcd://127.0.0.1:2379,,127.0.0.1:2381"], "empty endpoint"),
    (["--url", "redis+sentinel://127.0.0.1:26379"], "must name one service"),
    (["--url", "redis+sentinel://127.0.0.1:26379/mymaster?wait_replicas=0"], "wait_replicas must be"),
    (["--url", "redis+sentinel://127.0.0.1:26379/mymaster?wait_timeout_ms=50"], "needs wait_replicas"),
    (["--url", "redis+sentinel://127.0.0.1:26379/m?wait_replicas=1&wait_timeout_ms=2000"], "must be below"),
    (["--backend", "redis", "--url", "redis+sentinel://127.0.0.1:26379/mymaster"], "does not match --url"),
    (["--backend", "redis-sentinel", "--url", "etcd://127.0.0.1:2379,127.0.0.1:2380"], "does not match --url"),
    (["--backend", "redlock", "--url", "redis://127.0.0.1:6379/0"], "runs only against a server the harness"),
])
def test_bad_cluster_url_exits_2_before_anything_runs(argv: list[str], message: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", *argv, "--scenario", "clean-handover", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("url", [
    "redis+sentinel://127.0.0.1:{0},127.0.0.1:{1}/mymaster",
    "etcd://127.0.0.1:{0},127.0.0.1:{1}",
])
def test_unreachable_cluster_is_one_line_exit_3_within_seconds(url: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    status = main(["soak", "--url", url.format(_dead_port(), _dead_port()), "--scenario", "clean-handover",
                   "--out", str(tmp_path / "run")])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert status == 3
    assert "cannot reach" in err and len(err.strip().splitlines()) == 1, err
    assert elapsed < UNREACHABLE_S
    assert not (tmp_path / "run").exists()


# --- WAIT: a grant counts once enough replicas acknowledged it ---------------------------------------


def test_sentinel_url_reads_wait_replicas_and_defaults_its_timeout_below_the_client_timeout() -> None:
    config = parse_sentinel_url("redis+sentinel://127.0.0.1:26379/mymaster?wait_replicas=2&timeout_ms=800")
    assert (config.wait_replicas, config.wait_timeout_ms) == (2, 400)
    plain = parse_sentinel_url("redis+sentinel://127.0.0.1:26379/mymaster")
    assert (plain.wait_replicas, plain.wait_timeout_ms) == (0, 0)
    with pytest.raises(ConfigurationError, match="wait_replicas must be"):
        parse_sentinel_url("redis+sentinel://127.0.0.1:26379/mymaster?wait_replicas=two")


@pytest.mark.redis
def test_short_acked_acquire_is_released_and_short_acked_renew_keeps_the_lease(their_sentinel: SentinelCluster) -> None:
    # Three acknowledgements asked of a group with two replicas: every grant comes back short (how
    # short depends on how fast the two replicas answer within 100 ms on a loaded machine).
    strict = open_backend(f"{their_sentinel.url}?prefix=waittest1:&wait_replicas=3&wait_timeout_ms=100")
    plain = open_backend(f"{their_sentinel.url}?prefix=waittest1:")
    try:
        assert strict.capabilities.replication == "async"
        with pytest.raises(BackendUnavailable, match=r"acknowledged by [0-2] of the 3 replica"):
            strict.acquire("k", "a", 5000)
        assert plain.holder("k") is None  # released again: the short grant holds nobody's lock
        assert plain.acquire("k", "b", 1000) is not None
        with pytest.raises(BackendUnavailable, match="previous lease stands"):
            strict.renew("k", "b", 5000)  # the owner's renew, short-acked: its lease is not taken away
        held = plain.holder("k")
        assert held is not None and held.owner == "b"
    finally:
        strict.close()
        plain.close()


@pytest.mark.redis
def test_grant_acknowledged_by_enough_replicas_is_on_them_when_returned(their_sentinel: SentinelCluster) -> None:
    lock = open_backend(f"{their_sentinel.url}?prefix=waittest2:&wait_replicas={their_sentinel.replicas}"
                        "&timeout_ms=6000&wait_timeout_ms=5000")  # a loaded machine's acks take time
    try:
        lease = lock.acquire("k", "a", 5000)
        assert lease is not None
        replicas = [n for n in their_sentinel.nodes if n.name != their_sentinel.leader()]
        for node in replicas:
            assert isinstance(node, RedisNode)
            client = redis.Redis(host=node.host, port=node.port, socket_timeout=2)
            try:
                assert client.hget(lock.lock_key("k"), "owner") == b"a"  # type: ignore[attr-defined]
            finally:
                client.close()
        assert lock.release("k", "a")
    finally:
        lock.close()


@pytest.mark.redis
def test_redis_sentinel_wait_backend_launches_a_group_whose_clients_wait_for_one_replica() -> None:
    from lockchaos.harness.servers.clusters import provision_cluster

    cluster = provision_cluster("redis-sentinel-wait")
    try:
        assert isinstance(cluster, SentinelCluster)
        lock = open_backend(cluster.url)
        try:
            assert lock.sentinel_config.wait_replicas == 1  # type: ignore[attr-defined]
            assert lock.capabilities.replication == "async"  # WAIT does not make Redis linearizable
            assert lock.acquire("k", "a", 2000) is not None
        finally:
            lock.close()
    finally:
        cluster.stop()
