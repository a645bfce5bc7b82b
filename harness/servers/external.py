"""Servers the harness did not start: a private key prefix per run, removed at the end, and no faults.

On someone else's Redis or etcd the harness must leave no trace and touch nothing of theirs: every
key lives under ``lockchaos-<run id>`` (inside the user's own ``prefix`` if the URL has one), the
prefix is deleted key by key when the run ends, and nothing is ever flushed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import unquote_plus, urlencode, urlsplit, urlunsplit

import tenacity

from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.backends.redaction import redact_text, redact_url
from lockchaos.backends.urlopts import scheme_of_url, split_url
from lockchaos.harness.servers.flags import LOOPBACK
from lockchaos.harness.servers.specs import SPECS_BY_SCHEME

SEPARATOR = {scheme: spec.key_separator for scheme, spec in SPECS_BY_SCHEME.items()}
DEFAULT_PREFIX = {scheme: spec.default_prefix for scheme, spec in SPECS_BY_SCHEME.items()}
# A Sentinel group is Redis behind Sentinels: Redis's keys, purged on the primary they name.
SEPARATOR["redis+sentinel"] = SEPARATOR["redis"]
DEFAULT_PREFIX["redis+sentinel"] = DEFAULT_PREFIX["redis"]
PURGE_TIMEOUT_S = 5.0
SENTINEL_SETTLE_S = 20.0
"""How long the end-of-run purge waits for a Sentinel group to name a writable primary again: a run
can end in the middle of a failover it caused (a leader fault in its last seconds)."""


def scheme_of(url: str) -> str:
    scheme = scheme_of_url(url)
    if scheme not in SEPARATOR:
        raise ConfigurationError(f"--url must be a redis:// or etcd:// URL (a cluster: etcd://h1:p,h2:p,... or "
                                 f"redis+sentinel://h1:p,h2:p/SERVICE), got {redact_url(url)!r}")
    return scheme


def is_cluster_url(url: str) -> bool:
    """Whether the URL names a cluster (several etcd members, or a Sentinel group), which no single
    per-worker fault proxy can stand in front of."""
    return scheme_of_url(url) == "redis+sentinel" or "," in urlsplit(url).netloc


def with_run_prefix(url: str, run_id: str | None = None) -> tuple[str, str]:
    """The URL with a fresh per-run ``prefix`` option, and that prefix. Every other option is kept as
    the user wrote it (a user's adapter may read options we do not know)."""
    scheme = scheme_of(url)
    parts = split_url(url, scheme)
    pieces = [p for p in parts.query.split("&") if p]
    theirs = [p for p in pieces if unquote_plus(p.partition("=")[0]) == "prefix"]
    base = unquote_plus(theirs[-1].partition("=")[2]) if theirs else DEFAULT_PREFIX[scheme]
    prefix = f"{base}run-{run_id or uuid.uuid4().hex[:12]}{SEPARATOR[scheme]}"
    query = "&".join([p for p in pieces if p not in theirs] + [urlencode({"prefix": prefix})])
    return urlunsplit(parts._replace(query=query)), prefix


def is_loopback(url: str) -> bool:
    hosts = [h.rsplit(":", 1)[0] for h in urlsplit(url).netloc.rsplit("@", 1)[-1].split(",")]
    return all(h in (LOOPBACK, "localhost") for h in hosts)


def purge_prefix(url: str, prefix: str, *, settle: bool = False) -> int:
    """Delete every key under ``prefix`` (ours alone, by construction); returns how many.

    ``settle`` (the purge at a run's normal end) waits, bounded, for a Sentinel group that still
    answers to name a writable primary again. A purge after a failed start must not: the servers
    may be unreachable, and that error must reach the user within seconds."""
    scheme = scheme_of(url)
    if "run-" not in prefix:
        raise ConfigurationError(f"refusing to purge {prefix!r}: not a per-run lockchaos prefix")
    try:
        if scheme == "redis+sentinel":
            return _purge_sentinel(url, prefix, SENTINEL_SETTLE_S if settle else 0.0)
        if is_cluster_url(url):
            return _purge_etcd_cluster(url, prefix)
        return SPECS_BY_SCHEME[scheme].purge(url, prefix)
    except ConfigurationError:
        raise
    except Exception as exc:
        why = redact_text(str(exc))
        raise InfrastructureError(f"could not remove the run's keys under {prefix!r}: {why}") from None


def _purge_etcd_cluster(url: str, prefix: str) -> int:
    """Through the first member that answers: a cluster with a member down (or the first one
    unreachable from here) still has its run's keys removed, as long as a majority serves."""
    from lockchaos.backends.etcd import parse_etcd_url

    errors: list[str] = []
    for host, port in parse_etcd_url(url).endpoints:
        try:
            return SPECS_BY_SCHEME["etcd"].purge(f"etcd://{host}:{port}", prefix)
        except Exception as exc:
            errors.append(f"{host}:{port}: {type(exc).__name__}: {exc}")
    raise InfrastructureError("no etcd endpoint answered: " + "; ".join(errors))


def _purge_sentinel(url: str, prefix: str, settle_s: float) -> int:
    """On the primary the Sentinels name now (replicas follow it; a replica refuses writes).

    Mid-failover the Sentinels answer but name no primary in good standing ("No master found"), or
    name one that is still a replica (read-only): retried for up to ``settle_s`` while one of them
    answers at all. When none answers there is nothing to wait for: the error is raised at once."""
    from lockchaos.backends.sentinel import discover_primary, sentinel_answers

    def attempt() -> int:
        host, port = discover_primary(url, PURGE_TIMEOUT_S)
        return SPECS_BY_SCHEME["redis"].purge(f"redis://{host}:{port}/0", prefix)

    if settle_s <= 0:
        return attempt()
    settling: Callable[[BaseException], bool] = lambda _exc: sentinel_answers(url, 0.5)  # noqa: E731
    retrying = tenacity.Retrying(stop=tenacity.stop_after_delay(settle_s), wait=tenacity.wait_fixed(0.25),
                                 retry=tenacity.retry_if_exception(settling), reraise=True)
    return int(retrying(attempt))
