"""Start-up failures of gateway/app.py that are no configuration error, in this process: each is
one ``StartError`` line, which the command prints and exits 2 with (tests/functional/
test_startup.py runs the real command)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gateway import app
from gateway.config import Config
from gateway.errors import StartError

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

