"""Produce bodies answered as a whole, through the real gateway process over raw HTTP: inputs
that once went unanswered (docs/api.md §1 "Batch variant", §2).

A records:batch entry whose JSON ``data`` held a lone surrogate escape, or was nested 100,000
deep, made the gateway drop the connection without an answer, and the valid entry before it
was not produced; a v1/v2 record whose ``partition`` lay beyond 2^63 did the same. Now the
batch answers 207 with the valid entry produced and the bad one failed as the v3 stream words
the same record, and v1/v2 answer with the partition error.
"""

from __future__ import annotations

import json
import re

import pytest
from support.http import request
from support.kafka import consume_partition

JSON = {"Content-Type": "application/json"}
SURROGATE = b'{"value":{"type":"JSON","data":"\\ud800"}}'
DEEP = b'{"value":{"type":"JSON","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"


@pytest.mark.parametrize("bad", [SURROGATE, DEEP], ids=["lone-surrogate", "nested-100000-deep"])
def test_a_batch_entry_json_cannot_hold_fails_alone(gateway, topic_factory, bad) -> None:
    topic = topic_factory(1)
    body = b'{"entries":[{"id":"good","value":{"type":"STRING","data":"first"}},{"id":"bad",' + bad[1:] + b"]}"
    r = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch", body, JSON)
    assert r.status == 207, r
    doc = r.json()
    assert [(s["id"], s["partition_id"], s["offset"]) for s in doc["successes"]] == [("good", 0, 0)]
    (failure,) = doc["failures"]

    # The same record in a v3 stream: one 400 report, the stream goes on to its end.
    r = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records", bad, JSON)
    assert r.status == 200, r
    (report,) = [json.loads(line) for line in r.body.splitlines()]
    assert report["error_code"] == 400
    stream_message = re.sub(r"^record 0 at byte \d+: ", "", report["message"])
    assert failure == {"id": "bad", "error_code": 400, "message": stream_message}
    assert stream_message in ("invalid JSON: unpaired surrogate escape \\ud800",
                              "invalid JSON: nesting deeper than 64 levels")

    # Only the valid entry reached Kafka.
    (record,) = consume_partition(gateway.bootstrap, topic, 0, 1, quiet_period=1.0)
    assert record.value == b"first"


@pytest.mark.parametrize("path,status,code", [
    ("/topics/{t}", 404, 40402),  # a partition the topic does not have
    ("/topics/{t}/partitions/0", 422, 422),  # a partition that contradicts the URL's
])
@pytest.mark.parametrize("partition", ["99999999999999999999", "-99999999999999999999"])
def test_a_v1_partition_beyond_64_bits_is_answered(gateway, topic_factory, path, status, code, partition) -> None:
    topic = topic_factory(1)
    body = b'{"records":[{"value":"AA==","partition":%s}]}' % partition.encode()
    r = request(gateway.host, gateway.port, "POST", path.format(t=topic), body,
                {"Content-Type": "application/vnd.kafka.binary.v2+json"})
    assert (r.status, r.json()["error_code"]) == (status, code), r
    assert partition in r.json()["message"]
