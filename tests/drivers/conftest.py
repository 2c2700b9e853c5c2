import sys, os
sys.path.insert(0, os.path.dirname(__file__))

from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _live_and_replayed(conformance: str) -> Iterator[str]:
    """Driver tests that run a deterministic kernel run twice: live, and recorded then
    replayed with no driver present (tests/support/conformance.py)."""
    yield conformance
