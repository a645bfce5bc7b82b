"""What lockchaos finds in popular Python locks: each library's contract and scenario catalogue, one table.

    .venv/bin/python bench/library_findings.py [--libs redis-py-lock,pottery,...] [--seed 1]
                                               [--scenario all] [--out DIR] [--no-soak | --soak-dir DIR]
    make library-findings

For every library backend (``lockchaos[libs]``): runs ``lockchaos contract --backend NAME`` (in this
process) and ``lockchaos soak --backend NAME --scenario all`` (a subprocess, timed: the wall time is
reported), collects every failed rule and every non-passing checker finding, and gives each one the
verdict README's table states for it: ``defect`` (the library breaks its own lock semantics),
``declared hazard`` (a lock without fencing tokens doing what such locks do), ``by design`` (a
documented behaviour the contract's generic rules do not fit), ``harness false alarm`` (lockchaos is
wrong, reported upstream). A finding no entry explains is printed as ``UNCLASSIFIED``: read its run,
then fix the harness or add the verdict, never the table alone. Prints a markdown table and writes it,
with the raw findings as JSON, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from lockchaos.backends.libs import LIBRARIES
from lockchaos.harness.contract.runner import run_contract
from lockchaos.harness.run.targets import LIBRARY_BACKENDS, backend_target, provisioned


@dataclass(frozen=True, slots=True)
class Verdict:
    """How README's table judges one kind of finding, and why (the mechanism, naming the library's function)."""

    libraries: tuple[str, ...]
    source: str  # "contract" or "soak"
    where: str  # a contract rule, or a soak scenario ("*": any)
    match: str  # a substring of "checker/kind: message" (soak) or of the rule's message (contract)
    verdict: str
    finding: str


V = Verdict
REDIS_LIBS = tuple(n for n, spec in LIBRARIES.items() if spec.server_kind == "redis")
VERDICTS: tuple[Verdict, ...] = (
    # --- defects -----------------------------------------------------------------------------------
    V(("python-redis-lock", "python-redis-lock-autorenew"), "contract", "declared_minimum_ttl_is_applied",
      "invalid expire time", "defect",
      "Lock(expire=0.5) truncates with int(expire) and acquire() sends SET EX 0, which Redis refuses"),
    V(("sherlock",), "contract", "*", "not an integer", "defect",
      "RedisLock._acquire's script runs SETNX, then EXPIRE with the float expire it documents; EXPIRE refuses "
      "it after SETNX applied, so the key stays locked with no TTL"),
    V(("etcd3-lock",), "contract", "renew_after_expiry_fails", "renew after expiry returned", "defect",
      "Lock.refresh() returns normally for an expired lease (etcd answers the keep-alive with TTL 0) and never "
      "checks the key is still its own"),
    V(("etcd3-lock",), "soak", "*", "renew-after-end", "defect",
      "Lock.refresh() accepted after expiry: the holder believes it renewed a lease that is gone"),
    V(("etcd3-lock",), "soak", "*", "double-grant", "defect",
      "follows from Lock.refresh() accepted after expiry: the holder was told it renewed, and another client "
      "rightly got the free key"),
    V(("etcd3-lock",), "soak", "*", "release-refused-for-holder", "defect",
      "follows from Lock.refresh() accepted after expiry: release() of the 'renewed' lock finds the key gone"),
    V(("etcd3-lock",), "soak", "*", "liveness/no-recovery", "defect",
      "follows from the failed-node refusal: every client is stuck, so nobody takes the free lock after the "
      "server recovered"),
    V(("etcd3-lock",), "soak", "*", "stuck-client", "defect",
      "after one UNAVAILABLE/DEADLINE_EXCEEDED the single-endpoint client marks its endpoint failed for 300 s "
      "(Endpoint.fail, time_retry=300); every call raises 'Trying to use a failed node'"),
    V(REDIS_LIBS, "soak", "*", "slow-call/slow-call", "defect",
      "redis-py >= 6's default Retry (10 retries, jittered backoff up to 10 s) on the client the library is "
      "given re-sends the lock's release script after each socket timeout, and the library does not turn it off: "
      "one lost-reply release blocked ~15 s under a 1 s TTL and a 1 s socket timeout"),
    V(("python-redis-lock-autorenew",), "soak", "*", "AlreadyStarted", "defect",
      "the auto-renewal thread dies on its first failed extend (NotAcquired raised in Lock._lock_renewer) but "
      "stays registered; the next acquire() on that Lock takes the key, then _start_lock_renewer raises "
      "AlreadyStarted: the caller is told it failed while it holds a lock nobody renews"),
    V(("python-redis-lock-autorenew",), "soak", "*", "conformance/", "harness false alarm",
      "the library's own thread renews the lease, and those renewals are not in the history: the checkers "
      "judge the lease ended when the worker stopped renewing (needs background renewal judged, issue 13)"),
    V(("python-redis-lock-autorenew",), "soak", "*", "slow-failover", "harness false alarm",
      "the paused worker's renewal thread keeps running (thread workers pause one thread, a GC pause stops the "
      "whole process), so the lock rightly stays held"),
    V(REDIS_LIBS, "soak", "*", "refused-free-key", "defect",
      "the acquire (redis-py Lock.do_acquire's SET NX, sherlock's SETNX script, pottery's SET NX) is re-sent by "
      "redis-py's default Retry after a socket timeout; when the first copy was applied, the retry finds the key "
      "taken and acquire() returns False: the key is held by a token nobody has, until its TTL"),
    V(("pottery",), "soak", "*", "exclusion-grants/double-grant", "defect",
      "Redlock.release() with the default raise_on_redis_errors=False swallows the RedisError of a release whose "
      "reply was lost (redis-py's retry then finds the key gone) and raises ReleaseUnlockedLock, 'not yours', "
      "for a release that was applied: the caller is told it never held a lock another client now holds"),
    V(("etcd3-lock",), "soak", "*", "NOT_FOUND", "defect",
      "Lock._try_acquire grants a lease, then puts the key with it in a Txn; when a slow reply lets the lease "
      "expire in between, etcd answers NOT_FOUND and acquire() raises a raw grpc _InactiveRpcError (no etcd3 "
      "exception, no False)"),
    V(("sherlock",), "soak", "*", "never-expiring-lock", "defect",
      "RedisLock._acquire's SETNX applied, its EXPIRE with a fractional expire refused: the key has no TTL"),
    V(("sherlock",), "soak", "*", "not an integer", "defect",
      "RedisLock._acquire's script fails at EXPIRE with a fractional expire, after its SETNX applied"),
    V(("etcd3-lock",), "soak", "*", "leaked-lease", "defect",
      "Lock._try_acquire grants a lease before its Txn and drops it when the Txn fails; Lock.release deletes the "
      "key without revoking: leases pile up until their TTL (they hold no lock, so the run stays known-unsafe)"),
    # --- declared hazards: no fencing tokens ------------------------------------------------------------
    V(tuple(LIBRARIES), "soak", "*", "stale-write", "declared hazard",
      "no fencing token: a holder whose lease ended (pause, partition, slow reply) still writes"),
    # --- by design ---------------------------------------------------------------------------------------
    V(("python-redis-lock-autorenew",), "contract", "*", "outlived", "by design",
      "auto_renewal=True: the library's thread extends the lock every expire*2/3 s until release, so the "
      "contract's expiry rules (written for locks renewed by their caller) cannot hold"),
    V(("python-redis-lock-autorenew",), "contract", "*", "still held after", "by design",
      "auto_renewal=True: the library's thread keeps extending the lock, so it outlives the TTL the contract "
      "waits out"),
    V(("pottery",), "contract", "declared_minimum_ttl_is_applied", "returned None", "by design",
      "Redlock._acquire_masters grants only while auto_release_time - drift - elapsed > 0: a 1 ms lease is "
      "never granted (the interface cannot declare 'refuses with None below X')"),
    # --- what a presence-only, tokenless lock cannot be asked (until the contract judges holder_info) --
    V(tuple(LIBRARIES), "contract", "*", "token is None, not an int", "harness false alarm",
      "contract: acquire_free_key_grants checks an int token although fencing_tokens=False"),
    V(tuple(LIBRARIES), "contract", "*", "owner=''", "harness false alarm",
      "contract compares holder() with the full lease although holder_info='presence'"),
    V(tuple(LIBRARIES), "contract", "*", "changed the", "harness false alarm",
      "contract compares holder() with the full lease although holder_info='presence'"),
)


@dataclass(frozen=True, slots=True)
class Finding:
    library: str
    source: str
    where: str
    text: str
    count: int = 1


def classify(f: Finding) -> tuple[str, str]:
    for v in VERDICTS:
        if f.library in v.libraries and v.source == f.source and v.where in ("*", f.where) and v.match in f.text:
            return v.verdict, v.finding
    return "UNCLASSIFIED", f.text


def contract_findings(name: str) -> list[Finding]:
    found = []
    with provisioned(backend_target(name, persistence=True)) as env:
        for r in run_contract(env.client_factory(), server=env):
            if r.status == "failed":
                found.append(Finding(name, "contract", r.rule, r.message.splitlines()[0] if r.message else ""))
    return found


def soak(name: str, out: Path, seed: int, scenario: str) -> tuple[float, int]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lockchaos", "soak", "--backend", name, "--scenario", scenario,
                           "--seed", str(seed), "--out", str(out), "--quiet"], check=False)
    return time.monotonic() - start, done.returncode


def soak_findings(name: str, out: Path) -> list[Finding]:
    counts: dict[tuple[str, str], int] = {}
    for summary in sorted(out.glob("*/*/summary.json")):
        data = json.loads(summary.read_text())
        checks = data.get("checks") or {}
        for checker, result in (checks.get("checkers") or {}).items():
            if result.get("verdict") in ("pass", "skipped"):
                continue
            for item in result.get("first") or [{"kind": result.get("verdict"), "message": ""}]:
                text = f"{checker}/{item.get('kind')}: {item.get('message', '')}"
                k = (data["scenario"], text.split(":", 1)[0] + ": " + _shape(item.get("message", "")))
                counts[k] = counts.get(k, 0) + 1
    found = [Finding(name, "soak", scenario, text, n) for (scenario, text), n in sorted(counts.items())]
    index = out / "index.json"
    if index.exists():  # a run that could not be judged is a finding too: never an empty, clean row
        for line in json.loads(index.read_text()).get("infrastructure_failures", []):
            scenario = line.split(":", 1)[0].rsplit("/", 1)[-1]
            found.append(Finding(name, "soak", scenario, f"infrastructure: {line.split(': ', 1)[-1]}"))
    return found


def _shape(message: str) -> str:
    """The message without its numbers and client names, so repeats of one finding are counted once."""
    words = [w for w in message.split() if not any(ch.isdigit() for ch in w)]
    return " ".join(words)[:160]


def reproduce(f: Finding, seed: int) -> str:
    if f.source == "contract":
        return f"lockchaos contract --backend {f.library}"
    return f"lockchaos soak --backend {f.library} --scenario {f.where} --seed {seed}"


def table(findings: list[Finding], seed: int) -> str:
    """One row per library and judged finding, with every rule or scenario that showed it."""
    rows: dict[tuple[str, str, str], list[Finding]] = {}
    for f in findings:
        verdict, finding = classify(f)
        rows.setdefault((f.library, verdict, finding), []).append(f)
    lines = ["| library (version) | finding | verdict | seen in | reproduce |", "|---|---|---|---|---|"]
    for (library, verdict, finding), seen in rows.items():
        lib = f"{library} ({version(LIBRARIES[library].distribution)})"
        where = ", ".join(sorted({f"{f.source} {f.where}" for f in seen}))
        lines.append(f"| {lib} | {finding} | {verdict} | {where} | `{reproduce(seen[0], seed)}` |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libs", default=",".join(LIBRARY_BACKENDS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", default="all")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-soak", action="store_true", help="the contract only")
    parser.add_argument("--soak-dir", type=Path, metavar="DIR",
                        help="judge soaks already run (DIR/NAME is `lockchaos soak --backend NAME --out DIR/NAME`)")
    args = parser.parse_args()
    libs = [n for n in args.libs.split(",") if n]
    unknown = sorted(set(libs) - set(LIBRARIES))
    if unknown:
        parser.error(f"unknown libraries {unknown}; choose from {', '.join(LIBRARY_BACKENDS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="lockchaos-library-findings-"))
    out.mkdir(parents=True, exist_ok=True)
    findings: list[Finding] = []
    walls: list[str] = []
    for name in libs:
        findings += contract_findings(name)
        if args.soak_dir is not None:
            findings += soak_findings(name, args.soak_dir / name)
        elif not args.no_soak:
            wall, status = soak(name, out / name, args.seed, args.scenario)
            walls.append(f"| {name} | {wall:.0f} s | {status} |")
            findings += soak_findings(name, out / name)
    text = table(findings, args.seed)
    if walls:
        text += "\n\n| library | catalogue soak wall time | exit status |\n|---|---|---|\n" + "\n".join(walls)
    print(text)
    (out / "findings.md").write_text(text + "\n")
    (out / "findings.json").write_text(json.dumps([asdict(f) for f in findings], indent=2) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 1 if any(classify(f)[0] == "UNCLASSIFIED" for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
