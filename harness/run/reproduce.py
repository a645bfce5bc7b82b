"""The one builder of ``lockchaos soak ...`` lines that run a recorded scenario again.

The driver stores its line in summary.json; a report of a run recorded without one rebuilds it from
the history's meta record. Both go through ``reproduce_command``, so the two cannot drift apart.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from lockchaos.backends.redaction import redact_url


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a run was asked to do, as the CLI flags that say it (``None``: the flag was not given)."""

    label: str
    scenario: str
    seed: int
    ttl_ms: int
    external_url: str | None = None
    adapter_spec: str | None = None
    provision: str = "process"
    workers: int | None = None
    duration_s: float | None = None
    virtual_time: bool = False
    workers_mode: str = "auto"
    strict: bool = False
    keys: int | None = None


def reproduce_command(run: Invocation) -> str:
    """The command line that runs this scenario again, the same way, with the same seed.

    A ``--url`` keeps its options (``?prefix=myapp:``) and loses its secrets (``:***@``): the line is
    stored in summary.json and shown in every report, so the user puts the password back in."""
    if run.external_url is not None:
        what = f"--url {shlex.quote(redact_url(run.external_url))}" + (
            f" --adapter {shlex.quote(run.adapter_spec)}" if run.adapter_spec else "")
    elif run.adapter_spec is not None:
        server = run.label.rpartition("@")[2]  # what --server said (redis-aof runs a "redis")
        what = f"--adapter {shlex.quote(run.adapter_spec)} --server {server}"
    else:
        what = f"--backend {run.label}"
    flags = [what, f"--scenario {run.scenario}", f"--seed {run.seed}", f"--ttl-ms {run.ttl_ms}"]
    if run.workers is not None:
        flags.append(f"--workers {run.workers}")
    if run.duration_s is not None:
        flags.append(f"--duration {run.duration_s:g}")
    if run.keys is not None:
        flags.append(f"--keys {run.keys}")
    if run.provision != "process":
        flags.append(f"--provision {run.provision}")
    if run.virtual_time:
        flags.append("--virtual-time")
    elif run.workers_mode != "auto":
        flags.append(f"--workers-mode {run.workers_mode}")
    if run.strict:
        flags.append("--strict")
    return "lockchaos soak " + " ".join(flags)
