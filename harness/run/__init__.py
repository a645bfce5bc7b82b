"""The run loop: workers, the guarded register, the runtime's clock, the history and the run directory."""
