"""Fixtures shared by every test suite.

``broker`` is one embedded Tansu broker (memory storage) for the whole session, on
127.0.0.1 and a free port. If it cannot start, every test that needs it FAILS: a
missing broker is a broken environment, never a reason to skip. Tests that kill,
stop or restart a broker must not do it to this one: they take their own from
``broker_factory``.

``gateway_factory`` starts private gateway processes (``support.gateway.GatewayProcess``) in
front of the session's broker or another one; a test fails if a gateway's log shows a
Traceback.
"""

from __future__ import annotations

import itertools
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The helpers live in tests/support and are imported as `support.*`.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support.gateway import GatewayProcess  # noqa: E402
from support.kafka import create_topic  # noqa: E402

from gateway.kafka.embedded import EmbeddedBroker, find_free_port  # noqa: E402

_START_ATTEMPTS = 2  # a second free port if another process grabbed the first one


def _start_broker(
    log_dir: Path, name: str, advertised: str | None = None, storage: str = "memory"
) -> EmbeddedBroker:
    errors: list[str] = []
    for attempt in range(_START_ATTEMPTS):
        port = find_free_port("127.0.0.1")
        broker = EmbeddedBroker(
            "127.0.0.1",
            port,
            log_path=str(log_dir / f"{name}-{port}-{attempt}.log"),
            advertised=advertised,
            storage=storage,
        )
        try:
            broker.start(timeout=15.0)
        except RuntimeError as exc:
            errors.append(str(exc))
            continue
        return broker
    raise RuntimeError("could not start the embedded broker:\n" + "\n".join(errors))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The session's Tansu broker; ``broker.bootstrap`` is ``127.0.0.1:<port>``."""
    started = _start_broker(tmp_path_factory.mktemp("tansu"), "session")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def broker_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., EmbeddedBroker]]:
    """Start private brokers (for tests that kill or pause one); all stopped afterwards.

    ``broker_factory(advertised="127.0.0.1:P")`` gives clients that address in metadata
    (a proxy in front of the broker, see support.proxy); ``broker_factory(storage="null")``
    starts one that keeps no record (``--embedded-storage null``)."""
    started: list[EmbeddedBroker] = []
    log_dir = tmp_path_factory.mktemp("tansu-private")

    def start(advertised: str | None = None, storage: str = "memory") -> EmbeddedBroker:
        b = _start_broker(log_dir, f"private{len(started)}", advertised, storage)
        started.append(b)
        return b

    try:
        yield start
    finally:
        for b in started:
            b.stop()


_topic_counter = itertools.count()


@pytest.fixture
def topic_factory(
    broker: EmbeddedBroker, request: pytest.FixtureRequest
) -> Callable[..., str]:
    """``topic_factory(partitions=3)`` creates a new, uniquely named topic on ``broker``.

    Returns the name once a full metadata listing shows every partition with a leader.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:120].strip("-.") or "t"

    def make(partitions: int = 3, *, prefix: str | None = None) -> str:
        name = f"{prefix or stem}-{next(_topic_counter)}-{uuid.uuid4().hex[:8]}"
        return create_topic(broker.bootstrap, name, partitions)

    return make


@pytest.fixture
def gateway_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start a private gateway with extra flags (stopped at the end of the test), in front of
    ``bootstrap`` or else the session's broker. A Traceback in its log fails the test."""
    started: list[GatewayProcess] = []

    def start(*args: str, bootstrap: str | None = None, env: dict[str, str] | None = None) -> GatewayProcess:
        if bootstrap is None:
            bootstrap = request.getfixturevalue("broker").bootstrap
        g = GatewayProcess(
            ["--bootstrap-servers", bootstrap, *args],
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
        if not g.log_checked:
            g.assert_no_crash()
