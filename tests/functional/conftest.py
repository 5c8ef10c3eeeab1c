"""The gateway under test: the real command (``python -m gateway``) in a child process,
against the session's broker, on a free loopback port (``support.gateway.GatewayProcess``;
``gateway_factory`` for private gateways is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.gateway import GatewayProcess

from gateway.kafka.embedded import EmbeddedBroker


@pytest.fixture(params=["cython", "python"], scope="module")
def splitter_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def gateway(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, splitter_kind: str
) -> Iterator[GatewayProcess]:
    """One gateway per module and parser twin, in front of the session's broker."""
    env = {"GATEWAY_PURE_PYTHON": "1"} if splitter_kind == "python" else {"GATEWAY_PURE_PYTHON": "0"}
    g = GatewayProcess(
        ["--bootstrap-servers", broker.bootstrap],
        tmp_path_factory.mktemp("gateway") / "gateway.log",
        env,
    )
    try:
        yield g
    finally:
        g.stop()
    g.assert_no_crash()
