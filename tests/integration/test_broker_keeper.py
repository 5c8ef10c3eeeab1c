"""gateway.kafka.keeper.BrokerKeeper with a real Tansu broker: its exit is known at once (the
keeper waits on it as its parent), logged with how it ended, the process reaped; it is started
again on the same port after a back-off that grows while restarts fail and falls back after a
healthy run; ``setup`` (the --topic topics) runs before every "up"; ``stop`` tells nobody."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.kafka.embedded import AddressInUse, EmbeddedBroker, find_free_port
from gateway.kafka.keeper import BrokerKeeper

pytestmark = pytest.mark.timeout(60)


class Watcher:
    """What the keeper told, in order, with when."""

    def __init__(self) -> None:
        self.told: list[tuple[float, str | None]] = []
        self.changed = threading.Condition()

    def __call__(self, down: str | None) -> None:
        with self.changed:
            self.told.append((time.monotonic(), down))
            self.changed.notify_all()

    def wait(self, count: int, timeout: float = 20.0) -> list[tuple[float, str | None]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.told) >= count, timeout), self.told
            return list(self.told)


@pytest.fixture
def keepers(tmp_path: Path) -> Iterator[Callable[..., BrokerKeeper]]:
    made: list[BrokerKeeper] = []

    def make(setup: Callable[[str], None] | None = None, **kw: float) -> BrokerKeeper:
        broker = EmbeddedBroker("127.0.0.1", find_free_port(), log_path=str(tmp_path / f"tansu-{len(made)}.log"))
        keeper = BrokerKeeper(broker, setup, **kw)
        made.append(keeper)
        return keeper

    yield make
    for keeper in made:
        keeper.stop()


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _hold(port: int) -> socket.socket:
    deadline = time.monotonic() + 5
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
            return sock
        except OSError:
            sock.close()
            assert time.monotonic() < deadline
            time.sleep(0.005)


def test_a_killed_broker_is_reported_at_once_and_restarted_with_its_setup(
    keepers: Callable[..., BrokerKeeper], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.kafka")
    setups: list[tuple[str, int | None]] = []
    keeper = keepers(lambda bootstrap: setups.append((bootstrap, keeper.broker.pid)), backoff=0.1)
    keeper.start()
    watcher = Watcher()
    keeper.watch(watcher)
    assert watcher.wait(1)[0][1] is None  # told the current state at once: up
    first = keeper.broker.pid
    assert first is not None and setups == [(keeper.broker.bootstrap, first)]

    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    (_, up), (down_at, down), (_, again) = watcher.wait(3)
    assert up is None and again is None
    assert down == "the embedded broker was killed by SIGKILL; it is being restarted"
    assert down_at - killed_at < 0.5
    assert _state(first) is None  # reaped: no zombie left
    second = keeper.broker.pid
    assert second != first and keeper.broker.running and keeper.restarts == 1
    # The same address, and the setup ran again on the new broker before it was reported up.
    assert setups == [(keeper.broker.bootstrap, first), (keeper.broker.bootstrap, second)]
    assert f"the embedded broker (pid {first}) was killed by SIGKILL" in caplog.text
    assert f"the embedded broker is up again on {keeper.broker.bootstrap} (pid {second})" in caplog.text


def test_restarts_back_off_while_they_fail_and_not_after_a_healthy_run(
    keepers: Callable[..., BrokerKeeper], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.kafka")
    keeper = keepers(backoff=0.1, max_backoff=0.4, healthy_after=1.0)
    keeper.start()
    watcher = Watcher()
    keeper.watch(watcher)
    port = keeper.broker.port
    os.kill(keeper.broker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    holder = _hold(port)  # the restarts find the address taken
    try:
        deadline = time.monotonic() + 10
        while caplog.text.count("could not start the embedded broker again") < 3:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.02)
    finally:
        holder.close()
    watcher.wait(3)  # up, down, up again
    waits = [line.split("next try in ")[1].split("s")[0] for line in caplog.text.splitlines()
             if "could not start the embedded broker again" in line]
    assert waits[:3] == ["0.2", "0.4", "0.4"], waits  # doubling, up to max_backoff
    assert "address already in use" in caplog.text
    # A broker that ran longer than healthy_after is restarted after the first back-off again.
    time.sleep(1.1)
    caplog.clear()
    os.kill(keeper.broker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    watcher.wait(5)
    assert "starting it again in 0.1s" in caplog.text


def test_a_broker_that_exits_on_its_own_is_logged_with_its_status_and_last_lines(
    keepers: Callable[..., BrokerKeeper], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.kafka")
    keeper = keepers(backoff=0.1)
    keeper.start()
    watcher = Watcher()
    keeper.watch(watcher)
    os.kill(keeper.broker.pid, signal.SIGINT)  # type: ignore[arg-type]  # Tansu exits 0 on SIGINT
    (_, _), (_, down), (_, _) = watcher.wait(3)
    assert down == "the embedded broker exited with status 0; it is being restarted"
    assert "exited with status 0 after" in caplog.text


def test_stop_tells_nobody_and_leaves_nothing_running(keepers: Callable[..., BrokerKeeper]) -> None:
    keeper = keepers()
    keeper.start()
    watcher = Watcher()
    keeper.watch(watcher)
    pid, port = keeper.broker.pid, keeper.broker.port
    keeper.stop()
    keeper.stop()  # idempotent
    assert watcher.wait(1) == watcher.told and [d for _, d in watcher.told] == [None]
    assert pid is not None and _state(pid) is None
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # free again


def test_a_first_start_that_fails_raises_and_leaves_nothing_running(keepers: Callable[..., BrokerKeeper]) -> None:
    keeper = keepers()
    with _hold(keeper.broker.port):
        with pytest.raises(AddressInUse):
            keeper.start()
    assert not keeper.broker.running

    def refuse(bootstrap: str) -> None:
        raise RuntimeError("could not create topic orders: not authorized")

    refusing = keepers(refuse)
    with pytest.raises(RuntimeError, match="not authorized"):
        refusing.start()
    assert not refusing.broker.running
