"""The soak driver: one scenario, one backend, workers and nemesis concurrently, one history.

The same code runs on real time (real servers, or the fake) and on virtual time (the fake only),
because workers, nemesis and the fake all wait through the runtime's clock.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from lockchaos.backends.base import ConfigurationError, FaultUnsupported, LockChaosError
from lockchaos.backends.redaction import redact_text
from lockchaos.harness.checkers.model import History, load_history
from lockchaos.harness.checkers.verdicts import SUMMARY_FILE, Judgement, judge
from lockchaos.harness.faults.nemesis import Nemesis
from lockchaos.harness.faults.registry import FAULTS
from lockchaos.harness.report import write_report
from lockchaos.harness.run import capacity, interrupts
from lockchaos.harness.run.atomicfile import disk_error, is_disk_error, write_atomic
from lockchaos.harness.run.environments import Environment, FakeEnvironment, ServerEnvironment
from lockchaos.harness.run.history import (
    HISTORY_FILE,
    HistoryWriter,
    NoteRecord,
    OpRecord,
    Record,
    WriteRecord,
    lease_dict,
)
from lockchaos.harness.run.lateness import SchedulingProbe, ServerProbe
from lockchaos.harness.run.observations import Observations, Tally
from lockchaos.harness.run.procworker import WORKERS_LOG, ProcessWorker, process_worker, uses_processes
from lockchaos.harness.run.promotions import PromotionProbe, RaftCluster
from lockchaos.harness.run.register import FencedRegister
from lockchaos.harness.run.reproduce import Invocation, reproduce_command
from lockchaos.harness.run.runtime import RealRuntime, Runtime, VirtualRuntime
from lockchaos.harness.run.targets import Target
from lockchaos.harness.run.worker import Timing, Worker
from lockchaos.harness.scenarios import FaultStep, Scenario, fault_kinds, soak_schedule

LOCK_KEY = "lockchaos/soak"
SCHEDULE_LISTED = 1000
"""The meta record lists at most this many faults: a month-long soak's schedule is drawn as it runs."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    seed: int = 1
    ttl_ms: int = 1000
    workers: int | None = None
    duration_s: float | None = None
    virtual_time: bool = False
    strict: bool = False
    keys: int | None = None
    """How many lock keys the workers share (None: the scenario's own; ``stress`` has many)."""
    workers_mode: Literal["auto", "process", "thread"] = "auto"
    """Real time: each worker in its own OS process, or a thread of the driver; ``auto`` is processes
    against a real server and threads on the in-process fake, whose clients cannot leave the driver's
    memory anyway (virtual time: always in-process greenlets)."""


@dataclass(frozen=True, slots=True)
class RunResult:
    backend: str
    scenario: str
    status: Literal["ran", "skipped", "interrupted"]
    reason: str
    run_dir: Path
    seed: int
    wall_s: float
    simulated_s: float
    observations: Observations | None
    judgement: Judgement | None = None
    throughput: dict[str, Any] | None = None
    """Lock calls per second the run drove, by kind and in total, next to the server's raw capacity."""


JOIN_TIMEOUT_S = 30.0
"""How long the tasks get to return after a real-time run ends before a blocked worker's call is
recorded as indeterminate and its thread left behind (``_abandon_stuck``)."""

def _resolve(scenario: Scenario, opts: RunOptions) -> Scenario:
    """Apply CLI overrides; ``soak`` draws its schedule from the seed."""
    s = scenario
    if opts.workers is not None:
        s = replace(s, workers=opts.workers)
    if opts.duration_s is not None:
        s = replace(s, duration=opts.duration_s * 1000 / opts.ttl_ms)
    if opts.keys is not None:
        s = replace(s, keys=opts.keys)
    return s


def lock_keys(scenario: Scenario) -> tuple[str, ...]:
    """The keys a scenario's workers lock: the one ``LOCK_KEY``, or that many keys under it."""
    if scenario.keys <= 1:
        return (LOCK_KEY,)
    return tuple(f"{LOCK_KEY}/{i:04d}" for i in range(scenario.keys))


class _Rate:
    """Lock calls by kind while the workers run (not the quiesce's observer): the ops/s driven."""

    def __init__(self) -> None:
        self.ops: dict[str, int] = {}
        self.writes = 0
        self.counting = True

    def add(self, rec: Record) -> None:
        if not self.counting:
            return
        if isinstance(rec, OpRecord):
            if rec.client != "observer":
                self.ops[rec.op] = self.ops.get(rec.op, 0) + 1
        elif isinstance(rec, WriteRecord):
            self.writes += 1

    def throughput(self, seconds: float, cap: capacity.Capacity | None, why_none: str) -> dict[str, Any]:
        per_s = {op: round(n / seconds, 1) for op, n in sorted(self.ops.items())} if seconds > 0 else {}
        total = sum(self.ops.values()) / seconds if seconds > 0 else 0.0
        per_s["total"] = round(total, 1)
        capacity_ops = None if cap is None else cap.ops_per_s
        return {
            "seconds": round(seconds, 3), "ops": dict(sorted(self.ops.items())), "ops_per_s": per_s,
            "writes_per_s": round(self.writes / seconds, 1) if seconds > 0 else 0.0,
            "capacity": None if cap is None else asdict(cap),
            "capacity_ratio": None if not capacity_ops else round(total / capacity_ops, 3),
            **({"capacity_note": why_none} if cap is None or cap.ops_per_s is None else {}),
        }


def _probe_capacity(env: Environment, scenario: Scenario, opts: RunOptions) -> tuple[capacity.Capacity | None, str]:
    """The server's raw capacity, measured once before a many-key run (none on virtual time)."""
    if scenario.keys <= 1:
        return None, "measured for many-key (stress) runs only"
    if opts.virtual_time:
        return None, "virtual time: ops per simulated second have no wall-clock yardstick"
    fake = env.fake if isinstance(env, FakeEnvironment) else None
    url = env.handle.url if isinstance(env, ServerEnvironment) else None
    try:
        return capacity.measure(url=url, fake=fake, workers=scenario.workers, prefix=f"{LOCK_KEY}-capacity/"), ""
    except Exception as exc:  # the yardstick is a footnote: a failed probe must not cost the run
        return None, f"capacity probe failed: {type(exc).__name__}: {redact_text(str(exc))}"


def _environment(target: Target, scenario: Scenario, runtime: Runtime, opts: RunOptions) -> Environment:
    timeout_ms = None if scenario.client_timeout is None else round(scenario.client_timeout * opts.ttl_ms)
    if target.server_kind == "fake":
        return FakeEnvironment(target, runtime, durable=scenario.persistence, timeout_ms=timeout_ms)
    if opts.virtual_time:
        raise ConfigurationError("--virtual-time runs the fake only")
    clock = any(FAULTS[k].target == "clock" for k in fault_kinds(scenario) if k in FAULTS)
    return ServerEnvironment(target, runtime, persistence=scenario.persistence, timeout_ms=timeout_ms,
                             clock_faults=clock)


def run_scenario(target: Target, scenario: Scenario, opts: RunOptions, out_dir: Path,
                 on_record: Callable[[Record], None] | None = None) -> RunResult:
    """Run one scenario against one target; ``on_record`` sees every history record (progress)."""
    scenario = _resolve(scenario, opts)
    run_dir = run_dir_of(out_dir, target, scenario)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if is_disk_error(exc):
            raise disk_error(run_dir, exc) from None
        raise
    runtime: Runtime = (VirtualRuntime() if opts.virtual_time
                        else RealRuntime(join_timeout_s=JOIN_TIMEOUT_S, stuck_is_error=False))
    wall0 = time.monotonic()
    try:
        env = _environment(target, scenario, runtime, opts)
    except Exception as exc:  # say so in the run directory: an empty one would look like a result
        _write_summary(run_dir, target, scenario, opts, "error", f"{type(exc).__name__}: {redact_text(str(exc))}",
                       None, 0.0, 0.0)
        raise
    tally = Tally()
    try:
        recorded = _run_in(env, target, scenario, opts, run_dir, runtime, wall0, tally, on_record)
    except BaseException:
        with contextlib.suppress(Exception):  # a teardown error must not hide the run's own
            env.close()
        raise
    env.close()  # before the checks: they need the history only, and a stop must not wait on servers
    if isinstance(recorded, RunResult):
        return recorded
    interrupted, simulated, throughput = recorded
    return _conclude(target, scenario, opts, run_dir, wall0, interrupted, simulated, tally, throughput)


def _run_in(env: Environment, target: Target, scenario: Scenario, opts: RunOptions, run_dir: Path,
            runtime: Runtime, wall0: float, tally: Tally,
            on_record: Callable[[Record], None] | None) -> RunResult | tuple[bool, float, dict[str, Any]]:
    """Record the run's history: a RunResult if it was skipped, else (interrupted, simulated seconds,
    throughput)."""
    rng = random.Random(opts.seed)
    kinds = fault_kinds(scenario)
    refused = {k: why for k in sorted(kinds) if (why := env.unsupported(k)) is not None}
    steps: Iterable[FaultStep]
    if scenario.random_faults:
        schedule_seed, drawable = rng.randrange(2**32), kinds - set(refused)
        steps = soak_schedule(scenario.duration, schedule_seed, drawable)
        listed = list(itertools.islice(soak_schedule(scenario.duration, schedule_seed, drawable),
                                       SCHEDULE_LISTED + 1))
    else:
        steps = scenario.faults
        if refused:
            reason = "; ".join(refused.values())
            _write_summary(run_dir, target, scenario, opts, "skipped", reason, None, 0.0, 0.0)
            return RunResult(target.label, scenario.name, "skipped", reason, run_dir, opts.seed,
                             time.monotonic() - wall0, 0.0, None)
        listed = list(steps)
    if env.capabilities.refuses_ttl(opts.ttl_ms):
        reason = (f"{target.label} declares it refuses TTLs below {env.capabilities.min_ttl_ms} ms; "
                  f"run with --ttl-ms {env.capabilities.min_ttl_ms} or more")
        _write_summary(run_dir, target, scenario, opts, "skipped", reason, None, 0.0, 0.0)
        return RunResult(target.label, scenario.name, "skipped", reason, run_dir, opts.seed,
                         time.monotonic() - wall0, 0.0, None)
    if scenario.persistence is not None and scenario.persistence != env.capabilities.durable:
        reason = (f"needs a {'durable' if scenario.persistence else 'non-durable'} server; "
                  f"{target.label} declares durable={env.capabilities.durable}")
        _write_summary(run_dir, target, scenario, opts, "skipped", reason, None, 0.0, 0.0)
        return RunResult(target.label, scenario.name, "skipped", reason, run_dir, opts.seed,
                         time.monotonic() - wall0, 0.0, None)

    cap, why_no_cap = _probe_capacity(env, scenario, opts)
    keys = lock_keys(scenario)
    rate = _Rate()
    t0 = runtime.now_ns()
    history = HistoryWriter(run_dir / HISTORY_FILE, t0, buffered=opts.virtual_time)
    callbacks = [history.append, tally.add, rate.add, *([] if on_record is None else [on_record])]
    recording = threading.Lock()  # the tally counts records in the order the history holds them

    def record(rec: Record) -> None:
        with recording:
            for callback in callbacks:
                callback(rec)

    workers: list[Worker | ProcessWorker] = []
    # How late a loaded machine runs the harness and the server: an unanswered call may land that late.
    probes: list[SchedulingProbe | ServerProbe | PromotionProbe] = [] if opts.virtual_time else [
        SchedulingProbe(runtime.now_ns, record), ServerProbe(runtime.now_ns, record, env.open_observer)]
    # A Raft cluster of ours elects on its own under load, and each new leader re-arms every lease.
    cluster = getattr(env.server, "cluster", None)
    if not opts.virtual_time and isinstance(cluster, RaftCluster):
        probes.append(PromotionProbe(runtime.now_ns, record, cluster))
    # Many keys (stress): threads by default, measured to drive 3-4x the lock calls of processes on two
    # cores (each process worker's records and register writes cross a pipe to the driver).
    mode = "thread" if opts.workers_mode == "auto" and scenario.keys > 1 else opts.workers_mode
    processes = uses_processes(target, mode, opts.virtual_time)
    try:
        caps = env.capabilities
        record(NoteRecord("meta", runtime.now_ns(), {
            "backend": target.label, "scenario": scenario.name, "seed": opts.seed,
            "ttl_ms": opts.ttl_ms, "workers": scenario.workers, "fencing": scenario.fencing,
            "virtual_time": opts.virtual_time, "duration_ttls": scenario.duration,
            "capabilities": asdict(caps), "key": LOCK_KEY, **({"keys": len(keys)} if len(keys) > 1 else {}),
            "schedule": [asdict(s) for s in listed[:SCHEDULE_LISTED]], "refused_faults": refused,
            "plan": asdict(scenario.plan), "workers_mode": "process" if processes else "thread",
            **({"schedule_listed": f"the first {SCHEDULE_LISTED} faults of a longer schedule"}
               if len(listed) > SCHEDULE_LISTED else {}),
        }))
        for probe in probes:
            probe.start()
        register = FencedRegister(LOCK_KEY, fencing=scenario.fencing, now_ns=runtime.now_ns, record=record)
        timing = Timing.of(scenario.plan, opts.ttl_ms)
        for i in range(scenario.workers):
            owner_id = "shared-owner" if i < scenario.shared_owner else None
            w: Worker | ProcessWorker
            if processes:
                w = process_worker(i, f"w{i}", target=target, env=env, key=LOCK_KEY, plan=scenario.plan,
                                   timing=timing, runtime=runtime, record=record, register=register,
                                   rng=random.Random(rng.randrange(2**32)), owner_id=owner_id,
                                   log_path=run_dir / WORKERS_LOG, keys=keys if len(keys) > 1 else ())
            else:
                w = Worker(f"w{i}", functools.partial(env.open_client, i), LOCK_KEY, scenario.plan, timing,
                           runtime, record, register, random.Random(rng.randrange(2**32)),
                           functools.partial(env.link, i), owner_id=owner_id, keys=keys if len(keys) > 1 else ())
            workers.append(w)
            runtime.spawn(w.wid, w.run)
        for w in workers:  # open every client before the start, so faults find their links
            w.connect()
        nemesis = Nemesis(steps, ttl_ms=opts.ttl_ms, runtime=runtime, record=record, server=env.server,
                          workers=workers, rng=random.Random(rng.randrange(2**32)))
        runtime.spawn("nemesis", nemesis.run)
        run_from, wall_from = runtime.now_ns(), time.monotonic()
        errors = runtime.run(scenario.duration * opts.ttl_ms / 1000)
        errors += _abandon_stuck(runtime, workers)
        with recording:
            rate.counting = False
        run_s = (runtime.now_ns() - run_from) / 1e9 if opts.virtual_time else time.monotonic() - wall_from
        interrupted = interrupts.STOP.is_set()
        if interrupted:  # Ctrl-C or SIGTERM: keep what was recorded, tear down without waiting
            record(NoteRecord("interrupted", runtime.now_ns(), _drained(runtime)))
        else:
            at_stop = env.residue()  # leases a lock leaks expire on their own: look before waiting
            _quiesce(env, runtime, record, opts.ttl_ms, caps.expiry_lag_ms, keys)
            record(NoteRecord("residue", runtime.now_ns(), {"at_stop": at_stop, "at_end": env.residue()}))
        simulated = (runtime.now_ns() - t0) / 1e9
        for probe in probes:  # their last windows before the end note, which is the history's last line
            probe.stop()
        record(NoteRecord("end", runtime.now_ns(),
                          {"errors": [f"{type(e).__name__}: {redact_text(str(e))}" for e in errors]}))
    finally:
        for probe in probes:
            probe.stop()
        for w in workers:  # no worker process outlives its run
            if isinstance(w, ProcessWorker):
                w.terminate()
        history.close()
        with contextlib.suppress(OSError):  # keep workers.log only when a worker had something to say
            if (run_dir / WORKERS_LOG).stat().st_size == 0:
                (run_dir / WORKERS_LOG).unlink()
    for e in errors:
        if isinstance(e, FaultUnsupported):
            raise e
    if errors:
        raise errors[0]
    return interrupted, simulated, rate.throughput(run_s, cap, why_no_cap)


def _abandon_stuck(runtime: Runtime, workers: list[Worker | ProcessWorker]) -> list[BaseException]:
    """A thread worker still blocked in a backend call after the run: its call is recorded as
    indeterminate and the thread left behind (it cannot be stopped), as a process worker's driver
    records the call before it kills the process; the slow-call checker then judges it. Any other
    task still running (the nemesis inside a fault) is the harness's failure."""
    stuck = list(getattr(runtime, "stuck", ()))
    by_name = {w.wid: w for w in workers if isinstance(w, Worker)}
    others = []
    for name in stuck:
        worker = by_name.get(name)
        if worker is None or not worker.abandon_call(
                "the call was still blocked when the run ended; its thread was left behind: outcome unknown"):
            others.append(name)
    return [LockChaosError(f"tasks still running after the run: {others}")] if others else []


def _judged(history: Path, strict: bool) -> tuple[History, Judgement]:
    h = load_history(history)  # read once: judged here, drawn by the report
    return h, judge(h, strict=strict)


def _conclude(target: Target, scenario: Scenario, opts: RunOptions, run_dir: Path, wall0: float,
              interrupted: bool, simulated: float, tally: Tally, throughput: dict[str, Any]) -> RunResult:
    """Judge the recorded history, write the summary and the report; a stop cuts this short (Overdue)."""
    status: Literal["ran", "interrupted"] = "interrupted" if interrupted else "ran"
    try:
        h, judgement = interrupts.within_grace(
            functools.partial(_judged, run_dir / HISTORY_FILE, opts.strict), "checks")
    except interrupts.Overdue:
        reason = f"stopped before the checks were done: `lockchaos check {run_dir}` judges the history"
        _write_summary(run_dir, target, scenario, opts, "interrupted", reason, None, time.monotonic() - wall0,
                       simulated, throughput=throughput)
        return RunResult(target.label, scenario.name, "interrupted", reason, run_dir, opts.seed,
                         time.monotonic() - wall0, simulated, None, throughput=throughput)
    obs = tally.observations(judgement.results)
    summary = _write_summary(run_dir, target, scenario, opts, status, "", obs, time.monotonic() - wall0,
                             simulated, judgement, throughput)
    with contextlib.suppress(interrupts.Overdue):  # the summary holds the verdicts; `lockchaos report` the page
        interrupts.within_grace(functools.partial(write_report, run_dir, summary, (h, judgement)), "report")
    return RunResult(target.label, scenario.name, status, "", run_dir, opts.seed,
                     time.monotonic() - wall0, simulated, obs, judgement, throughput)


def _drained(runtime: Runtime) -> dict[str, object]:
    """How long the workers took to stop once told: a worker blocked in a call, or one resumed from a
    pause, can take seconds, during which nobody asks for the lock (liveness judges up to the stop)."""
    stopped = runtime.stop_requested_ns
    if stopped is None:
        return {}
    return {"drained_ms": round(max(0, runtime.now_ns() - stopped) / 1e6, 3)}


def _quiesce(env: Environment, runtime: Runtime, record: Any, ttl_ms: int, lag_ms: int,
             keys: tuple[str, ...] = (LOCK_KEY,)) -> None:
    """After the workers stop, wait out every lease and check that none was leaked, on every key."""
    record(NoteRecord("quiesce", runtime.now_ns(), _drained(runtime)))
    runtime.sleep((ttl_ms + lag_ms) / 1000 + 0.25)
    observer = env.open_observer()
    try:
        for key in keys:
            invoke = runtime.now_ns()
            try:
                lease = observer.holder(key)
                outcome, error = "ok", None
            except Exception as exc:
                lease, outcome, error = None, "indeterminate", f"{type(exc).__name__}: {redact_text(str(exc))}"
            record(OpRecord("observer", "holder", key, {}, invoke, runtime.now_ns(), outcome,  # type: ignore[arg-type]
                            lease_dict(lease), error))
    finally:
        observer.close()


def run_dir_of(out_dir: Path, target: Target, scenario: Scenario) -> Path:
    """Where a backend x scenario run keeps its history, summary and report."""
    return out_dir / _slug(target.label) / scenario.name


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def _write_summary(run_dir: Path, target: Target, scenario: Scenario, opts: RunOptions, status: str,
                   reason: str, obs: Observations | None, wall_s: float, simulated_s: float,
                   judgement: Judgement | None = None, throughput: dict[str, Any] | None = None) -> dict[str, Any]:
    """One write of the run's summary, verdicts included (``lockchaos check`` updates them later);
    returns it as a reader of summary.json sees it."""
    summary: dict[str, object] = {
        "backend": target.label, "scenario": scenario.name, "description": scenario.description,
        "status": status, "reason": reason, "seed": opts.seed, "ttl_ms": opts.ttl_ms,
        "virtual_time": opts.virtual_time, "wall_seconds": round(wall_s, 3),
        "simulated_seconds": round(simulated_s, 3),
        "observations": None if obs is None else asdict(obs),
        **({"throughput": throughput} if throughput is not None else {}),
        "reproduce": _reproduce(target, scenario, opts),
    }
    if judgement is not None:
        summary["checks"] = judgement.to_dict()
    text = json.dumps(summary, indent=2) + "\n"
    write_atomic(run_dir / SUMMARY_FILE, text)
    written: dict[str, Any] = json.loads(text)
    if status == "skipped":
        write_report(run_dir, written)
    return written


def _reproduce(target: Target, scenario: Scenario, opts: RunOptions) -> str:
    return reproduce_command(Invocation(
        target.label, scenario.name, opts.seed, opts.ttl_ms, target.external_url, target.adapter_spec,
        target.provision, opts.workers, opts.duration_s, opts.virtual_time, opts.workers_mode, opts.strict,
        opts.keys))
