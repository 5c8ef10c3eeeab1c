"""The gateway under test: the real command (``python -m gateway``) in a child process,
against the session's broker, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.kafka.embedded import EmbeddedBroker, find_free_port

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = find_free_port("127.0.0.1")
        self.host = "127.0.0.1"
        self.log_path = log_path
        self.bootstrap = args[args.index("--bootstrap-servers") + 1] if "--bootstrap-servers" in args else None
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--listen", f"127.0.0.1:{self.port}", *args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def assert_no_crash(self) -> None:
        """An unhandled exception in the gateway is a bug, even when the client saw no harm."""
        text = self.log()
        assert "Traceback" not in text and "Fatal error" not in text, text[-5000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()


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


@pytest.fixture
def gateway_factory(
    broker: EmbeddedBroker, tmp_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start a private gateway with extra flags (stopped at the end of the test)."""
    started: list[GatewayProcess] = []

    def start(*args: str, bootstrap: str | None = None, env: dict[str, str] | None = None) -> GatewayProcess:
        g = GatewayProcess(
            ["--bootstrap-servers", bootstrap or broker.bootstrap, *args],
            tmp_path / f"gateway-{len(started)}.log",
            env,
        )
        started.append(g)
        return g

    try:
        yield start
    finally:
        for g in started:
            g.stop()
    for g in started:
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
