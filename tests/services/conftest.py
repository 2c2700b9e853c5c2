"""Every test here that runs a kernel runs twice: live, and recorded then replayed
(tests/support/conformance.py says what is compared)."""
from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _live_and_replayed(conformance: str) -> Iterator[str]:
    yield conformance
