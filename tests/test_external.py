"""A server the harness did not start: its other keys untouched, no key of ours left, no faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import etcd3
import pytest
import redis

from lockchaos.harness.cli import main
from lockchaos.harness.servers.process import EtcdServer, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.etcd]


@pytest.fixture
def their_redis() -> Iterator[tuple[str, redis.Redis]]:
    """Stands for someone else's Redis: it holds keys that are none of our business."""
    with RedisServer() as server:
        client = redis.Redis(host=server.host, port=server.port, socket_timeout=2)
        client.set("app:config", "precious")
        client.hset("lockchaos:not-ours", mapping={"a": "1"})
        client.set("sessions:42", "alive", px=600_000)
        yield server.url, client
        client.close()


def _snapshot(client: redis.Redis) -> dict[bytes, object]:
    return {k: client.dump(k) for k in client.scan_iter()}


def test_full_soak_on_their_redis_leaves_their_keys_and_none_of_ours(their_redis: tuple[str, redis.Redis],
                                                               tmp_path: Path) -> None:
    url, client = their_redis
    before = _snapshot(client)
    status = main(["soak", "--url", url, "--scenario", "all", "--ttl-ms", "200", "--seed", "1", "--quiet",
                   "--out", str(tmp_path / "run")])
    assert status == 0
    assert _snapshot(client) == before
    assert client.info("commandstats").get("cmdstat_flushdb") is None
    assert client.info("commandstats").get("cmdstat_flushall") is None


def test_server_faults_on_their_server_are_skipped_with_the_reason(their_redis: tuple[str, redis.Redis],
                                                                  tmp_path: Path) -> None:
    url, client = their_redis
    before = _snapshot(client)
    assert main(["soak", "--url", url, "--scenario", "server-restart", "--ttl-ms", "300",
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "redis_external" / "server-restart" / "summary.json").read_text())
    assert summary["status"] == "skipped"
    assert "refused on a server the harness did not start" in summary["reason"]
    assert _snapshot(client) == before


def test_partition_through_our_proxy_still_runs_on_their_loopback_server(their_redis: tuple[str, redis.Redis],
                                                                        tmp_path: Path) -> None:
    url, client = their_redis
    before = _snapshot(client)
    assert main(["soak", "--url", url, "--scenario", "partition-holder", "--ttl-ms", "300", "--seed", "2",
                 "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "redis_external" / "partition-holder" / "history.jsonl").is_file()
    assert _snapshot(client) == before


def test_contract_on_their_redis_cleans_up_and_skips_durability(their_redis: tuple[str, redis.Redis],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    url, client = their_redis
    before = _snapshot(client)
    assert main(["contract", "--url", url]) == 0
    assert "no server control" in capsys.readouterr().out
    assert _snapshot(client) == before


def test_soak_on_their_etcd_leaves_no_key_behind(tmp_path: Path) -> None:
    with EtcdServer() as server:
        client = etcd3.client(host=server.host, port=server.port, timeout=2)
        client.put("app/config", "precious")
        assert main(["soak", "--url", server.url, "--scenario", "clean-handover", "--ttl-ms", "1000",
                     "--out", str(tmp_path / "run")]) == 0
        keys = sorted(meta.key.decode() for _, meta in client.get_all())
        client.close()
    assert keys == ["app/config"]


def test_soak_on_their_loopback_etcd_cluster_faults_each_workers_links_to_every_member(tmp_path: Path) -> None:
    """A URL naming several members gets a proxy per worker in front of every member (the client moves
    to the next member when a call fails, so one proxy would cut half a link): a partition really cuts
    the holder off, and the run is judged like any other."""
    from lockchaos.harness.servers.clusters import EtcdCluster

    with EtcdCluster(route_peers=False) as cluster:
        assert main(["soak", "--url", cluster.url, "--scenario", "holder-crash", "--ttl-ms", "1000", "--quiet",
                     "--out", str(tmp_path / "crash")]) == 0
        assert main(["soak", "--url", cluster.url, "--scenario", "partition-holder", "--ttl-ms", "1000", "--quiet",
                     "--out", str(tmp_path / "partition")]) == 0
    crash = json.loads(next((tmp_path / "crash").glob("*/holder-crash/summary.json")).read_text())
    assert crash["checks"]["verdict"] == "pass"
    cut = json.loads(next((tmp_path / "partition").glob("*/partition-holder/summary.json")).read_text())
    assert cut["status"] == "ran" and cut["checks"]["verdict"] == "pass", cut
    assert cut["observations"]["faults"].get("partition") == 1, cut["observations"]


@pytest.mark.parametrize("argv, message", [
    (["soak", "--url", "mongo://x"], "must be a redis:// or etcd:// URL"),
    (["soak", "--url", "redis://127.0.0.1:1/0", "--backend", "etcd"], "does not match --url"),
    (["soak", "--url", "redis://127.0.0.1:1/0", "--server", "redis"], "not both"),
    (["soak", "--url", "redis://127.0.0.1:1/0", "--backend", "fake"], "cannot use it"),
])
def test_bad_external_usage_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unreachable_external_server_is_an_infrastructure_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--url", "redis://127.0.0.1:1/0"]) == 3
    assert "cannot reach" in capsys.readouterr().err
