"""The db role: lock servers the harness launches (processes, containers, clusters) or is pointed at."""
