"""``lockchaos contract``: run the suite against our backends or a user's adapter."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lockchaos.harness import exitcodes
from lockchaos.harness.contract.runner import RuleResult, run_contract
from lockchaos.harness.run.targets import Target, probe_client, provisioned

_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow"}


def run_contract_command(targets: list[Target], console: Console) -> int:
    failed = False
    for target in targets:
        with provisioned(target) as env:
            probe_client(env)
            console.print(f"[bold]contract[/] {target.label}")
            results = run_contract(env.client_factory(), server=env.server_control(),
                                   on_result=lambda r: _progress(console, r))
        console.print(_table(target.label, results))
        bad = [r for r in results if r.status == "failed"]
        if bad:
            failed = True
            console.print(f"[bold red]{target.label}: {len(bad)} rule(s) failed:[/] "
                          + ", ".join(r.rule for r in bad), soft_wrap=True)
    return exitcodes.CHECK_FAILED if failed else exitcodes.OK


def _progress(console: Console, result: RuleResult) -> None:
    style = _STYLE[result.status]
    console.print(f"  [{style}]{result.status:7}[/] {result.rule} ({result.seconds:.2f}s)",
                  highlight=False)


def _table(label: str, results: list[RuleResult]) -> Table:
    table = Table(title=f"contract: {label}")
    table.add_column("rule")
    table.add_column("verdict")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    for r in results:
        table.add_row(r.rule, f"[{_STYLE[r.status]}]{r.status}[/]", f"{r.seconds:.2f}s", r.message)
    passed = sum(r.status == "passed" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    table.caption = f"{passed} passed, {len(results) - passed - skipped} failed, {skipped} skipped"
    return table
