"""The load generator's engine (gateway.loadgen.engine) as a library, with a made-up client
(no socket): ``on_measure_start`` is called once, when the measured run begins, after the
warm-up and before the first measured record is claimed, and not at all by the command line."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.loadgen import cli
from gateway.loadgen.engine import Engine, Settings
from gateway.loadgen.http import Target

pytestmark = pytest.mark.timeout(30)


def settings(warmup: float, records: int) -> Settings:
    return Settings(mode="batch", topic="t", records=records, duration=5.0, connections=1,
                    batch=10, record_bytes=10, keys=0, rate=None, window=10, warmup=warmup,
                    drain_timeout=1.0, cluster_id="c", group="g")


class Client:
    """Claims and answers 10 records at a time, on every pump, noting what the engine says."""

    def __init__(self, engine: Engine, log: list[Any]) -> None:
        self.engine = engine
        self.log = log

    def setup(self) -> None:
        pass

    def pump(self, now: float) -> None:
        eng = self.engine
        first, n = eng.claim(10)
        if n:
            self.log.append(("claim", eng.measuring))
            eng.sent(n, eng.measuring)
            eng.answered(n, n, None, eng.measuring, now)

    def on_event(self, mask: int) -> None:
        pass

    idle = True

    def abandon(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def teardown(self) -> None:
        pass


@pytest.mark.parametrize("warmup", [0.0, 0.2])
def test_on_measure_start_is_called_once_when_measuring_begins(warmup: float) -> None:
    log: list[Any] = []
    engine: Engine

    def on_start() -> None:
        log.append(("start", engine.measuring, engine.tally.sent))

    engine = Engine(settings(warmup, 100), Target.parse("http://127.0.0.1:9"),
                    lambda eng: [Client(eng, log)], None, on_start)
    result = engine.run()
    starts = [i for i, x in enumerate(log) if x[0] == "start"]
    assert len(starts) == 1
    assert log[starts[0]] == ("start", True, 0)
    # Every claim before it was a warm-up one, every claim after it a measured one.
    assert all(not x[1] for x in log[: starts[0]])
    assert all(x[1] for x in log[starts[0] + 1 :])
    assert (result.sent, result.acked) == (100, 100)
    if warmup:
        assert starts[0] > 0


def test_the_command_line_passes_no_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Engine] = []

    class Probe(Engine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

        def run(self) -> Any:
            raise KeyboardInterrupt  # stop before any load: only the construction matters

    monkeypatch.setattr(cli, "Engine", Probe)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["http://127.0.0.1:9", "--topic", "t", "--no-progress"])
    assert made and made[0].on_measure_start is None
