"""Produce bodies answered as a whole, through the real gateway process over raw HTTP: inputs
that once went unanswered (docs/api.md §1 "Batch variant", §2).

A records:batch entry whose JSON ``data`` held a lone surrogate escape, or was nested 100,000
deep, made the gateway drop the connection without an answer, and the valid entry before it
was not produced; a v1/v2 record whose ``partition`` lay beyond 2^63 did the same. Now the
batch answers 207 with the valid entry produced and the bad one failed as the v3 stream words
the same record, and v1/v2 answer with the partition error. A batch entry's record is the
client's text without its id, so Kafka holds the same bytes for it as for the same stream
record, and a repeated field is refused as the stream refuses it.
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


# A record whose JSON data a parser would write back differently (1E3, 1.50, an escaped name,
# escapes in a string, whitespace everywhere), with a key and a header.
SAME_TEXT = (
    b'{ "key" : {"type":"JSON", "data" : {"n" : 1E3 , "\\u0061" : [ -0.0, 1.50 ]}},\n'
    b'  "headers":[{"name":"h","value":"aGk="}],'
    b' "value":{"type":"JSON","data":[ 12345678901234567890123, "\\u00e9\\n" , true ]} }'
)


@pytest.mark.parametrize("id_at", ["first", "last"])
def test_a_batch_entry_stores_what_the_stream_stores_for_its_text(gateway, topic_factory, id_at) -> None:
    """The entry without its id is the record, as the client wrote it: Kafka holds the same key,
    value and headers for it as for the same text sent as a stream record."""
    topic = topic_factory(1)
    entry = (b'{"id":"e1",' + SAME_TEXT[1:] if id_at == "first" else SAME_TEXT[:-1] + b',"id":"e1"}')
    r = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records",
                SAME_TEXT, JSON)
    assert r.status == 200, r
    (report,) = [json.loads(line) for line in r.body.splitlines()]
    assert report["error_code"] == 200, report
    r = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch",
                b'{"entries":[' + entry + b"]}", JSON)
    assert r.status == 207, r
    assert [s["id"] for s in r.json()["successes"]] == ["e1"], r

    streamed, batched = consume_partition(gateway.bootstrap, topic, 0, 2, quiet_period=1.0)
    assert batched.key == streamed.key == b'{"n":1E3,"\\u0061":[-0.0,1.50]}'
    assert batched.value == streamed.value == b'[12345678901234567890123,"\\u00e9\\n",true]'
    assert batched.headers == streamed.headers == [("h", b"hi")]


def test_a_batch_entry_with_a_repeated_field_fails_as_the_stream_refuses_it(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    record = b'{"value":{"type":"STRING","data":"a"},"value":{"type":"STRING","data":"b"}}'
    r = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records", record, JSON)
    (report,) = [json.loads(line) for line in r.body.splitlines()]
    assert report["error_code"] == 400
    body = b'{"entries":[{"id":"ok","value":{"type":"STRING","data":"first"}},{"id":"r",' + record[1:] + b"]}"
    r = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch", body, JSON)
    assert r.status == 207, r
    assert r.json()["failures"] == [
        {"id": "r", "error_code": 400, "message": re.sub(r"^record 0 at byte \d+: ", "", report["message"])}
    ]
    assert "duplicate field 'value'" in report["message"]
    (record_in_kafka,) = consume_partition(gateway.bootstrap, topic, 0, 1, quiet_period=1.0)
    assert record_in_kafka.value == b"first"
