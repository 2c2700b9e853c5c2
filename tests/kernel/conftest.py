"""Every kernel test runs twice: on a live kernel, and recorded then replayed
(tests/support/conformance.py says what is compared)."""
from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _live_and_replayed(conformance: str) -> Iterator[str]:
    yield conformance
