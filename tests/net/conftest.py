"""Kernel tests here run live and again recorded then replayed (tests/support/conformance.py):
a node's run replays from its own journal, remote deliveries included."""
from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _live_and_replayed(conformance: str) -> Iterator[str]:
    yield conformance
