"""The virtual runtime's hub-side polling wakes a task at the same time and in the same order as sleeps."""

from __future__ import annotations

from collections.abc import Callable

from lockchaos.harness.run.runtime import VirtualRuntime

POLL_S = 0.005


def _trace(poll: bool, ready_at_ns: int, deadline_ns: int) -> list[tuple[str, int]]:
    """A poller waiting for a flag a setter raises, next to a bystander waking at the same instants."""
    rt = VirtualRuntime()
    flag = {"up": False}
    seen: list[tuple[str, int]] = []

    def ready() -> bool:
        return flag["up"]

    def poller() -> None:
        if poll:
            rt.poll_until(ready, deadline_ns, POLL_S)
        else:
            while not ready() and (remaining := (deadline_ns - rt.now_ns()) / 1e9) > 0:
                rt.sleep(min(POLL_S, remaining))
        seen.append(("poller", rt.now_ns()))

    def setter() -> None:
        rt.sleep(ready_at_ns / 1e9)
        flag["up"] = True
        seen.append(("setter", rt.now_ns()))

    def bystander() -> None:
        for _ in range(60):  # on the poller's 5 ms grid: ties are broken by order of sleeping
            rt.sleep(POLL_S)
            seen.append(("bystander", rt.now_ns()))

    tasks: list[tuple[str, Callable[[], None]]] = [("poller", poller), ("setter", setter), ("by", bystander)]
    for name, fn in tasks:
        rt.spawn(name, fn)
    assert rt.run(1.0) == []
    return seen


def test_poll_until_wakes_when_ready_exactly_as_a_sleep_loop_would() -> None:
    for ready_at in (12_000_000, 15_000_000, 15_000_001, 99_999_999):
        assert _trace(True, ready_at, 200_000_000) == _trace(False, ready_at, 200_000_000)


def test_poll_until_gives_up_at_the_deadline_exactly_as_a_sleep_loop_would() -> None:
    traced = _trace(True, 500_000_000, 123_456_789)
    assert ("poller", 123_456_789) in traced
    assert traced == _trace(False, 500_000_000, 123_456_789)
