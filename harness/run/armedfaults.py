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

    def take_pause(self) -> float:
        """The armed pause, disarmed as it is taken: a pause strikes once."""
        pause, self.pause_for_s = self.pause_for_s, 0.0
        return pause


ARMABLE: tuple[str, ...] = tuple(ArmedFaults.__annotations__)
"""The flags' names, as the driver sends them to a worker process."""
