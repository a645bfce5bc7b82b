"""Detection power: which broken adapters the contract and the soak catch, and that honest ones pass.

    .venv/bin/python bench/bench_detection_power.py [--seeds 1,2,3] [--svg docs/detection-power.svg]

Every adapter of tests/broken_adapters.py, tests/broken_redis_adapters.py and
tests/broken_subtle_adapters.py runs the whole contract once, then the scenario catalogue (all but
the random ``soak``), first seed, until a scenario catches it. The honest ones (the fake, Redis,
etcd, the correct MiniKV and Redis adapters) run the whole contract and the scenarios aimed at
subtle bugs (resurrecting-renew, two-step-release, hidden-acquire-retry, under-declared-lag,
release-request-lost, renew-request-lost) plus
clean-handover and contention with every seed. Prints one line per adapter and the totals, and
draws the totals as an SVG bar chart (the figure in README). Takes about half an hour; servers are
started and stopped here.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lockchaos.harness.contract import run_contract
from lockchaos.harness.contract.rules import RULES
from lockchaos.harness.contract.subtle_rules import __name__ as _subtle_module
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.targets import Target, adapter_target, backend_target, provisioned
from lockchaos.harness.scenarios import CATALOGUE, find_scenario
from tests import broken_adapters, broken_redis_adapters, broken_subtle_adapters

HONEST_SCENARIOS = ("clean-handover", "contention", "resurrecting-renew", "two-step-release",
                    "hidden-acquire-retry", "under-declared-lag", "release-request-lost", "renew-request-lost")
BROKEN_SCENARIOS = (*HONEST_SCENARIOS, *(s.name for s in CATALOGUE if s.name not in HONEST_SCENARIOS
                                         and not s.random_faults))
TTL_MS = {"fake": 200, "redis": 200, "etcd": 1000}
SUBTLE_RULES = {r.name for r in RULES if r.check.__module__ == _subtle_module}


@dataclass(frozen=True, slots=True)
class Verdict:
    label: str
    broken: bool
    contract_rules: tuple[str, ...]  # failed rules
    soak_scenarios: tuple[str, ...]  # scenarios with a failed check (over any seed)

    @property
    def by_contract(self) -> bool:
        return bool(self.contract_rules)

    @property
    def by_old_contract(self) -> bool:
        return any(r not in SUBTLE_RULES for r in self.contract_rules)

    @property
    def by_soak(self) -> bool:
        return bool(self.soak_scenarios)


def _targets() -> list[tuple[str, bool, Callable[[], Target]]]:
    """(label, broken?, how to make its target): made lazily, since loading a factory imports it."""
    adapter = functools.partial
    found: list[tuple[str, bool, Callable[[], Target]]] = []
    for module, server, prefix, names in (
        ("tests.broken_adapters", "none", "minikv", broken_adapters.BROKEN),
        ("tests.broken_redis_adapters", "redis", "redis", broken_redis_adapters.BROKEN),
        ("tests.broken_subtle_adapters", "none", "subtle-minikv", broken_subtle_adapters.MINIKV),
        ("tests.broken_subtle_adapters", "redis", "subtle-redis", broken_subtle_adapters.REDIS),
    ):
        found += [(f"{prefix}:{n}", True, adapter(adapter_target, f"{module}:{n}", server)) for n in names]
    found += [(f"honest:{b}", False, adapter(backend_target, b)) for b in ("fake", "redis", "etcd")]
    found.append(("honest:minikv-correct", False, adapter(adapter_target, "tests.broken_adapters:correct", "none")))
    found.append(("honest:redis-adapter", False,
                  adapter(adapter_target, "tests.broken_subtle_adapters:redis_correct", "redis")))
    return found


def judge(label: str, broken: bool, target: Target, seeds: list[int], work: Path) -> Verdict:
    with provisioned(target) as env:
        results = run_contract(env.client_factory(), server=env.server_control())
    failed_rules = tuple(r.rule for r in results if r.status == "failed")
    caught: list[str] = []
    ttl = TTL_MS[target.server_kind]
    for name in BROKEN_SCENARIOS if broken else HONEST_SCENARIOS:
        if broken and caught:
            break  # caught once is caught: the seeds are for the honest ones (no false alarm)
        for seed in seeds[:1] if broken else seeds:
            out = work / f"{label.replace(':', '_')}-{name}-{seed}"
            run = run_scenario(target, find_scenario(name), RunOptions(seed=seed, ttl_ms=ttl), out)
            if run.status == "skipped":
                continue
            verdicts = {} if run.judgement is None else run.judgement.to_dict()["checkers"]
            failing = {c for c, v in verdicts.items() if v["verdict"] == "fail"}
            if failing:
                caught.append(f"{name}@{seed}:{'+'.join(sorted(failing))}")
    return Verdict(label, broken, failed_rules, tuple(caught))


def svg_chart(verdicts: list[Verdict]) -> str:
    broken = [v for v in verdicts if v.broken]
    honest = [v for v in verdicts if not v.broken]
    bars = [
        ("contract rules before issue 14", sum(v.by_old_contract for v in broken), len(broken), "#9aa5b1"),
        ("caught by the contract", sum(v.by_contract for v in broken), len(broken), "#3b82f6"),
        ("caught by the soak", sum(v.by_soak for v in broken), len(broken), "#f59e0b"),
        ("caught by either", sum(v.by_contract or v.by_soak for v in broken), len(broken), "#10b981"),
        ("honest adapters passing everything", sum(not v.by_contract and not v.by_soak for v in honest),
         len(honest), "#6366f1"),
    ]
    width, left, bar_w, row = 720, 270, 380, 34
    height = 40 + row * len(bars)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="13">',
             f'<text x="10" y="20" font-weight="bold">Detection power: {len(broken)} broken adapters, '
             f'{len(honest)} honest ones</text>']
    for i, (label, n, total, colour) in enumerate(bars):
        y = 34 + i * row
        w = 0 if total == 0 else round(bar_w * n / total)
        parts += [f'<text x="10" y="{y + 17}">{label}</text>',
                  f'<rect x="{left}" y="{y + 4}" width="{bar_w}" height="20" fill="#eef0f3"/>',
                  f'<rect x="{left}" y="{y + 4}" width="{w}" height="20" fill="{colour}"/>',
                  f'<text x="{left + bar_w + 8}" y="{y + 19}">{n} / {total}</text>']
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--svg", type=Path, default=None)
    parser.add_argument("--only", default="", help="comma-separated label prefixes to run")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    prefixes = [p for p in args.only.split(",") if p]
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="lockchaos-power-") as tmp:
        for label, broken, make in _targets():
            if prefixes and not any(label.startswith(p) for p in prefixes):
                continue
            v = judge(label, broken, make(), seeds, Path(tmp))
            verdicts.append(v)
            mark = ("CAUGHT" if v.by_contract or v.by_soak else "MISSED") if broken else (
                "PASSED" if not v.by_contract and not v.by_soak else "FALSE ALARM")
            print(f"{mark:11} {label:52} contract={','.join(v.contract_rules) or '-'} "
                  f"soak={','.join(v.soak_scenarios) or '-'}", flush=True)
    bad = [v for v in verdicts if v.broken]
    honest = [v for v in verdicts if not v.broken]
    print(f"broken {len(bad)}: contract {sum(v.by_contract for v in bad)} (rules of before: "
          f"{sum(v.by_old_contract for v in bad)}), soak {sum(v.by_soak for v in bad)}, either "
          f"{sum(v.by_contract or v.by_soak for v in bad)}; honest {len(honest)}: passed "
          f"{sum(not v.by_contract and not v.by_soak for v in honest)} (seeds {args.seeds})")
    if args.svg is not None:
        args.svg.write_text(svg_chart(verdicts))


if __name__ == "__main__":
    main()
