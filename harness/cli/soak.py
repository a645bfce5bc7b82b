"""``lockchaos soak``: run scenarios against backends, each backend in its own thread, with progress."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lockchaos.backends.base import FaultUnsupported
from lockchaos.backends.redaction import redact_text
from lockchaos.harness import exitcodes
from lockchaos.harness.cli.check import STYLE, print_findings
from lockchaos.harness.report import write_index, write_junit
from lockchaos.harness.run import interrupts
from lockchaos.harness.run.atomicfile import write_atomic
from lockchaos.harness.run.driver import RunOptions, RunResult, run_dir_of, run_scenario
from lockchaos.harness.run.history import FaultRecord, OpRecord, Record
from lockchaos.harness.run.rundir import claim, default_run_dir
from lockchaos.harness.run.targets import Target, probe_client, provisioned
from lockchaos.harness.scenarios import Scenario
from lockchaos.harness.servers.specs import SPECS_BY_SCHEME

DEFAULT_TTL_MS = {"fake": 1000, **{kind: spec.soak_ttl_ms for kind, spec in SPECS_BY_SCHEME.items()},
                  "etcd-cluster": 2000, "redis-sentinel": 1000, "redlock": 1000}
"""Each server's own (``servers/specs``): etcd leases are whole seconds and expire up to ~0.5 s late."""


@dataclass(frozen=True, slots=True)
class SoakPlan:
    targets: tuple[Target, ...]
    scenarios: tuple[Scenario, ...]
    options: RunOptions
    ttl_ms: int | None
    out_dir: Path
    output: str = "rich"  # rich (progress and table), quiet (one line), json (the index on stdout)
    default_out: bool = False  # no --out: a new lockchaos-runs/<timestamp>, named when the run starts


def _options_for(plan: SoakPlan, target: Target) -> RunOptions:
    ttl = plan.ttl_ms if plan.ttl_ms is not None else DEFAULT_TTL_MS.get(target.server_kind, 1000)
    return replace(plan.options, ttl_ms=ttl)


def run_soak(plan: SoakPlan, console: Console) -> int:
    for target in plan.targets:  # a user's factory is checked before anything runs (exit 2 if broken)
        if target.adapter_spec is not None:
            with provisioned(target) as env:
                probe_client(env)
    # Claimed only now, so that a broken adapter leaves nothing behind; a second run on it exits 2 here.
    plan = replace(plan, out_dir=claim(default_run_dir() if plan.default_out else plan.out_dir))
    results: list[RunResult] = []
    infra: list[str] = []
    lock = threading.Lock()
    with Progress(TextColumn("{task.description:8}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                  TextColumn("{task.fields[now]:24} ops {task.fields[ops]:>7} faults {task.fields[faults]:>4}"),
                  console=console, transient=False, disable=not console.is_terminal or plan.output != "rich"
                  ) as progress:

        def drive(target: Target) -> None:
            task = progress.add_task(target.label, total=len(plan.scenarios), now="", ops=0, faults=0)
            opts = _options_for(plan, target)
            counts = {"ops": 0, "faults": 0, "records": 0}

            def count(rec: Record) -> None:
                counts["records"] += 1
                if isinstance(rec, OpRecord):
                    counts["ops"] += 1
                elif isinstance(rec, FaultRecord) and rec.phase == "start":
                    counts["faults"] += 1
                if counts["records"] % 256 == 0:
                    progress.update(task, ops=counts["ops"], faults=counts["faults"])

            for scenario in plan.scenarios:
                if interrupts.STOP.is_set():
                    break
                progress.update(task, now=scenario.name)
                try:
                    result = run_scenario(target, scenario, opts, plan.out_dir, on_record=count)
                except FaultUnsupported as exc:  # found mid-run: the driver wrote no summary of its own
                    result = RunResult(target.label, scenario.name, "skipped", redact_text(str(exc)),
                                       run_dir_of(plan.out_dir, target, scenario), opts.seed, 0.0, 0.0, None)
                except Exception as exc:  # a server that would not start, an adapter that blew up
                    with lock:
                        infra.append(f"{target.label}/{scenario.name}: {type(exc).__name__}: {redact_text(str(exc))}")
                    progress.advance(task)
                    continue
                with lock:
                    results.append(result)
                progress.advance(task)
            progress.update(task, now="done")

        threads = [threading.Thread(target=drive, args=(t,), name=f"soak-{t.label}", daemon=True)
                   for t in plan.targets]
        with interrupts.deferred():  # Ctrl-C / SIGTERM set STOP; the drivers wind down and return
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
    interrupted = interrupts.STOP.is_set()
    index = _write_index(plan, results, infra)
    write_index(plan.out_dir)
    write_junit(plan.out_dir)
    failures = [r for r in results if r.judgement is not None and r.judgement.failed]
    if plan.output == "json":
        console.print_json(data=index)
    elif plan.output == "quiet":
        counts = {v: sum(1 for r in index["runs"] if r["verdict"] == v) for v in ("pass", "known-unsafe", "fail")}
        console.print(f"{len(results)} runs: {counts['pass']} pass, {counts['known-unsafe']} known-unsafe, "
                      f"{counts['fail']} fail, {sum(r.status == 'skipped' for r in results)} skipped; "
                      f"{len(infra)} infrastructure failures; {plan.out_dir}", soft_wrap=True, highlight=False)
    else:
        console.print(_table(results, plan))
        console.print(f"run directory: {plan.out_dir}", soft_wrap=True, highlight=False)
    for line in infra:
        if plan.output != "json":
            console.print(f"[bold red]infrastructure:[/] {line}", soft_wrap=True, highlight=False)
    if interrupted:
        console.print(f"interrupted: partial histories in {plan.out_dir}", soft_wrap=True, highlight=False)
        return interrupts.exit_status()
    for r in failures if plan.output != "json" else []:
        assert r.judgement is not None
        console.print(f"[bold red]FAILED[/] {r.backend}/{r.scenario}: {', '.join(r.judgement.failing())} "
                      f"(seed {r.seed}; details in {r.run_dir / 'summary.json'})", soft_wrap=True, highlight=False)
        if plan.output == "rich":
            print_findings(console, r.judgement)
    if infra:
        return exitcodes.INFRASTRUCTURE
    return exitcodes.CHECK_FAILED if failures else exitcodes.OK


def _table(results: Sequence[RunResult], plan: SoakPlan) -> Table:
    order = {s.name: i for i, s in enumerate(plan.scenarios)}
    table = Table(title="lockchaos soak")
    for col in ("backend", "scenario", "verdict", "acquired", "faults", "stale writes (accepted)",
                "token regressions", "failover p50/max", "ops/s (of capacity)", "time"):
        table.add_column(col)
    for r in sorted(results, key=lambda r: (r.backend, order.get(r.scenario, 0))):
        o = r.observations
        if o is None or r.judgement is None:
            table.add_row(r.backend, r.scenario, f"[dim]{r.status}[/]", "", "", "", "", "", "", "")
            table.add_row("", f"[dim]{r.reason}[/]", "", "", "", "", "", "", "", "")
            continue
        j = r.judgement
        verdict = f"[{STYLE[j.verdict]}]{j.verdict}[/]" + (f" ({', '.join(j.failing())})" if j.failed else "")
        live = next((x.stats for x in j.results if x.checker == "liveness"), {})
        failover = f"{live['p50_s']:.2f}/{live['max_s']:.2f}s" if "p50_s" in live else ""
        table.add_row(r.backend, r.scenario, verdict, str(o.acquisitions), str(sum(o.faults.values())),
                      f"{o.stale_writes} ({o.stale_writes_accepted})", str(o.token_regressions), failover,
                      _rate(r.throughput),
                      f"{r.wall_s:.1f}s" + (f" ({r.simulated_s:.0f}s sim)" if r.simulated_s > r.wall_s * 2 else ""))
    return table


def _rate(throughput: dict[str, Any] | None) -> str:
    """Lock calls per second driven, and the share of the server's raw capacity when it was measured."""
    if throughput is None:
        return ""
    total = float(throughput["ops_per_s"]["total"])
    ratio = throughput.get("capacity_ratio")
    return f"{total:,.0f}" + (f" ({ratio:.0%})" if isinstance(ratio, float | int) else "")


def _write_index(plan: SoakPlan, results: Sequence[RunResult], infra: Sequence[str]) -> dict[str, Any]:
    index: dict[str, Any] = {
        "seed": plan.options.seed,
        "runs": [{"backend": r.backend, "scenario": r.scenario, "status": r.status, "reason": r.reason,
                  "verdict": None if r.judgement is None else r.judgement.verdict,
                  "dir": str(r.run_dir.relative_to(plan.out_dir))}
                 for r in results],
        "infrastructure_failures": list(infra),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomic(plan.out_dir / "index.json", json.dumps(index, indent=2) + "\n")
    return index
