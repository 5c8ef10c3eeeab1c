"""v1/v2 binary records: the C fast path gives exactly what the Python decoder gives, and
declines (None) whatever the Python decoder refuses or treats specially."""

from __future__ import annotations

import base64
import random
from typing import Any

import pytest

from gateway._speedups import v1_binary_items
from gateway.produce import v1
from gateway.produce.whole import RequestRefused


def _python(records: list[Any], partitions: int, url_partition: int | None, monkeypatch: Any) -> Any:
    monkeypatch.setattr(v1, "v1_binary_items", lambda *a: None)
    try:
        return v1.decode_records(records, v1.BINARY, partitions, url_partition)
    except RequestRefused as exc:
        return exc
    finally:
        monkeypatch.undo()


def _random_record(rnd: random.Random) -> Any:
    def data() -> Any:
        roll = rnd.random()
        if roll < 0.1:
            return None
        raw = bytes(rnd.randrange(256) for _ in range(rnd.randrange(8)))
        text = base64.b64encode(raw).decode()
        if roll < 0.15:
            return text[:-1] if text else "@"  # not base64
        if roll < 0.18:
            return 12
        if roll < 0.2:
            return "é"
        return text

    rec: dict[str, Any] = {}
    if rnd.random() < 0.97:
        rec["value"] = data()
    if rnd.random() < 0.5:
        rec["key"] = data()
    if rnd.random() < 0.4:
        rec["partition"] = rnd.choice([None, 0, 1, 2, 3, -1, True, "1", 1.0])
    if rnd.random() < 0.03:
        rec["extra"] = 1
    return rec if rnd.random() < 0.98 else ["not", "an", "object"]


@pytest.mark.parametrize("url_partition", [None, 1])
def test_fast_path_agrees_with_the_python_decoder(url_partition: int | None, monkeypatch: Any) -> None:
    rnd = random.Random(5)
    fast_used = 0
    for _ in range(3000):
        records = [_random_record(rnd) for _ in range(rnd.randrange(1, 4))]
        expected = _python(records, 3, url_partition, monkeypatch)
        fast = v1_binary_items(records, 3, url_partition)
        if fast is None:
            continue  # declined: the Python decoder answers (checked above to be consistent)
        fast_used += 1
        assert not isinstance(expected, RequestRefused), (records, expected.message)
        assert fast == expected, records
    assert fast_used > 500
