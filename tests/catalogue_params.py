"""The catalogue as pytest parameters: a many-key stress run in virtual time makes ~300k events, so it
is marked ``slow`` (test-fast deselects it; ``make test`` runs every scenario)."""

from __future__ import annotations

import pytest
from _pytest.mark import ParameterSet

from lockchaos.harness.scenarios import CATALOGUE


def every_scenario() -> list[ParameterSet]:
    return [pytest.param(s.name, marks=pytest.mark.slow) if s.keys > 1 else pytest.param(s.name)
            for s in CATALOGUE]
