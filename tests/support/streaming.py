"""A v3 produce stream driven by two threads, for tests that do something else meanwhile
(stop a broker, signal the gateway): one thread writes numbered records at a steady pace,
the other collects the reports as they arrive.

Every record's value is unique (``<tag>-<index>``), so a report can be checked against what
Kafka holds: the i-th report belongs to the i-th record sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

from .http import ProduceStream
from .kafka import Record


def record_value(tag: str, i: int) -> bytes:
    return f"{tag}-{i:07d}".encode()


class PacedStream:
    """``batch`` records every ``interval`` seconds until ``finish()`` (or ``limit`` records)."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        *,
        tag: str,
        batch: int = 20,
        interval: float = 0.02,
        limit: int | None = None,
        pad: int = 0,
        keys: int = 0,
    ) -> None:
        self.tag = tag
        self.keys = keys  # record i has the key "k<i % keys>" (0: no key)
        self.batch = batch
        self.interval = interval
        self.limit = limit
        self.pad = "p" * pad
        self.sent = 0  # records whose bytes were fully handed to the socket
        self.send_error: BaseException | None = None
        self.reports: list[dict[str, Any]] = []
        self.report_times: list[float] = []
        self.read_error: BaseException | None = None
        self.ended = False  # the gateway ended the response (last chunk)
        self._stop = threading.Event()
        self._go = threading.Event()  # cleared: the sender waits (pause/resume)
        self._go.set()
        self._idle = threading.Event()  # set while the sender is paused
        self._stream = ProduceStream(host, port, topic, timeout=120)
        self.status = self._stream.read_status(10)
        self._sender = threading.Thread(target=self._send_loop, name=f"send-{tag}", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name=f"read-{tag}", daemon=True)
        self._sender.start()
        self._reader.start()

    def value(self, i: int) -> bytes:
        return record_value(self.tag, i)

    def key(self, i: int) -> bytes | None:
        return f"k{i % self.keys}".encode() if self.keys else None

    def _record(self, i: int) -> dict[str, Any]:
        rec: dict[str, Any] = {"value": {"type": "STRING", "data": self.value(i).decode() + self.pad}}
        if self.keys:
            rec["key"] = {"type": "STRING", "data": f"k{i % self.keys}"}
        return rec

    def _body(self, start: int, n: int) -> bytes:
        return b"".join(json.dumps(self._record(i)).encode() for i in range(start, start + n))

    def _send_loop(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if not self._go.is_set():
                    self._idle.set()
                    while not self._go.wait(0.05):
                        if self._stop.is_set():
                            return
                    self._idle.clear()
                    next_at = time.monotonic()
                n = self.batch if self.limit is None else min(self.batch, self.limit - self.sent)
                if n <= 0:
                    break
                self._stream.send(self._body(self.sent, n))
                self.sent += n
                next_at += self.interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
        except OSError as exc:  # the gateway closed the connection (e.g. it is stopping)
            self.send_error = exc
        finally:
            self._idle.set()

    def _read_loop(self) -> None:
        conn = self._stream.conn
        pending = bytearray()
        try:
            while True:
                data = conn.read_chunk(time.monotonic() + 120)
                if not data:
                    self.ended = True
                    break
                pending += data
                *lines, rest = bytes(pending).split(b"\r\n")
                pending = bytearray(rest)
                now = time.monotonic()
                for line in lines:
                    self.reports.append(json.loads(line))
                    self.report_times.append(now)
        except (OSError, ConnectionError, TimeoutError) as exc:
            self.read_error = exc
        if pending:
            self.read_error = AssertionError(
                f"response ended inside a report: {bytes(pending)[:200]!r}"
            )

    def pause(self, timeout: float = 10.0) -> None:
        """Stop sending for now and wait until every record sent has its report."""
        self._go.clear()
        assert self._idle.wait(timeout), "the sender did not pause"
        self.wait_reports(self.sent, timeout)

    def resume(self) -> None:
        self._idle.clear()
        self._go.set()

    def wait_reports(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.reports) < n:
            assert self._reader.is_alive(), f"the response ended after {len(self.reports)} reports"
            assert time.monotonic() < deadline, f"{len(self.reports)} of {n} reports in {timeout} s"
            time.sleep(0.01)

    def stop_sending(self) -> None:
        self._stop.set()
        self._sender.join(30)
        assert not self._sender.is_alive(), "the sender is stuck"

    def finish(self, timeout: float = 60.0, *, end: bool = True) -> list[dict[str, Any]]:
        """Stop sending, end the body (unless the gateway already ended the response), and
        wait for the response to end; returns every report."""
        self.stop_sending()
        if end and self.send_error is None:
            self._stream.end()
        self._reader.join(timeout)
        assert not self._reader.is_alive(), (
            f"the response did not end within {timeout} s: {len(self.reports)} reports for "
            f"{self.sent} records"
        )
        self._stream.close()
        assert self.read_error is None, f"reading reports failed: {self.read_error!r}"
        assert self.ended, "the response did not end with its last chunk"
        return self.reports

    def close(self) -> None:
        self._stop.set()
        self._stream.close()


def check_acknowledged(
    streams: Iterable[PacedStream],
    landed: list[Record],
    *,
    since: dict[str, int] | None = None,
    resends_misplaced: bool = False,
) -> dict[bytes, Record]:
    """Every 200 report of the streams is in ``landed`` (what a consumer read back) at its
    partition and offset, holding that record's value (report i is record i's). With
    ``since``, only the records from index ``since[tag]`` on are checked. Returns the
    records read, by value."""
    at = {(r.partition, r.offset): r for r in landed}
    by_value = {r.value: r for r in landed if r.value is not None}
    for s in streams:
        first = 0 if since is None else since[s.tag]
        for i, rep in enumerate(s.reports):
            if i < first or rep["error_code"] != 200:
                continue
            where = (rep["partition_id"], rep["offset"])
            expected = s.value(i) + s.pad.encode()
            misplaced = resends_misplaced and at.get(where) is not None and at[where].value != expected
            if rep["offset"] == -1 or misplaced:
                # Acknowledged without an offset: the broker already had this record (a resend
                # whose first answer was lost; idempotence made it a duplicate, not a copy). It
                # must be in Kafka once, in that partition. With ``resends_misplaced``, a report
                # whose offset holds another record is checked the same way: Tansu answers such
                # a duplicate with a base offset that is not the original one, and the gateway
                # can only pass on what the broker says.
                got = by_value.get(expected)
                assert got is not None and got.partition == rep["partition_id"], (
                    f"{s.tag} record {i} was acknowledged (offset unknown) in partition "
                    f"{where[0]}, which does not hold it ({len(landed)} records read)"
                )
                continue
            got = at.get(where)
            assert got is not None, (
                f"{s.tag} record {i} was acknowledged at partition {where[0]} offset "
                f"{where[1]}, which Kafka does not hold ({len(landed)} records read)"
            )
            assert got.value == expected, (
                f"{s.tag} record {i}: its report says partition {where[0]} offset {where[1]}, "
                f"which holds {got.value!r}, not {expected!r}"
            )
    return by_value
