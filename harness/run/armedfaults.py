"""The faults the nemesis arms on a worker, once, for a thread ``Worker`` and a ``ProcessWorker`` alike.

A holder fault that must strike at one point of the loop (a pause between the validity check and the
write, a dead renewer, a lost reply) is a flag the nemesis sets (``faults.nemesis.HolderFaults``) and
the worker's loop reads and clears where the fault belongs. A process worker keeps a copy in the
driver, so that the nemesis reads back what it armed, and sends each flag to its child by name; a new
incarnation starts with none armed.
"""

from __future__ import annotations


class ArmedFaults:
    """The flags, disarmed by default (class attributes: an instance holds only what was armed)."""

    pause_for_s: float = 0.0
    """Pause this long at the next pause point (after the validity check, before the write)."""
    renewer_dead: bool = False
    """The renewer died: no more renews, and the holder trusts its lease past the deadline."""
    lose_release_reply: bool = False
    late_release_ms: int = 0
    """Release at the lease's very end over a link this slow (one way)."""
    lose_acquire_reply: bool = False
    lose_release_request: bool = False
    """The next release's request is lost (the link drops it): the call can only give up."""
    lose_renew_requests_s: float = 0.0
    """From the next scheduled renew on, for this long, every renew's request is lost, likewise."""

    def disarm(self) -> None:
        """Every flag back to disarmed: a revived worker is a new process, and a fault armed on the one
        that died dies with it (a worker process's new child starts with none, a thread worker alike)."""
        for name in ARMABLE:
            vars(self).pop(name, None)  # the class attribute, disarmed, shows through again

    def take_pause(self) -> float:
        """The armed pause, disarmed as it is taken: a pause strikes once."""
        pause, self.pause_for_s = self.pause_for_s, 0.0
        return pause


ARMABLE: tuple[str, ...] = tuple(ArmedFaults.__annotations__)
"""The flags' names, as the driver sends them to a worker process."""
