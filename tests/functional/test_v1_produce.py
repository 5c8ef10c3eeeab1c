"""v1 and v2 produce (``POST /topics/{t}`` and ``/topics/{t}/partitions/{p}``) through the real
gateway process and the real broker: what a client of docs/api.md §2 and §3 observes."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from typing import Any

import pytest
from support.http import Conn, HttpResponse, build_request, request
from support.kafka import consume_partition, consume_topic, create_topic
from support.murmur2 import partition_for_key

V1 = "application/vnd.kafka.binary.v1+json"
V2_BINARY = "application/vnd.kafka.binary.v2+json"
V2_JSON = "application/vnd.kafka.json.v2+json"
B64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
TAIL = b',"key_schema_id":null,"value_schema_id":null}'


def post(
    g: Any,
    path: str,
    body: bytes | dict[str, Any] | None,
    content_type: str | None = V1,
    accept: str | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    h: dict[str, str] = {}
    if content_type is not None:
        h["Content-Type"] = content_type
    if accept is not None:
        h["Accept"] = accept
    h.update(headers or {})
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return request(g.host, g.port, "POST", path, raw, h)


def offsets(p: int, o: int, *more: tuple[int, int]) -> bytes:
    entries = [(p, o), *more]
    return b'{"offsets":[' + b",".join(b'{"partition":%d,"offset":%d}' % e for e in entries) + b"]" + TAIL


# -- the product document's examples, byte for byte ---------------------------------------


def test_the_documents_examples_byte_for_byte(broker_factory, gateway_factory) -> None:
    # A broker of its own, so that the topic can be called "test" as in the document.
    b = broker_factory()
    create_topic(b.bootstrap, "test", 3)
    g = gateway_factory(bootstrap=b.bootstrap)
    keyed = partition_for_key(b"key", 3)  # murmur2, as Confluent's proxy and every Java client
    other = 2 if keyed != 2 else 0

    # The first document's single-record example.
    with Conn(g.host, g.port) as c:
        c.send(
            b"POST /topics/test HTTP/1.1\r\nHost: gateway.test\r\n"
            b"Content-Type: application/vnd.kafka.binary.v1+json\r\n"
            b'Content-Length: 47\r\n\r\n{"records":[{"key":"a2V5","value":"dmFsdWU="}]}'
        )
        r = c.read_response()
        assert r.status == 200 and r.reason == "OK", r
        assert r.header("content-type") == "application/vnd.kafka.v1+json"
        assert r.body == b'{"offsets":[{"partition":%d,"offset":0}],"key_schema_id":null,"value_schema_id":null}' % keyed
        assert r.header("content-length") == str(len(r.body))

        # The v1 spec's topic example: a keyed record and one with an explicit partition, with
        # the Accept header the spec sends (same connection: keep-alive).
        c.send(build_request(
            "POST", "/topics/test",
            b'{"records":[{"key":"a2V5","value":"dmFsdWU="},{"value":"dmFsdWU=","partition":%d}]}' % other,
            {"Content-Type": V1, "Accept": "application/vnd.kafka.v1+json"},
        ))
        r = c.read_response()
        assert (r.status, r.header("content-type")) == (200, "application/vnd.kafka.v1+json")
        assert r.body == offsets(keyed, 1, (other, 0))

        # The v1 spec's partition example: every record goes to the URL's partition, in order.
        c.send(build_request(
            "POST", f"/topics/test/partitions/{other}",
            b'{"records":[{"key":"a2V5","value":"dmFsdWU="},{"value":"dmFsdWU="}]}',
            {"Content-Type": V1, "Accept": "application/vnd.kafka.v1+json"},
        ))
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == offsets(other, 1, (other, 2))

    got = consume_topic(b.bootstrap, "test", 3, 5)
    assert [(x.key, x.value) for x in got[keyed]] == [(b"key", b"value")] * 2
    assert [(x.key, x.value) for x in got[other]] == [(None, b"value"), (b"key", b"value"), (None, b"value")]


# -- v1 -----------------------------------------------------------------------------------


def test_offsets_come_back_in_request_order_and_match_kafka(gateway, topic_factory) -> None:
    topic = topic_factory(4)
    records: list[dict[str, Any]] = []
    for i in range(300):
        rec: dict[str, Any] = {"value": B64(b"v%d" % i)}
        if i % 3 == 0:
            rec["key"] = B64(b"k%d" % (i % 17))
        elif i % 3 == 1:
            rec["partition"] = i % 4
        records.append(rec)
    r = post(gateway, f"/topics/{topic}", {"records": records})
    assert r.status == 200, r
    doc = r.json()
    assert list(doc) == ["offsets", "key_schema_id", "value_schema_id"]
    assert len(doc["offsets"]) == 300
    got = consume_topic(gateway.bootstrap, topic, 4, 300)
    landed = {(p, x.offset): (x.key, x.value) for p, xs in got.items() for x in xs}
    for i, (rec, entry) in enumerate(zip(records, doc["offsets"], strict=True)):
        assert list(entry) == ["partition", "offset"], entry
        key = base64.b64decode(rec["key"]) if "key" in rec else None
        assert landed[(entry["partition"], entry["offset"])] == (key, b"v%d" % i)
        if "key" in rec:
            assert entry["partition"] == partition_for_key(key, 4)
        if "partition" in rec:
            assert entry["partition"] == rec["partition"]


def test_null_key_and_value_and_exact_bytes(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    blobs = [b"", b"\x00\xff" * 100, bytes(range(256))]
    records = [{"key": B64(x), "value": B64(x[::-1])} for x in blobs]
    records.append({"key": None, "value": None})
    r = post(gateway, f"/topics/{topic}/partitions/0", {"records": records})
    assert r.status == 200, r
    assert [e["offset"] for e in r.json()["offsets"]] == [0, 1, 2, 3]
    got = consume_partition(gateway.bootstrap, topic, 0, 4)
    assert [(x.key, x.value) for x in got] == [(x, x[::-1]) for x in blobs] + [(None, None)]


def test_partition_path_accepts_the_same_partition_in_a_record(gateway, topic_factory) -> None:
    topic = topic_factory(3)
    r = post(gateway, f"/topics/{topic}/partitions/2",
             {"records": [{"value": B64(b"a"), "partition": 2}, {"value": B64(b"b"), "partition": None},
                          {"value": B64(b"c"), "key": B64(b"k")}]})
    assert r.status == 200, r
    assert r.body == offsets(2, 0, (2, 1), (2, 2))
    r = post(gateway, f"/topics/{topic}/partitions/2", {"records": [{"value": B64(b"x"), "partition": 1}]})
    assert (r.status, r.json()["error_code"]) == (422, 422), r
    assert "contradicts" in r.json()["message"]


def test_chunked_body_expect_continue_and_pipelining(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    body = json.dumps({"records": [{"value": B64(b"r%d" % i)} for i in range(50)]}).encode()
    with Conn(gateway.host, gateway.port) as c:
        # Expect: 100-continue, then the body in chunks.
        c.send(
            f"POST /topics/{topic} HTTP/1.1\r\nHost: x\r\nContent-Type: {V1}\r\n"
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        status, _, _ = c.read_head(10)
        assert status == 100
        for i in range(0, len(body), 97):
            piece = body[i : i + 97]
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert [e["offset"] for e in r.json()["offsets"]] == list(range(50))
        # Two requests in one write: two answers, in order.
        one = build_request("POST", f"/topics/{topic}", b'{"records":[{"value":"MQ=="}]}', {"Content-Type": V1})
        two = build_request("POST", f"/topics/{topic}", b'{"records":[{"value":"Mg=="}]}', {"Content-Type": V1})
        c.send(one + two)
        assert c.read_response().body == offsets(0, 50)
        assert c.read_response().body == offsets(0, 51)
    got = consume_partition(gateway.bootstrap, topic, 0, 52)
    assert got[-1].value == b"2" and got[-2].value == b"1"


def test_a_full_producer_queue_pauses_and_loses_nothing(gateway_factory, topic_factory) -> None:
    g = gateway_factory("-X", "queue.buffering.max.messages=100", "-X", "linger.ms=20")
    topic = topic_factory(2)
    n = 5000
    r = post(g, f"/topics/{topic}", {"records": [{"value": B64(b"%d" % i), "partition": i % 2} for i in range(n)]})
    assert r.status == 200, r
    entries = r.json()["offsets"]
    assert [e["partition"] for e in entries] == [i % 2 for i in range(n)]
    assert [e["offset"] for e in entries] == [i // 2 for i in range(n)]
    got = consume_topic(g.bootstrap, topic, 2, n)
    assert [x.value for x in got[0]] == [b"%d" % i for i in range(0, n, 2)]


def test_concurrent_requests_each_get_their_own_offsets(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    results: dict[int, list[dict[str, Any]]] = {}
    failures: list[BaseException] = []

    def run(cid: int) -> None:
        try:
            for j in range(5):
                recs = [{"value": B64(b"%d:%d:%d" % (cid, j, i))} for i in range(100)]
                r = post(gateway, f"/topics/{topic}", {"records": recs})
                assert r.status == 200, r
                results.setdefault(cid, []).extend(r.json()["offsets"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    got = consume_topic(gateway.bootstrap, topic, 2, 3000)
    landed = {(p, x.offset): x.value for p, xs in got.items() for x in xs}
    for cid, entries in results.items():
        expected = [b"%d:%d:%d" % (cid, j, i) for j in range(5) for i in range(100)]
        assert [landed[(e["partition"], e["offset"])] for e in entries] == expected


# -- v2 -----------------------------------------------------------------------------------


def test_v2_binary_entries_carry_error_code_and_error(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    r = post(gateway, f"/topics/{topic}", {"records": [{"key": "a2V5", "value": "dmFsdWU="}, {"value": "eA=="}]},
             V2_BINARY, "application/vnd.kafka.v2+json, application/vnd.kafka+json, application/json")
    assert r.status == 200, r
    assert r.header("content-type") == "application/vnd.kafka.v2+json"
    assert r.body == (
        b'{"offsets":[{"partition":0,"offset":0,"error_code":null,"error":null},'
        b'{"partition":0,"offset":1,"error_code":null,"error":null}],"key_schema_id":null,"value_schema_id":null}'
    )
    # The same on the partition path, and with no Accept at all.
    r = post(gateway, f"/topics/{topic}/partitions/0", {"records": [{"value": "eQ=="}]}, V2_BINARY)
    assert r.header("content-type") == "application/vnd.kafka.v2+json"
    assert r.body == b'{"offsets":[{"partition":0,"offset":2,"error_code":null,"error":null}]' + TAIL


def test_v2_json_round_trip(gateway, topic_factory) -> None:
    topic = topic_factory(3)
    values: list[Any] = [
        {"foo": "bar"},
        {"nested": {"a": [1, 2.5, None, True, False]}, "s": "snow ☃ é \"q\" \\ \n"},
        [1, "two", {"three": 3}],
        "a string",
        12345678901234567890,
        -0.5,
        True,
        {},
        [],
        "",
    ]
    records: list[dict[str, Any]] = [{"value": v} for v in values]
    records.append({"key": {"id": 7}, "value": {"k": "keyed"}})
    records.append({"key": "k", "value": None})  # tombstone: a Kafka null, not the text null
    records.append({"key": None, "value": 1, "partition": 2})
    r = post(gateway, f"/topics/{topic}", {"records": records}, V2_JSON, "application/vnd.kafka.v2+json")
    assert r.status == 200, r
    assert r.header("content-type") == "application/vnd.kafka.v2+json"
    entries = r.json()["offsets"]
    assert all(e["error_code"] is None and e["error"] is None for e in entries)
    got = consume_topic(gateway.bootstrap, topic, 3, len(records))
    landed = {(p, x.offset): (x.key, x.value) for p, xs in got.items() for x in xs}
    stored = [landed[(e["partition"], e["offset"])] for e in entries]
    compact = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()  # noqa: E731
    assert stored[: len(values)] == [(None, compact(v)) for v in values]
    assert stored[len(values)] == (b'{"id":7}', b'{"k":"keyed"}')
    assert entries[len(values)]["partition"] == partition_for_key(b'{"id":7}', 3)
    assert stored[len(values) + 1] == (b'"k"', None)
    assert stored[len(values) + 2] == (None, b"1") and entries[-1]["partition"] == 2
    # Whitespace and escapes in the request do not survive: the compact text of the value does.
    raw = b'{"records":[{"value": { "a" : [ 1 , 2 ] , "u" : "\\u00e9\\/" } }]}'
    r = post(gateway, f"/topics/{topic}/partitions/1", raw, V2_JSON)
    assert r.status == 200, r
    offset = r.json()["offsets"][0]["offset"]
    again = consume_partition(gateway.bootstrap, topic, 1, offset + 1)
    assert again[offset].value == '{"a":[1,2],"u":"é/"}'.encode()


def test_v1_json_embedded_format(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    r = post(gateway, f"/topics/{topic}", {"records": [{"value": {"x": 1}}]}, "application/vnd.kafka.json.v1+json")
    assert r.status == 200, r
    assert r.header("content-type") == "application/vnd.kafka.v1+json"
    assert r.body == offsets(0, 0)
    assert consume_partition(gateway.bootstrap, topic, 0, 1)[0].value == b'{"x":1}'


def test_plain_application_json_is_v1(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    r = post(gateway, f"/topics/{topic}", {"records": [{"value": "eA=="}]}, "application/json", "application/json")
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    assert r.body == offsets(0, 0)  # the v1 shape: no error_code/error on success


# -- negotiation through the server ---------------------------------------------------------


@pytest.mark.parametrize(
    "content_type,accept,status,answer_type",
    [
        (V1, None, 200, "application/vnd.kafka.v1+json"),
        (V1, "*/*", 200, "application/vnd.kafka.v1+json"),
        (V1, "application/json", 200, "application/json"),
        (V1, "application/vnd.kafka+json; q=0.9, application/json; q=0.5", 200, "application/vnd.kafka+json"),
        ("application/vnd.kafka.v1+json", "application/*", 200, "application/vnd.kafka.v1+json"),
        ("application/vnd.kafka+json; charset=UTF-8", None, 200, "application/vnd.kafka.v1+json"),
        (V2_BINARY, "application/vnd.kafka.v2+json", 200, "application/vnd.kafka.v2+json"),
        (V2_BINARY, "text/html, application/json;q=0.1", 200, "application/json"),
        (V1, "application/vnd.kafka.v2+json", 406, "application/json"),
        (V2_BINARY, "application/vnd.kafka.v1+json", 406, "application/json"),
        (V1, "text/html", 406, "application/json"),
        (V1, "application/json;q=0", 406, "application/json"),
        ("text/plain", None, 415, "application/json"),
        (None, None, 415, "application/json"),
        ("application/octet-stream", None, 415, "application/json"),
        ("application/vnd.kafka.avro.v2+json", None, 415, "application/json"),
        ("application/json; charset=latin-1", None, 415, "application/json"),
        ("text/plain", "text/html", 415, "application/json"),  # 415 is checked before 406
    ],
)
def test_negotiation_table_through_the_server(gateway, topic_factory, content_type, accept, status, answer_type) -> None:
    topic = topic_factory(1)
    r = post(gateway, f"/topics/{topic}", {"records": [{"value": "eA=="}]}, content_type, accept)
    assert r.status == status, r
    assert r.header("content-type") == answer_type
    if status != 200:
        assert r.json()["error_code"] == status
        assert list(r.json()) == ["error_code", "message"]


def test_several_accept_lines_are_one_list(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    body = b'{"records":[{"value":"eA=="}]}'
    with Conn(gateway.host, gateway.port) as c:
        c.send(f"POST /topics/{topic} HTTP/1.1\r\nHost: x\r\nContent-Type: {V1}\r\n"
               f"Accept: text/html\r\nAccept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               .encode() + body)
        r = c.read_response()
    assert (r.status, r.header("content-type")) == (200, "application/json"), r


# -- errors -------------------------------------------------------------------------------


def test_unknown_topic_is_404_40401_on_both_paths_and_creates_nothing(gateway, broker) -> None:
    from confluent_kafka.admin import AdminClient

    for path in ("/topics/no-such-v1-topic", "/topics/no-such-v1-topic/partitions/0"):
        r = post(gateway, path, {"records": [{"value": "eA=="}]}, V2_BINARY)
        assert r.status == 404, r
        assert r.header("content-type") == "application/vnd.kafka.v2+json"
        assert r.json() == {"error_code": 40401, "message": "topic no-such-v1-topic not found"}
    assert "no-such-v1-topic" not in AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5).topics


@pytest.mark.parametrize("partition", ["3", "99", "-1", "abc", "1.0", "99999999999999999999"])
def test_unknown_partition_in_the_url_is_404_40402(gateway, topic_factory, partition) -> None:
    topic = topic_factory(3)
    r = post(gateway, f"/topics/{topic}/partitions/{partition}", {"records": [{"value": "eA=="}]})
    assert r.status == 404, r
    assert r.json()["error_code"] == 40402
    assert partition in r.json()["message"]


def test_a_record_partition_outside_the_topic_is_404_40402_and_nothing_is_produced(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    for bad in (2, -1, 1 << 40):
        r = post(gateway, f"/topics/{topic}", {"records": [{"value": "eA==", "partition": 0},
                                                           {"value": "eQ==", "partition": bad}]})
        assert r.status == 404, r
        assert r.json() == {"error_code": 40402, "message": f"records[1].partition {bad} not found: "
                            "the topic has 2 partitions"}
    assert consume_topic(gateway.bootstrap, topic, 2, 0, quiet_period=1.0) == {0: [], 1: []}


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{}", "records must be a non-empty array"),
    (b'{"records":[]}', "records must be a non-empty array"),
    (b'{"records":{}}', "records must be a non-empty array"),
    (b'{"records":null}', "records must be a non-empty array"),
    (b"[]", "must be a JSON object"),
    (b'{"records":[{"value":"eA=="}]', "the body is not valid JSON: an array or object not closed at byte 29"),
    (b'{"records":[{"value":"eA=="}]} x', "not valid JSON"),
    (b'{"records":[{"value":NaN}]}', "not valid JSON"),
    (b'{"records":[{"value":"eA=="}]}\xff', "the body is not UTF-8 (byte 30)"),
    (b'{"records":[{"value":"eA=="}],"extra":1}', "unknown field 'extra'"),
    (b'{"records":[{"value":"eA=="},1]}', "records[1] is not an object"),
    (b'{"records":[{"key":"eA=="}]}', "records[0] has no value"),
    (b'{"records":[{"value":"eA==","timestamp":1}]}', "records[0] has an unknown field 'timestamp'"),
    (b'{"records":[{"value":"eA=="},{"value":"not base64!"}]}', "records[1].value is not valid base64"),
    (b'{"records":[{"value":"eA"}]}', "records[0].value is not valid base64"),
    (b'{"records":[{"value":"eA==","key":"%%%%"}]}', "records[0].key is not valid base64"),
    (b'{"records":[{"value":"\xc3\xa9"}]}', "records[0].value is not valid base64"),
    (b'{"records":[{"value":5}]}', "records[0].value must be a base64 string"),
    (b'{"records":[{"value":{"type":"BINARY","data":"eA=="}}]}', "records[0].value must be a base64 string"),
    (b'{"records":[{"value":"eA==","partition":"1"}]}', "records[0].partition must be an integer"),
    (b'{"records":[{"value":"eA==","partition":true}]}', "records[0].partition must be an integer"),
    (b'{"records":[{"value":"eA==","partition":0.0}]}', "records[0].partition must be an integer"),
    (b"  ", "the request body is empty"),
]


def test_malformed_bodies_are_422_and_produce_nothing(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    for body, message in BAD_BODIES:
        for ctype in (V1, V2_BINARY):
            r = post(gateway, f"/topics/{topic}", body, ctype)
            assert r.status == 422, (body, r)
            doc = r.json()
            assert doc["error_code"] == 422 and message in doc["message"], (body, doc)
    # json format: things that are not JSON values, or cannot be stored as JSON text.
    for body, message in [
        (b'{"records":[{"value":1e400}]}', "records[0].value cannot be stored as JSON text"),
        # Not JSON the gateway reads: a lone surrogate escape, -Infinity, nesting past 1024.
        (b'{"records":[{"value":"\\ud800"}]}',
         "the body is not valid JSON: an invalid string escape (or a lone surrogate) at byte 29"),
        (b'{"records":[{"value":-Infinity}]}', "the body is not valid JSON: an invalid number at byte 21"),
        (b'{"records":[{"value":1,"key":"x","offset":3}]}', "unknown field 'offset'"),
        (b'{"records":[' + b"[" * 100000 + b"]" * 100000 + b"]}",
         "the body is not valid JSON: nested too deeply at byte 1034"),
    ]:
        r = post(gateway, f"/topics/{topic}", body, V2_JSON)
        assert (r.status, r.json()["error_code"]) == (422, 422), (body[:80], r)
        assert message in r.json()["message"], (body[:80], r)
    assert consume_partition(gateway.bootstrap, topic, 0, 0, quiet_period=1.0) == []


def test_schema_fields_of_confluents_body_are_accepted(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    r = post(gateway, f"/topics/{topic}", {"records": [{"value": "eA=="}], "key_schema_id": None,
                                           "value_schema": None}, V2_BINARY)
    assert r.status == 200, r


@pytest.mark.parametrize("framing", ["content-length-0", "none"])
def test_an_empty_body_is_422(gateway, topic_factory, framing) -> None:
    topic = topic_factory(1)
    with Conn(gateway.host, gateway.port) as c:
        extra = "Content-Length: 0\r\n" if framing == "content-length-0" else ""
        c.send(f"POST /topics/{topic} HTTP/1.1\r\nHost: x\r\nContent-Type: {V1}\r\n{extra}\r\n".encode())
        r = c.read_response()
        assert (r.status, r.json()["error_code"]) == (422, 422)
        assert r.header("content-type") == "application/vnd.kafka.v1+json"
        # The connection stays usable.
        c.send(build_request("POST", f"/topics/{topic}", b'{"records":[{"value":"eA=="}]}', {"Content-Type": V1}))
        assert c.read_response().status == 200


def test_body_over_the_limit_is_413(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--max-request-bytes", "1000")
    topic = topic_factory(1)
    big = json.dumps({"records": [{"value": B64(b"x" * 900)}]}).encode()
    r = post(g, f"/topics/{topic}", big)
    assert (r.status, r.json()["error_code"]) == (413, 413), r
    # Chunked: refused when the limit is crossed, and the connection closes.
    with Conn(g.host, g.port) as c:
        c.send(f"POST /topics/{topic} HTTP/1.1\r\nHost: x\r\nContent-Type: {V1}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n".encode())
        for i in range(0, len(big), 300):
            piece = big[i : i + 300]
            c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        r = c.read_response()
        assert (r.status, r.json()["error_code"]) == (413, 413), r
        assert r.header("connection") == "close"
    # Under the limit it works.
    r = post(g, f"/topics/{topic}", {"records": [{"value": B64(b"x" * 600)}]})
    assert r.status == 200, r
    assert len(consume_partition(g.bootstrap, topic, 0, 1, quiet_period=0.5)) == 1


def test_records_kafka_refuses_500_50001_or_per_record_50002(gateway_factory, topic_factory) -> None:
    # A producer limit below the record's size: librdkafka refuses it in produce() itself.
    g = gateway_factory("-X", "message.max.bytes=2000")
    topic = topic_factory(1)
    big = B64(b"x" * 5000)
    # Not one record could be handed to Kafka: the request failed as a whole.
    for ctype in (V1, V2_BINARY):
        r = post(g, f"/topics/{topic}", {"records": [{"value": big}, {"value": big}]}, ctype)
        assert r.status == 500, r
        assert r.json()["error_code"] == 50001
        assert list(r.json()) == ["error_code", "message"]
    # Some could: 200, and the refused one has its error entry in its place.
    r = post(g, f"/topics/{topic}", {"records": [{"value": "eA=="}, {"value": big}, {"value": "eQ=="}]})
    assert r.status == 200, r
    e = r.json()["offsets"]
    assert e[0] == {"partition": 0, "offset": 0} and e[2] == {"partition": 0, "offset": 1}
    assert list(e[1]) == ["partition", "offset", "error_code", "error"]
    assert (e[1]["partition"], e[1]["offset"], e[1]["error_code"]) == (None, None, 50002)
    assert "too large" in e[1]["error"].lower()
    r = post(g, f"/topics/{topic}", {"records": [{"value": big}, {"value": "eg=="}]}, V2_BINARY)
    assert r.status == 200, r
    assert r.json()["offsets"][1] == {"partition": 0, "offset": 2, "error_code": None, "error": None}
    assert r.json()["offsets"][0]["error_code"] == 50002
    got = consume_partition(g.bootstrap, topic, 0, 3, quiet_period=0.5)
    assert [x.value for x in got] == [b"x", b"y", b"z"]


def test_records_that_time_out_get_50003_entries(broker_factory, gateway_factory) -> None:
    b = broker_factory()
    topic = create_topic(b.bootstrap, "v1-timeouts", 1)
    g = gateway_factory("-X", "message.timeout.ms=1500", bootstrap=b.bootstrap)
    assert post(g, f"/topics/{topic}", {"records": [{"value": "eA=="}]}).status == 200
    assert b.pid is not None
    os.kill(b.pid, signal.SIGSTOP)  # a hung broker: it keeps its state
    try:
        start = time.monotonic()
        r = post(g, f"/topics/{topic}", {"records": [{"value": "eQ=="}, {"value": "eg=="}]}, V2_BINARY)
        assert time.monotonic() - start < 15
    finally:
        os.kill(b.pid, signal.SIGCONT)
    assert r.status == 200, r
    for e in r.json()["offsets"]:
        assert (e["partition"], e["offset"], e["error_code"]) == (None, None, 50003), e
        assert e["error"]
    # Once the broker is back the gateway carries on: after the message timeout librdkafka
    # bumped the idempotent producer's epoch and this broker fences it from then on; the
    # gateway sees the producer's state rejected and replaces the producer.
    deadline = time.monotonic() + 20
    while True:
        r = post(g, f"/topics/{topic}", {"records": [{"value": "MQ=="}]})
        entry = r.json()["offsets"][0]
        if r.status == 200 and "error_code" not in entry:
            break
        assert entry["error_code"] == 50003, entry  # retriable while the producer is replaced
        assert time.monotonic() < deadline, f"the gateway did not recover: {r.body[:300]!r}"
        time.sleep(0.5)


def test_a_client_that_leaves_after_sending_still_gets_its_records_delivered(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    n = 3000
    body = json.dumps({"records": [{"value": B64(b"gone-%d" % i)} for i in range(n)]}).encode()
    with Conn(gateway.host, gateway.port) as c:
        c.send(build_request("POST", f"/topics/{topic}", body, {"Content-Type": V1}))
    # The whole body was sent: every record is produced although nobody reads the answer.
    got = consume_topic(gateway.bootstrap, topic, 2, n, quiet_period=0.5)
    assert sorted(x.value for xs in got.values() for x in xs) == sorted(b"gone-%d" % i for i in range(n))
