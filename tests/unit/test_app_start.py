"""Start-up failures of gateway/app.py that are no configuration error, in this process: each is
one ``StartError`` line, which the command prints and exits 2 with (tests/functional/
test_startup.py runs the real command)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gateway import app
from gateway.config import Config
from gateway.errors import ConfigError, StartError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def taken() -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_taken_listen_address_is_a_start_error(taken: tuple[str, int], reuse_port: bool) -> None:
    with pytest.raises(StartError) as exc:
        app.check_listen_address(taken, reuse_port=reuse_port)
    assert str(exc.value) == f"cannot listen on 127.0.0.1:{taken[1]} (--listen): address already in use"


def test_a_free_listen_address_passes_and_stays_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app.check_listen_address(("127.0.0.1", port), reuse_port=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # the check holds nothing


def test_topics_that_cannot_be_created_are_a_start_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(admin: object, topics: list[tuple[str, int]], timeout: float = 15.0) -> None:
        raise RuntimeError("could not create topic orders: not authorized")

    monkeypatch.setattr(app, "create_topics", refuse)
    cfg = Config(listen=("127.0.0.1", 0), bootstrap_servers="127.0.0.1:9", topics={"orders": 3})
    with pytest.raises(StartError) as exc:
        app.main(cfg)
    assert str(exc.value) == (
        "cannot create the topics at 127.0.0.1:9: could not create topic orders: not authorized"
    )



def test_consumer_properties_go_to_the_consumer_instances_not_the_producer() -> None:
    cfg = Config(producer_properties={
        "session.timeout.ms": "2000", "heartbeat.interval.ms": "300", "linger.ms": "7",
        "security.protocol": "plaintext",
    })
    producer = app.producer_config(cfg, "b:1")
    assert "session.timeout.ms" not in producer and "heartbeat.interval.ms" not in producer
    assert producer["linger.ms"] == "7"
    instances = app.instance_config(cfg, "b:1")
    assert instances["session.timeout.ms"] == "2000" and instances["heartbeat.interval.ms"] == "300"
    assert instances["security.protocol"] == "plaintext"  # the connection settings too
    assert instances["bootstrap.servers"] == "b:1" and "linger.ms" not in instances
    app.check_producer_config(cfg)  # librdkafka takes them


def test_a_bad_consumer_property_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="Kafka consumer properties .*session.timeout.ms"):
        app.check_producer_config(Config(producer_properties={"session.timeout.ms": "soon"}))
