"""Content negotiation of v1/v2 produce (docs/api.md §2, §3): Content-Type picks the version and
the embedded format (415 when we do not take it), Accept picks the answer's media type among the
version's (RFC 9110 §12.5.1; 406 when none is acceptable)."""

from __future__ import annotations

import pytest

from gateway import errors
from gateway.api.produce_v1 import Negotiated, negotiate, request_format, response_type
from gateway.http.media import is_json, parse_media_type
from gateway.produce.v1 import BINARY, JSON

V1_TYPE = b"application/vnd.kafka.v1+json"
V2_TYPE = b"application/vnd.kafka.v2+json"


@pytest.mark.parametrize(
    "content_type,expected",
    [
        # v1 (the v1 spec's list), case and whitespace do not matter
        ("application/vnd.kafka.binary.v1+json", (1, BINARY)),
        ("application/vnd.kafka.v1+json", (1, BINARY)),
        ("application/vnd.kafka+json", (1, BINARY)),
        ("application/json", (1, BINARY)),
        ("Application/JSON", (1, BINARY)),
        ("  application/vnd.kafka.binary.v1+json  ", (1, BINARY)),
        ("application/vnd.kafka.json.v1+json", (1, JSON)),
        # charset=utf-8 (any case, quoted or not) and unknown parameters are fine
        ("application/json; charset=utf-8", (1, BINARY)),
        ('application/vnd.kafka.binary.v2+json;charset="UTF-8"', (2, BINARY)),
        ("application/vnd.kafka.json.v2+json; foo=bar", (2, JSON)),
        # v2
        ("application/vnd.kafka.binary.v2+json", (2, BINARY)),
        ("application/vnd.kafka.json.v2+json", (2, JSON)),
        ("application/vnd.kafka.v2+json", (2, BINARY)),
    ],
)
def test_request_formats(content_type: str, expected: tuple[int, str]) -> None:
    assert request_format(content_type) == expected


@pytest.mark.parametrize(
    "content_type,in_message",
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("text/plain", "text/plain is not supported"),
        ("application/octet-stream", "not supported"),
        ("application/x-www-form-urlencoded", "not supported"),  # curl -d without -H
        ("application/vnd.kafka.avro.v2+json", "Schema Registry"),
        ("application/vnd.kafka.avro.v1+json", "Schema Registry"),
        ("application/vnd.kafka.jsonschema.v2+json", "Schema Registry"),
        ("application/vnd.kafka.protobuf.v2+json", "Schema Registry"),
        ("application/vnd.kafka.binary.v3+json", "not supported"),
        ("application/json; charset=latin-1", "charset latin-1"),
        ("application/vnd.kafka.binary.v1+json; charset=utf-16", "charset utf-16"),
        ("application/jsonx", "not supported"),
    ],
)
def test_request_formats_refused_with_415(content_type: str | None, in_message: str) -> None:
    with pytest.raises(errors.UnsupportedMediaType) as info:
        request_format(content_type)
    assert info.value.status == 415 and info.value.error_code == 415
    assert in_message in info.value.message


@pytest.mark.parametrize(
    "version,accept,expected",
    [
        # absent or empty: the version's own type
        (1, None, V1_TYPE),
        (1, "", V1_TYPE),
        (2, None, V2_TYPE),
        (2, " ", V2_TYPE),
        # wildcards: our preferred type
        (1, "*/*", V1_TYPE),
        (1, "*", V1_TYPE),  # old Java clients' bare "*"
        (1, "application/*", V1_TYPE),
        (2, "*/*", V2_TYPE),
        # an exact type, in any case
        (1, "application/json", b"application/json"),
        (1, "APPLICATION/JSON", b"application/json"),
        (1, "application/vnd.kafka+json", b"application/vnd.kafka+json"),
        (1, "application/vnd.kafka.v1+json", V1_TYPE),
        (1, "application/vnd.kafka.binary.v1+json", b"application/vnd.kafka.binary.v1+json"),
        (2, "application/vnd.kafka.v2+json", V2_TYPE),
        (2, "application/json", b"application/json"),
        (2, "application/vnd.kafka.json.v2+json", b"application/vnd.kafka.json.v2+json"),
        # Confluent's documented Accept list
        (2, "application/vnd.kafka.v2+json, application/vnd.kafka+json, application/json", V2_TYPE),
        (1, "application/vnd.kafka.v1+json, application/vnd.kafka+json, application/json", V1_TYPE),
        # q-values: the client's preference first ...
        (1, "application/json, application/vnd.kafka.v1+json;q=0.5", b"application/json"),
        (1, "application/vnd.kafka+json;q=0.9, application/json;q=0.95", b"application/json"),
        (2, "text/html, application/json;q=0.1", b"application/json"),
        # ... equal q: our order
        (1, "application/json, application/vnd.kafka+json", b"application/vnd.kafka+json"),
        (1, "application/json;q=0.5, application/vnd.kafka+json;q=0.5", b"application/vnd.kafka+json"),
        # the most specific matching range decides a type's q (RFC 9110 §12.5.1)
        (1, "*/*;q=0.1, application/vnd.kafka.v1+json;q=0", b"application/vnd.kafka+json"),
        (1, "application/*;q=0, application/json", b"application/json"),
        (1, "*/*, application/vnd.kafka.v1+json;q=0.2", b"application/vnd.kafka+json"),
        # spaces, parameters other than q, empty elements (several Accept lines are joined so)
        (1, " application/json ; charset=utf-8 ; q=1.0 ,, ", b"application/json"),
        (2, "text/plain, application/vnd.kafka.v2+json", V2_TYPE),
        # a malformed q drops that range only
        (1, "application/json;q=high, application/vnd.kafka+json", b"application/vnd.kafka+json"),
        (1, "application/json;q=2, */*;q=0.1", V1_TYPE),
    ],
)
def test_response_types(version: int, accept: str | None, expected: bytes) -> None:
    assert response_type(version, accept) == expected


@pytest.mark.parametrize(
    "version,accept",
    [
        (1, "text/html"),
        (1, "application/xml, text/*"),
        (1, "application/vnd.kafka.v2+json"),  # a v1 request cannot get the v2 shape
        (2, "application/vnd.kafka.v1+json"),  # nor a v2 request the v1 shape
        (2, "application/vnd.kafka.binary.v1+json"),
        (1, "application/json;q=0"),
        (1, "*/*;q=0"),
        (1, "application/*;q=0.0"),
        (1, "application/json;q=nan"),
        (1, "application/json;q=bogus"),
    ],
)
def test_nothing_acceptable_is_406(version: int, accept: str) -> None:
    with pytest.raises(errors.NotAcceptable) as info:
        response_type(version, accept)
    assert info.value.status == 406 and info.value.error_code == 406
    assert accept in info.value.message


def test_negotiate_checks_content_type_before_accept() -> None:
    assert negotiate("application/vnd.kafka.binary.v1+json", None) == Negotiated(1, BINARY, V1_TYPE)
    assert negotiate("application/vnd.kafka.json.v2+json", "application/json") == Negotiated(
        2, JSON, b"application/json"
    )
    # application/json on the v2 paths is v1 (docs/api.md §3): v1 answer types only.
    assert negotiate("application/json", None) == Negotiated(1, BINARY, V1_TYPE)
    with pytest.raises(errors.NotAcceptable):
        negotiate("application/json", "application/vnd.kafka.v2+json")
    # Both wrong: 415 wins, as in Confluent's proxy (JAX-RS matches Content-Type first).
    with pytest.raises(errors.UnsupportedMediaType):
        negotiate("text/plain", "text/html")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("application/json", ("application/json", {})),
        (" Application/JSON ; Charset = UTF-8 ", ("application/json", {"charset": "UTF-8"})),
        ('a/b; x="y"; q=0.5', ("a/b", {"x": "y", "q": "0.5"})),
        ("a/b;;", ("a/b", {})),
        ("", ("", {})),
    ],
)
def test_parse_media_type(text: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_media_type(text) == expected


@pytest.mark.parametrize(
    "content_type,expected",
    [
        ("application/json", True),
        ("Application/JSON ; charset=UTF-8", True),
        ('application/json;charset="utf-8";', True),
        ("application/json; charset=latin-1", False),
        ("application/json; foo=bar", False),
        ("application/json; charset", False),
        ("application/json; =utf-8", False),
        ("application/jsonx", False),
        ("text/plain", False),
        (None, False),
    ],
)
def test_the_v3_json_content_type(content_type: str | None, expected: bool) -> None:
    """The v3 endpoints take application/json with no parameter but charset=utf-8 (415
    otherwise); the same media-type parser as v1/v2 negotiation reads it."""
    assert is_json(content_type) is expected


def test_negotiate_gives_the_same_answer_again_and_refuses_again() -> None:
    first = negotiate("application/vnd.kafka.binary.v2+json", "application/json")
    assert negotiate("application/vnd.kafka.binary.v2+json", "application/json") == first
    for _ in range(2):
        with pytest.raises(errors.UnsupportedMediaType):
            negotiate("text/plain", None)
        with pytest.raises(errors.NotAcceptable):
            negotiate("application/vnd.kafka.binary.v2+json", "text/html")
