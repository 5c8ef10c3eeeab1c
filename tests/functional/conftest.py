"""The gateway under test: the real command (``python -m gateway``) in a child process,
against the session's broker, on a free loopback port (``support.gateway.GatewayProcess``;
``gateway_factory`` for private gateways is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.gateway import GatewayProcess

from gateway.kafka.embedded import EmbeddedBroker


@pytest.fixture(scope="module")
def gateway(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway per module, in front of the session's broker."""
    g = GatewayProcess(
        ["--bootstrap-servers", broker.bootstrap],
        tmp_path_factory.mktemp("gateway") / "gateway.log",
    )
    try:
        yield g
    finally:
        g.stop()
    g.assert_no_crash()


@pytest.fixture
def gateway_command(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start a private gateway with exactly these arguments (and ``--listen``): no
    ``--bootstrap-servers`` is added (e.g. a configuration file gives it). Stopped at the end."""
    started: list[GatewayProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> GatewayProcess:
        g = GatewayProcess(list(args), tmp_path / f"gateway-cmd-{len(started)}.log", env)
        started.append(g)
        return g

    try:
        yield start
    finally:
        for g in started:
            g.stop()
    for g in started:
        g.assert_no_crash()
