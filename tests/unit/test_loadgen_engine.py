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


def test_records_written_after_a_streams_last_report_fail_with_its_code() -> None:
    """A stream cut short (its maximum duration, say) ends with one report for the rest of the
    body. It may come when every record written so far has its report; the records written
    after it, which the server never read, fail with that last report's code when the response
    ends, not with the code of the success report before it."""
    from gateway.loadgen.modes import StreamClient
    from gateway.loadgen.records import RecordSource

    s = Settings(mode="stream", topic="t", records=None, duration=5.0, connections=1, batch=1,
                 record_bytes=10, keys=0, rate=None, window=100, warmup=0.0, drain_timeout=1.0,
                 cluster_id="c", group="g")
    eng = Engine(s, Target.parse("http://127.0.0.1:1", None, None, False), lambda e: [])
    eng.sending = eng.measuring = True
    c = StreamClient(eng, 0, RecordSource("v3", 10, 0, 10), 10)
    c.streaming, c.status = True, 200

    def write(n: int) -> None:  # as pump does, without a socket
        first, n = eng.claim(n)
        c.spans.append([n, 0.0, 0.0, True])
        c.in_flight += n
        eng.sent(n, True)

    ok = b'{"error_code":200,"cluster_id":"c","topic_name":"t","partition_id":0,"offset":1}\r\n'
    cut = b'{"error_code":408,"message":"the stream was open for its maximum of 400 ms"}\r\n'
    write(3)
    c.on_body(ok * 3 + cut)
    c.after_read(1.0)
    write(2)  # written before the end of the response reached us: never read by the server
    c.on_end()
    assert (eng.tally.acked, eng.tally.failed) == (3, {"408": 2})
    assert eng.tally.errors and "maximum" in eng.tally.errors[0]
