"""Do this tree's checkers find exactly what another revision's find? Run both on many histories.

    nice -n 5 .venv/bin/python bench/compare_checkers.py [--base main] [--seeds 1-60] [--mutants]
        [--also DIR ...]

Records a virtual-time fake run of every catalogue scenario for each seed, optionally adds a mutated
copy of each history (op records dropped or their outcomes flipped, so that double grants,
conformance and liveness findings appear, which the honest fake never gives), and runs
``check_history`` on every history file under ``--base`` (exported with ``git archive``) and under this
tree, each in its own process: on a file, what ``lockchaos check`` judges (a streamed judgement where
this tree has one). ``--also DIR`` adds the histories found under DIR (a long soak's, say). Every
checker's findings, stats, examples and skip reason, and every grant's bounds, must be equal; it
prints the count and the first histories that differ, and exits 1 if any.
This is how a rewrite of the checkers for speed proves it changed nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent


def summarise(paths: list[str]) -> None:
    """Print one JSON line per history: what the checkers of the importable lockchaos find in it."""
    from lockchaos.harness.checkers import check_history

    whole = _count_whole()
    bounds = _observed_bounds()  # a streamed judgement keeps no grant: their bounds, as it makes them
    for p in paths:
        try:
            bounds.clear()
            h, results = check_history(Path(p))
            out: list[object] = [[r.checker, [dataclasses.astuple(f) for f in r.findings], r.stats, r.skipped,
                                  list(getattr(r, "examples", ()))] for r in results]
            made = [[g.acquire.line, g.latest_end, g.effect_horizon] for g in h.grants] if h.grants else bounds
            out.append(sorted(made))
        except Exception as exc:  # the same refusal on both sides is equal too
            out = ["error", repr(exc)]
        print(json.dumps([p, out], default=str, sort_keys=True), flush=True)
    print(f"# loaded whole: {whole[0]}")


def _observed_bounds() -> list[list[int]]:
    bounds: list[list[int]] = []
    try:
        from lockchaos.harness.checkers import stream
    except ImportError:  # a revision without one
        return bounds
    observers = getattr(stream, "observe_grant", None)
    if observers is not None:
        observers.append(lambda g: bounds.append([g.acquire.line, g.latest_end, g.effect_horizon]))
    return bounds


def _count_whole() -> list[int]:
    """Counts the files a streaming tree judged by loading them whole (its fallback): a comparison on
    which every file fell back would prove nothing about the streamed judgement."""
    count = [0]
    try:
        from lockchaos.harness.checkers import stream
    except ImportError:  # a revision without one
        return count
    original = stream.judged_whole

    def counted(path: Path) -> object:
        count[0] += 1
        return original(path)

    stream.judged_whole = counted  # type: ignore[assignment]
    return count

def record(out: Path, seeds: range) -> list[Path]:
    from lockchaos.harness.cli.commandline import main
    from lockchaos.harness.scenarios import CATALOGUE

    for seed in seeds:
        for s in CATALOGUE:
            with (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
                  contextlib.suppress(SystemExit)):
                main(["soak", "--backend", "fake", "--virtual-time", "--scenario", s.name, "--seed", str(seed),
                      "--out", str(out / f"{s.name}-{seed}")])
    return sorted(out.rglob("history.jsonl"))


def mutate(histories: list[Path], out: Path) -> list[Path]:
    out.mkdir(exist_ok=True)
    made = []
    for n, p in enumerate(histories):
        rnd = random.Random(n)
        rate = rnd.choice([0.02, 0.1, 0.3])
        lines = []
        for line in p.read_bytes().splitlines(keepends=True):
            rec = orjson.loads(line)
            if rec.get("type") == "op" and rnd.random() < rate:
                if rnd.random() < 0.5:
                    continue  # dropped: a release or renew the checkers never see
                if rec.get("outcome") == "fail" and rec.get("op") == "acquire":
                    rec["outcome"] = "ok"  # a refused acquire that succeeded
                elif rec.get("outcome") == "ok":
                    rec["outcome"] = "indeterminate"
                line = orjson.dumps(rec) + b"\n"
            lines.append(line)
        q = out / f"mutant-{n}.jsonl"
        q.write_bytes(b"".join(lines))
        made.append(q)
    return made


def run_under(root: Path, histories: list[Path]) -> tuple[list[str], str]:
    """Each history's summary line under ``root``'s lockchaos, and how many it loaded whole."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, __file__, "--summarise"], input="\n".join(map(str, histories)),
                          capture_output=True, text=True, env=env, check=True, timeout=6 * 3600)
    lines = done.stdout.splitlines()
    return lines[:-1], lines[-1].removeprefix("# loaded whole: ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="git revision to compare with (default: main)")
    ap.add_argument("--seeds", default="1-60", help="seeds A-B, inclusive (default: 1-60)")
    ap.add_argument("--mutants", action="store_true", help="also compare on a mutated copy of every history")
    ap.add_argument("--also", type=Path, action="append", default=[],
                    help="also compare on every history.jsonl under DIR (repeatable)")
    ap.add_argument("--summarise", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.summarise:
        summarise(sys.stdin.read().split())
        return 0
    a, _, b = args.seeds.partition("-")
    seeds = range(int(a), int(b or a) + 1)
    with tempfile.TemporaryDirectory(prefix="compare-checkers-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.base], capture_output=True, check=True,
                                 timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True, timeout=120)
        histories = record(Path(tmp) / "runs", seeds)
        if args.mutants:
            histories += mutate(histories, Path(tmp) / "mutants")
        for extra in args.also:
            histories += sorted(extra.rglob("history.jsonl"))
        (old, _), (new, whole) = run_under(base, histories), run_under(REPO, histories)
        differ = [json.loads(x)[0] for x, y in zip(old, new, strict=True) if x != y]
        summaries = [json.loads(x)[1] for x in old]
        with_findings = sum(1 for s in summaries if s[0] != "error" and any(r[1] for r in s[:-1]))
        refused = sum(1 for s in summaries if s[0] == "error")
        print(f"{len(histories)} histories ({with_findings} with findings, {refused} refused as unreadable): "
              f"{len(differ)} differ from {args.base}; this tree loaded {whole} of them whole (not streamed)")
        for p in differ[:10]:
            print("  differs:", p)
        return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
