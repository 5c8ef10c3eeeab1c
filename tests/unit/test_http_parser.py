"""Request head parsing and chunked body decoding (gateway.http.parser and gateway.http.chunked,
RFC 9112). Every test runs on both parse_head twins, the compiled one and the Python reference
(tests/support/head_twins.py)."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys

import pytest
from support.head_twins import HEAD_TWINS, swapped

from gateway import errors
from gateway.config_sources import unknown_env
from gateway.http.chunked import ChunkedDecoder
from gateway.http.parser import (
    HEAD_PARSER_ENV,
    MAX_EMPTY_LINES,
    HttpLimits,
    HttpVersionNotSupported,
    RequestHead,
    head_parser,
    parse_head,
    python_parse_head,
)

LIMITS = HttpLimits()
SEEDS = range(40)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module", autouse=True, params=HEAD_TWINS)
def head_twin(request):
    yield from swapped(sys.modules[__name__], "parse_head", request.param)


POST = (
    b"POST /v3/clusters/c1/topics/orders/records?async=1 HTTP/1.1\r\n"
    b"Host: localhost:8082\r\n"
    b"User-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 123\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)


def parse(data: bytes, limits: HttpLimits = LIMITS) -> tuple[RequestHead, int] | None:
    buf = bytearray(data)
    return parse_head(buf, 0, len(buf), limits)


def summary(head: RequestHead) -> tuple:
    return (
        head.method,
        head.target,
        head.path,
        head.query,
        head.version,
        head.headers,
        head.content_length,
        head.chunked,
        head.keep_alive,
        head.expect_continue,
        head.content_type,
    )


def request(*fields: str, line: str = "GET / HTTP/1.1", host: bool = True) -> bytes:
    lines = [line] + (["Host: h"] if host else []) + list(fields)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- the twin the gateway uses ------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [(None, "compiled"), ("python", "python")])
def test_head_parser_is_chosen_by_the_environment(env, expected):
    code = (
        "from gateway import _speedups\n"
        "from gateway.http import parser\n"
        "twin = {_speedups.parse_head: 'compiled', parser.python_parse_head: 'python'}[parser.parse_head]\n"
        "print(parser.HEAD_PARSER, twin)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != HEAD_PARSER_ENV}
    if env is not None:
        environ[HEAD_PARSER_ENV] = env
    out = subprocess.run([sys.executable, "-c", code], env=environ, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == [expected, expected]


def test_an_unknown_head_parser_is_refused():
    assert head_parser("python") is python_parse_head
    with pytest.raises(ValueError, match="GATEWAY_HEAD_PARSER='pure': expected 'compiled' or 'python'"):
        head_parser("pure")
    # The variable is known to the configuration: no "not a setting" warning at start.
    assert unknown_env({HEAD_PARSER_ENV: "python"}) == []
    assert unknown_env({"GATEWAY_HEAD_PARSR": "python"})[0].startswith("GATEWAY_HEAD_PARSR is not a setting")


# --- limits and error classes --------------------------------------------------------------


def test_limits_defaults_and_slots():
    limits = HttpLimits()
    assert (
        limits.max_request_line,
        limits.max_header_bytes,
        limits.max_headers,
        limits.max_chunk_line,
        limits.max_trailer_bytes,
    ) == (8192, 16384, 100, 4096, 16384)
    assert not hasattr(limits, "__dict__")
    assert "max_headers=100" in repr(limits)
    with pytest.raises(ValueError):
        HttpLimits(max_headers=-1)
    with pytest.raises(ValueError):
        HttpLimits(max_request_line=1.5)  # type: ignore[arg-type]


def test_version_not_supported_class():
    assert issubclass(HttpVersionNotSupported, errors.PeerError)
    exc = HttpVersionNotSupported("x")
    assert (exc.status, exc.error_code) == (505, 505)


# --- valid heads ---------------------------------------------------------------------------


def test_typical_post():
    head, end = parse(POST + b"BODY")
    assert end == len(POST)
    assert summary(head) == (
        "POST",
        "/v3/clusters/c1/topics/orders/records?async=1",
        "/v3/clusters/c1/topics/orders/records",
        "async=1",
        11,
        [
            ("host", "localhost:8082"),
            ("user-agent", "curl/8.5.0"),
            ("accept", "*/*"),
            ("content-type", "application/json"),
            ("content-length", "123"),
            ("connection", "keep-alive"),
        ],
        123,
        False,
        True,
        False,
        "application/json",
    )
    assert head.header("accept") == "*/*"
    assert head.header("expect") is None
    assert not hasattr(head, "__dict__")
    assert "POST" in repr(head)


def test_parses_in_place_from_start_and_ignores_bytes_past_end():
    data = b"junk" + POST + b"GET / HTTP/1.1\r\n"
    buf = bytearray(data)
    head, end = parse_head(buf, 4, 4 + len(POST), LIMITS)
    assert end == 4 + len(POST)
    assert head.content_length == 123
    # The head is incomplete if `end` cuts it, whatever lies beyond `end` in the buffer.
    assert parse_head(buf, 4, 4 + len(POST) - 1, LIMITS) is None


def test_header_names_lowered_values_stripped_in_order_and_latin1():
    data = (
        b"GET /a HTTP/1.1\r\nHOST:h\r\nX-Multi:  a \t\r\nx-multi:\tb\r\n"
        b"X-Empty:\r\nX-Latin: caf\xe9 \x80\xff\r\nX-Tab: a\tb\r\n\r\n"
    )
    head, _ = parse(data)
    assert head.headers == [
        ("host", "h"),
        ("x-multi", "a"),
        ("x-multi", "b"),
        ("x-empty", ""),
        ("x-latin", "caf\xe9 \x80\xff"),
        ("x-tab", "a\tb"),
    ]
    assert head.header("x-multi") == "a"
    assert head.query == ""
    assert head.path == head.target == "/a"


def test_token_field_names_and_methods():
    head, _ = parse(request("!#$%&'*+-.^_`|~09azAZ: v", line="M-SEARCH.x /p HTTP/1.1"))
    assert head.method == "M-SEARCH.x"
    assert head.headers[-1] == ("!#$%&'*+-.^_`|~09azaz", "v")


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/", "/", ""),
        ("/a/b?", "/a/b", ""),
        ("/a?b=1&c=%20?d", "/a", "b=1&c=%20?d"),
        ("/%7E/x", "/%7E/x", ""),
        ("//double", "//double", ""),
    ],
)
def test_path_and_query(target, path, query):
    head, _ = parse(request(line=f"GET {target} HTTP/1.1"))
    assert (head.target, head.path, head.query) == (target, path, query)


@pytest.mark.parametrize(
    ("target", "origin"),
    [
        ("http://example.com/v3/x?y=1", "/v3/x?y=1"),
        ("HTTPS://example.com:8443/p", "/p"),
        ("http://example.com", "/"),
        ("http://example.com?q", "/?q"),
    ],
)
def test_absolute_form_is_reduced_to_its_path(target, origin):
    head, _ = parse(request(line=f"GET {target} HTTP/1.1"))
    assert head.target == origin
    assert head.path + ("?" + head.query if "?" in origin else "") == origin


def test_asterisk_form_for_options():
    head, _ = parse(request(line="OPTIONS * HTTP/1.1"))
    assert (head.target, head.path, head.query) == ("*", "*", "")


def test_http10_without_host():
    head, end = parse(b"GET / HTTP/1.0\r\n\r\n")
    assert (head.version, head.keep_alive, head.headers, end) == (10, False, [], 18)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\nHost: h\nContent-Length: 3\n\n",
        b"GET / HTTP/1.1\r\nHost: h\nContent-Length: 3\r\n\n",
        b"GET / HTTP/1.1\nHost: h\r\nContent-Length: 3\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
    ],
    ids=["lf", "mixed-lf-end", "mixed-crlf-end", "crlf"],
)
def test_bare_lf_line_endings(data):
    head, end = parse(data + b"abc")
    assert end == len(data)
    assert head.headers == [("host", "h"), ("content-length", "3")]
    assert head.content_length == 3


def test_bare_lf_blank_line_before_a_later_crlf_blank_line():
    data = b"GET / HTTP/1.1\nHost: h\n\nPOST / HTTP/1.1\r\nHost: h\r\n\r\n"
    head, end = parse(data)
    assert (head.method, end) == ("GET", data.index(b"POST"))


@pytest.mark.parametrize(
    "after",
    [b"\r\n", b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", b"\r\n\r\n", b"\r\nxyz"],
    ids=["crlf", "next-request", "two-crlf", "body"],
)
@pytest.mark.parametrize("fields", [b"Host: h\n", b"Host: h\nContent-Length: 2\n"], ids=["host", "fields"])
def test_bare_lf_blank_line_right_before_a_crlf(after, fields):
    """Found by tests/fuzz: a head ending in LF LF whose next bytes start with CRLF (a body,
    or the next request's leading empty line) was refused with 400 "field line without a
    colon": the search for LF CR LF matched across the end of the head."""
    data = b"POST / HTTP/1.1\n" + fields + b"\n"
    head, end = parse(data + after)
    assert end == len(data)
    assert head.method == "POST" and len(head.headers) == fields.count(b"\n")
    if after.startswith(b"\r\nGET"):
        head2, end2 = parse_head(data + after, end, len(data + after), LIMITS)
        assert (head2.method, end2) == ("GET", len(data + after))


@pytest.mark.parametrize("n", range(MAX_EMPTY_LINES + 1))
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_empty_lines_before_request_line_are_ignored(n, eol):
    data = eol * n + POST
    head, end = parse(data)
    assert end == len(data)
    assert head.method == "POST"


def test_only_empty_lines_is_incomplete():
    for data in (b"", b"\r", b"\r\n", b"\n\n", b"\r\n\r"):
        assert parse(data) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("42", 42), ("007", 7), ("5, 5", 5), ("5,5 , 05", 5), ("9" * 18, 10**18 - 1)],
)
def test_content_length_values(value, expected):
    head, _ = parse(request(f"Content-Length: {value}", line="POST / HTTP/1.1"))
    assert head.content_length == expected


def test_repeated_equal_content_length_headers():
    head, _ = parse(request("Content-Length: 7", "Content-Length: 7"))
    assert head.content_length == 7


@pytest.mark.parametrize(
    "fields",
    [
        ["Transfer-Encoding: chunked"],
        ["Transfer-Encoding: CHUNKED"],
        ["Transfer-Encoding: Chunked "],
        ["Transfer-Encoding: , chunked"],
        ["transfer-encoding: chunked", "X-A: b"],
    ],
)
def test_chunked(fields):
    head, _ = parse(request(*fields, line="POST / HTTP/1.1"))
    assert head.chunked is True
    assert head.content_length is None


@pytest.mark.parametrize("value", ["100-continue", "100-Continue", "100-CONTINUE", " 100-continue"])
def test_expect_continue(value):
    head, _ = parse(request(f"Expect: {value}", "Content-Length: 5", line="POST / HTTP/1.1"))
    assert head.expect_continue is True


def test_content_type_is_first_raw_value():
    head, _ = parse(request("Content-Type:  application/vnd.kafka.json.v2+json; charset=utf-8 "))
    assert head.content_type == "application/vnd.kafka.json.v2+json; charset=utf-8"
    head, _ = parse(request("Content-Type: a/b", "Content-Type: c/d"))
    assert head.content_type == "a/b"
    head, _ = parse(request())
    assert head.content_type is None


@pytest.mark.parametrize(
    ("fields", "version", "keep_alive"),
    [
        (["Connection: upgrade", "Connection: close"], 11, False),
        (["Connection: upgrade", "Connection: x"], 11, True),
        (["Connection: te", "Connection: keep-alive"], 10, True),
        (["Connection: te", "Connection: keep-alive"], 11, True),
        (["Connection: keep-alive", "Connection: close"], 10, False),
        (["Connection:"], 10, False),
    ],
)
def test_connection_in_several_fields(fields, version, keep_alive):
    head, _ = parse(request(*fields, line=f"GET / HTTP/1.{version % 10}"))
    assert head.keep_alive is keep_alive


@pytest.mark.parametrize(
    ("fields", "expect_continue"),
    [
        (["Expect: 100-continue", "Expect: 100-continue"], True),
        (["Expect:"], False),
        (["Expect: , 100-continue ,"], True),
    ],
)
def test_expect_in_several_fields(fields, expect_continue):
    head, _ = parse(request(*fields))
    assert head.expect_continue is expect_continue


def test_expect_other_in_a_second_field():
    with pytest.raises(errors.ExpectationFailed):
        parse(request("Expect: 100-continue", "Expect: nope"))


CONNECTION = [
    None,
    "close",
    "keep-alive",
    "Keep-Alive",
    "close, keep-alive",
    "Upgrade, CLOSE",
    "upgrade,keep-alive",
    "upgrade",
]
EXPECT = [None, "100-continue", "100-Continue"]
FRAMING = [None, "Content-Length: 42", "Transfer-Encoding: chunked", "Transfer-Encoding: Chunked"]


@pytest.mark.parametrize(
    ("version", "connection", "expect", "framing"),
    list(itertools.product([10, 11], CONNECTION, EXPECT, FRAMING)),
)
def test_keep_alive_version_expect_framing_matrix(version, connection, expect, framing):
    fields = []
    if connection is not None:
        fields.append(f"Connection: {connection}")
    if expect is not None:
        fields.append(f"Expect: {expect}")
    if framing is not None:
        fields.append(framing)
    data = request(*fields, line=f"POST /x HTTP/1.{version % 10}")
    te = framing is not None and framing.startswith("Transfer")
    if te and version == 10:
        with pytest.raises(errors.BadRequest, match="HTTP/1.0"):
            parse(data)
        return
    head, end = parse(data)
    assert end == len(data)
    tokens = {t.strip().lower() for t in (connection or "").split(",")}
    assert head.version == version
    assert head.keep_alive is ("close" not in tokens and (version == 11 or "keep-alive" in tokens))
    # RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
    assert head.expect_continue is (expect is not None and version == 11)
    assert head.chunked is te
    assert head.content_length == (42 if framing and framing.startswith("Content") else None)


# --- malformed heads -----------------------------------------------------------------------

BAD = errors.BadRequest
R = request  # brevity in the table

MALFORMED = [
    # request line
    ("double-space", R(line="GET  / HTTP/1.1"), BAD, "single spaces"),
    ("trailing-space", R(line="GET / HTTP/1.1 "), BAD, "single spaces"),
    ("leading-space", R(line=" GET / HTTP/1.1"), BAD, "single spaces"),
    ("two-parts", R(line="GET /"), BAD, "single spaces"),
    ("four-parts", R(line="GET / x HTTP/1.1"), BAD, "single spaces"),
    ("tab-separator", R(line="GET\t/ HTTP/1.1"), BAD, "single spaces"),
    ("method-not-token", R(line="G(T / HTTP/1.1"), BAD, "method"),
    ("method-non-ascii", R(line="G\xc9T / HTTP/1.1"), BAD, "method"),
    ("target-no-slash", R(line="GET foo HTTP/1.1"), BAD, "start with '/'"),
    ("target-authority-form", R(line="CONNECT h:443 HTTP/1.1"), BAD, "start with '/'"),
    ("target-asterisk-get", R(line="GET * HTTP/1.1"), BAD, "OPTIONS"),
    ("target-tab", R(line="GET /a\tb HTTP/1.1"), BAD, "request target"),
    ("target-non-ascii", R(line="GET /caf\xe9 HTTP/1.1"), BAD, "request target"),
    ("target-ctl", R(line="GET /a\x01 HTTP/1.1"), BAD, "control character 0x01 in the request"),
    ("target-del", R(line="GET /a\x7f HTTP/1.1"), BAD, "control character 0x7f"),
    ("target-nul", R(line="GET /\x00 HTTP/1.1"), BAD, "control character 0x00"),
    ("absolute-empty-authority", R(line="GET http:///p HTTP/1.1"), BAD, "absolute-form"),
    ("absolute-userinfo", R(line="GET http://u@h/p HTTP/1.1"), BAD, "absolute-form"),
    ("absolute-other-scheme", R(line="GET ftp://h/p HTTP/1.1"), BAD, "start with '/'"),
    ("bare-cr-in-request-line", b"GET / HTTP/1.1\rHost: h\r\n\r\n", BAD, "bare CR"),
    ("cr-cr-lf", b"GET / HTTP/1.1\r\r\nHost: h\r\n\r\n", BAD, "bare CR in the request line"),
    ("bare-cr-first", b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", BAD, "bare CR"),
    # version
    ("version-lower", R(line="GET / http/1.1"), BAD, "version"),
    ("version-no-minor", R(line="GET / HTTP/1"), BAD, "version"),
    ("version-two-digits", R(line="GET / HTTP/11.0"), BAD, "version"),
    ("version-extra", R(line="GET / HTTP/1.1.1"), BAD, "version"),
    ("version-junk", R(line="GET / HTTPS/1.1"), BAD, "version"),
    ("version-2", R(line="GET / HTTP/2.0"), HttpVersionNotSupported, "HTTP/2.0"),
    ("version-1.2", R(line="GET / HTTP/1.2"), HttpVersionNotSupported, "not supported"),
    ("version-0.9", R(line="GET / HTTP/0.9"), HttpVersionNotSupported, "not supported"),
    ("version-3", R(line="GET / HTTP/3.0"), HttpVersionNotSupported, "not supported"),
    # field lines
    ("no-colon", R("X-Thing value"), BAD, "without a colon"),
    ("no-colon-cached-name", R("Host"), BAD, "without a colon"),
    ("empty-name", R(": value"), BAD, "empty field name"),
    ("space-before-colon", R("X-A : v"), BAD, "between field name and colon"),
    ("tab-before-colon", R("Content-Length\t: 5"), BAD, "between field name and colon"),
    ("obs-fold-space", R("X-A: a", " continued"), BAD, "obsolete line folding"),
    ("obs-fold-tab", R("X-A: a", "\tcontinued"), BAD, "obsolete line folding"),
    ("whitespace-line", R("X-A: a", "  "), BAD, "obsolete line folding"),
    ("name-not-token", R("X[a]: v"), BAD, "not a token"),
    ("name-with-space", R("X A: v"), BAD, "not a token"),
    ("name-non-ascii", R("X-\xe9: v"), BAD, "not a token"),
    ("value-ctl", R("X-A: a\x01b"), BAD, "control character 0x01 in the header section"),
    ("value-nul", R("X-A: \x00"), BAD, "control character 0x00"),
    ("value-del", R("X-A: a\x7f"), BAD, "control character 0x7f"),
    ("value-esc", R("X-A: \x1b[0m"), BAD, "control character 0x1b"),
    ("value-bare-cr", R("X-A: a\rb"), BAD, "bare CR in the header section"),
    ("value-cr-cr-lf", b"GET / HTTP/1.1\r\nHost: h\r\r\n\r\n", BAD, "bare CR"),
    # A bare CR and a bare LF apart in a head that ends in CRLF CRLF: neither ends a line nor
    # gets into a value (the Python fast path once took "a\rb\nc" as the value).
    ("value-bare-cr-then-bare-lf", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\nc\r\n\r\n", BAD,
     "bare CR in the header section"),
    ("field-smuggled-after-bare-cr", b"GET / HTTP/1.1\r\nHost: h\rX-B: 1\n\r\n\r\n", BAD,
     "bare CR in the header section"),
    ("vertical-tab", R("X-A: a\x0bb"), BAD, "control character 0x0b"),
    ("form-feed-lf-head", b"GET / HTTP/1.1\nHost: h\nX: \x0c\n\n", BAD, "0x0c"),
    # Host (RFC 9112 §3.2)
    ("no-host", R(host=False), BAD, "without a Host"),
    ("two-hosts", R("Host: other"), BAD, "more than one Host"),
    ("two-hosts-1.0", R("Host: other", line="GET / HTTP/1.0"), BAD, "more than one Host"),
    # Content-Length
    ("cl-alpha", R("Content-Length: abc"), BAD, "Content-Length"),
    ("cl-empty", R("Content-Length:"), BAD, "Content-Length"),
    ("cl-negative", R("Content-Length: -1"), BAD, "Content-Length"),
    ("cl-plus", R("Content-Length: +1"), BAD, "Content-Length"),
    ("cl-hex", R("Content-Length: 0x10"), BAD, "Content-Length"),
    ("cl-decimal-point", R("Content-Length: 1.0"), BAD, "Content-Length"),
    ("cl-inner-space", R("Content-Length: 1 2"), BAD, "Content-Length"),
    ("cl-superscript", R("Content-Length: \xb2"), BAD, "Content-Length"),
    ("cl-19-digits", R("Content-Length: " + "1" * 19), BAD, "18 digits"),
    ("cl-empty-element", R("Content-Length: 5,,5"), BAD, "Content-Length"),
    ("cl-list-differs", R("Content-Length: 5, 6"), BAD, "conflicting"),
    ("cl-headers-differ", R("Content-Length: 5", "Content-Length: 6"), BAD, "conflicting"),
    # Transfer-Encoding (RFC 9112 §6.1, §6.3)
    ("te-gzip", R("Transfer-Encoding: gzip"), errors.NotImplementedByGateway, "gzip"),
    ("te-identity", R("Transfer-Encoding: identity"), errors.NotImplementedByGateway, "identity"),
    (
        "te-gzip-chunked",
        R("Transfer-Encoding: gzip, chunked"),
        errors.NotImplementedByGateway,
        "gzip",
    ),
    (
        "te-two-headers",
        R("Transfer-Encoding: gzip", "Transfer-Encoding: chunked"),
        errors.NotImplementedByGateway,
        "gzip",
    ),
    ("te-chunked-gzip", R("Transfer-Encoding: chunked, gzip"), BAD, "not the final"),
    ("te-chunked-twice", R("Transfer-Encoding: chunked, chunked"), BAD, "not the final"),
    (
        "te-chunked-twice-headers",
        R("Transfer-Encoding: chunked", "Transfer-Encoding: chunked"),
        BAD,
        "not the final",
    ),
    ("te-chunked-param", R("Transfer-Encoding: chunked;x=1"), BAD, "no parameters"),
    ("te-empty", R("Transfer-Encoding:"), BAD, "empty"),
    ("te-commas", R("Transfer-Encoding: , ,"), BAD, "empty"),
    ("te-not-token", R("Transfer-Encoding: chu nked"), BAD, "malformed transfer coding"),
    ("te-and-cl", R("Transfer-Encoding: chunked", "Content-Length: 5"), BAD, "both"),
    ("cl-and-te", R("Content-Length: 5", "Transfer-Encoding: chunked"), BAD, "both"),
    ("te-and-cl-gzip", R("Content-Length: 5", "Transfer-Encoding: gzip"), BAD, "both"),
    ("te-http10", R("Transfer-Encoding: chunked", line="POST / HTTP/1.0"), BAD, "HTTP/1.0"),
    # Expect
    ("expect-other", R("Expect: something"), errors.ExpectationFailed, "something"),
    ("expect-mixed", R("Expect: 100-continue, foo"), errors.ExpectationFailed, "foo"),
    ("expect-102", R("Expect: 102-processing"), errors.ExpectationFailed, "102"),
    ("expect-other-1.0", R("Expect: x", line="GET / HTTP/1.0"), errors.ExpectationFailed, "x"),
    # robustness
    ("too-many-empty-lines", b"\r\n" * (MAX_EMPTY_LINES + 1) + POST, BAD, "empty lines"),
]


@pytest.mark.parametrize(
    ("data", "exc", "match"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_heads(data, exc, match):
    with pytest.raises(exc, match=match) as info:
        parse(data)
    assert type(info.value) is exc
    assert (
        info.value.status
        == {
            errors.BadRequest: 400,
            errors.NotImplementedByGateway: 501,
            errors.ExpectationFailed: 417,
            HttpVersionNotSupported: 505,
        }[exc]
    )
    assert info.value.status == info.value.error_code
    # The same verdict whether the head came in one piece or byte by byte.
    buf = bytearray()
    with pytest.raises(exc, match=match):
        for b in data:
            buf.append(b)
            parse_head(buf, 0, len(buf), LIMITS)


def test_error_messages_carry_byte_offsets():
    with pytest.raises(errors.BadRequest, match=r"at byte 30\)"):
        parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: \x01\r\n\r\n")
    with pytest.raises(errors.BadRequest, match=r"at byte 25\)"):
        parse(b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n")
    with pytest.raises(errors.BadRequest, match=r"at byte 4\)"):
        parse(b"GET foo HTTP/1.1\r\nHost: h\r\n\r\n")


# --- limits --------------------------------------------------------------------------------


def rl_of(n: int) -> bytes:
    """A request line of exactly n bytes (line ending excluded)."""
    base = len("GET / HTTP/1.1")
    return b"GET /" + b"a" * (n - base) + b" HTTP/1.1"


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize("limit", [8192, 100])
def test_request_line_limit(limit, eol):
    limits = HttpLimits(max_request_line=limit)
    ok = rl_of(limit) + eol + b"Host: h" + eol + eol
    head, end = parse(ok, limits)
    assert end == len(ok) and len(head.target) == limit - 13
    over = rl_of(limit + 1) + eol + b"Host: h" + eol + eol
    with pytest.raises(errors.UriTooLong) as info:
        parse(over, limits)
    assert info.value.status == 414


@pytest.mark.parametrize("limit", [8192, 100])
def test_request_line_limit_while_incomplete(limit):
    limits = HttpLimits(max_request_line=limit)
    line = rl_of(limit)
    # Up to max + CR without an LF might still be a valid line: wait for more.
    assert parse(line, limits) is None
    assert parse(line + b"\r", limits) is None
    # max + 2 bytes without an LF can only be a longer line.
    with pytest.raises(errors.UriTooLong):
        parse(line + b"aa", limits)
    with pytest.raises(errors.UriTooLong):
        parse(line + b"\ra", limits)
    # A long run of garbage without any LF is refused as soon as it passes the limit.
    with pytest.raises(errors.UriTooLong):
        parse(b"\x16\x03\x01" + b"\x00" * (limit + 1), limits)


def test_header_bytes_limit_below_request_line_limit_while_incomplete():
    limits = HttpLimits(max_request_line=100, max_header_bytes=50)
    assert parse(b"GET /" + b"a" * 44, limits) is None
    with pytest.raises(errors.HeadersTooLarge):
        parse(b"GET /" + b"a" * 45, limits)


def head_of(n: int, eol: bytes = b"\r\n") -> bytes:
    """A complete head of exactly n bytes, terminating empty line included."""
    fixed = b"GET / HTTP/1.1" + eol + b"Host: h" + eol + b"X: " + eol + eol
    data = b"GET / HTTP/1.1" + eol + b"Host: h" + eol + b"X: " + b"v" * (n - len(fixed)) + eol + eol
    assert len(data) == n
    return data


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize("limit", [16384, 64])
def test_header_bytes_limit(limit, eol):
    limits = HttpLimits(max_header_bytes=limit)
    ok = head_of(limit, eol)
    head, end = parse(ok + b"next", limits)
    assert end == limit
    with pytest.raises(errors.HeadersTooLarge) as info:
        parse(head_of(limit + 1, eol), limits)
    assert info.value.status == 431


@pytest.mark.parametrize("limit", [16384, 64])
def test_header_bytes_limit_while_incomplete(limit):
    limits = HttpLimits(max_header_bytes=limit)
    ok = head_of(limit)
    assert parse(ok[:-1], limits) is None  # exactly at the limit: keep waiting
    over = head_of(limit + 1)
    for cut in range(len(over) - 1, len(over)):
        with pytest.raises(errors.HeadersTooLarge):
            parse(over[:cut], limits)  # max bytes seen and no end of head in them
    with pytest.raises(errors.HeadersTooLarge):
        parse(b"GET / HTTP/1.1\r\nX: " + b"v" * limit, limits)
    # The incomplete check is on bytes seen, not on the future: just under waits.
    assert parse(over[: limit - 1], limits) is None


@pytest.mark.parametrize("limit", [100, 3, 0])
def test_max_headers(limit):
    limits = HttpLimits(max_headers=limit)
    fields = [f"X-{i}: v" for i in range(limit - 1)]
    if limit:
        head, _ = parse(request(*fields), limits)  # Host + limit - 1 = limit fields
        assert len(head.headers) == limit
    else:
        head, _ = parse(b"GET / HTTP/1.0\r\n\r\n", limits)
        assert head.headers == []
    with pytest.raises(errors.HeadersTooLarge, match="header fields"):
        parse(request(*fields, "X-last: v"), limits)


def test_max_headers_while_incomplete():
    limits = HttpLimits(max_headers=3)
    data = request("X-1: v", "X-2: v", "X-3: v")
    # Four complete field lines and no end of head yet: already one too many.
    cut = data.index(b"X-3: v\r\n") + len(b"X-3: v\r\n")
    with pytest.raises(errors.HeadersTooLarge):
        parse(data[:cut], limits)
    # Three complete field lines: might still be a valid head.
    assert parse(data[: data.index(b"X-3")], limits) is None
    assert parse(data[: cut - 1], limits) is None


# --- incremental feeding of heads ----------------------------------------------------------

VALID_HEADS = [
    POST,
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /x?y HTTP/1.1\nHost: h\nConnection: close\n\n",
    b"\r\n\nPOST / HTTP/1.1\r\nHost: h\nTransfer-Encoding: chunked\r\nExpect: 100-continue\n\r\n",
    request("X-Long: " + "v" * 300, "Content-Length: 0"),
]


@pytest.mark.parametrize("data", VALID_HEADS, ids=range(len(VALID_HEADS)))
def test_head_every_prefix_is_incomplete_then_same_result(data):
    whole_head, whole_end = parse(data)
    tail = b"GET / HTTP/1.1\r\nHost: next\r\n\r\n"
    for cut in range(len(data)):
        # The buffer holds earlier bytes before `start` and (unseen) bytes after `end`.
        buf = bytearray(b"prev" + data + tail)
        assert parse_head(buf, 4, 4 + cut, LIMITS) is None, cut
    buf = bytearray(b"prev" + data + tail)
    head, end = parse_head(buf, 4, len(buf), LIMITS)
    assert end == 4 + whole_end == 4 + len(data)
    assert summary(head) == summary(whole_head)


@pytest.mark.parametrize("seed", SEEDS)
def test_head_random_splits(seed):
    rng = random.Random(seed)
    data = VALID_HEADS[seed % len(VALID_HEADS)]
    expected = summary(parse(data)[0])
    cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(1, 6), len(data) - 1)))
    buf = bytearray()
    result = None
    for a, b in zip([0] + cuts, cuts + [len(data)], strict=True):
        assert result is None, f"seed={seed}: complete before the last piece"
        buf += data[a:b]
        result = parse_head(buf, 0, len(buf), LIMITS)
    assert result is not None, f"seed={seed} cuts={cuts}"
    assert summary(result[0]) == expected, f"seed={seed} cuts={cuts}"


def test_pipelined_heads_in_one_buffer():
    buf = bytearray(POST + b"x" * 123 + POST + b"y" * 123)
    head1, end1 = parse_head(buf, 0, len(buf), LIMITS)
    start2 = end1 + head1.content_length
    head2, end2 = parse_head(buf, start2, len(buf), LIMITS)
    assert summary(head1) == summary(head2)
    assert end2 == len(buf) - 123


# --- chunked bodies ------------------------------------------------------------------------


def run_chunked(
    pieces: list[bytes], limits: HttpLimits = LIMITS
) -> tuple[bytes, bytes, ChunkedDecoder]:
    """Drive a decoder like the connection does: append each piece to the read buffer, feed,
    take data windows, drop consumed bytes. Returns (body data, bytes left after the body,
    decoder)."""
    dec = ChunkedDecoder(limits)
    buf = bytearray()
    pos = 0
    out = bytearray()
    for piece in pieces:
        buf += piece
        end = len(buf)
        while pos < end and not dec.done:
            new_pos, start, stop = dec.feed(buf, pos, end)
            assert pos <= new_pos <= end
            if stop > start:
                assert pos <= start and new_pos == stop
                out += buf[start:stop]
            else:
                assert new_pos == end or dec.done
            pos = new_pos
        if not dec.done:
            del buf[:pos]  # compact like the protocol does
            pos = 0
    assert dec.bytes_received == len(out)
    return bytes(out), bytes(buf[pos:]), dec


NEXT = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
BODIES = [
    # (id, wire bytes, body data)
    ("simple", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
    ("one-byte-chunks", b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", b"abc"),
    ("empty-body", b"0\r\n\r\n", b""),
    (
        "upper-hex",
        b"A\r\n0123456789\r\n1F\r\n" + b"z" * 31 + b"\r\n0\r\n\r\n",
        b"0123456789" + b"z" * 31,
    ),
    ("mixed-hex-leading-zeros", b"00aB\r\n" + b"q" * 0xAB + b"\r\n000\r\n\r\n", b"q" * 0xAB),
    ("extensions", b"5;a=b;c\r\nhello\r\n0;last=1\r\n\r\n", b"hello"),
    ("ext-bws", b"5 ; a = b ;\tc\r\nhello\r\n0 \t;x\r\n\r\n", b"hello"),
    ("ext-quoted", b'5;a="x;y=\\"z\\" w";b\r\nhello\r\n0;q="\t\xe9"\r\n\r\n', b"hello"),
    ("trailers", b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:  two words\r\n\r\n", b"abc"),
    ("bare-lf", b"3\nabc\n0\nX-T: 1\n\n", b"abc"),
    ("mixed-eol", b"3\r\nabc\n2\nde\r\n0\r\nX: y\n\r\n", b"abcde"),
    ("binary-data-with-crlf", b"7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n", b"\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize(("wire", "data"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_chunked_whole(wire, data):
    out, rest, dec = run_chunked([wire + NEXT])
    assert (out, rest, dec.done) == (data, NEXT, True)
    assert dec.bytes_received == len(data)


@pytest.mark.parametrize(("wire", "data"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES])
def test_chunked_every_split_point_and_byte_by_byte(wire, data):
    full = wire + NEXT
    for cut in range(len(full) + 1):
        out, rest, dec = run_chunked([full[:cut], full[cut:]])
        assert (out, rest, dec.done) == (data, NEXT, True), cut
    for cut in range(len(wire)):
        out, rest, dec = run_chunked([wire[:cut]])
        assert not dec.done and data.startswith(out), cut
    out, rest, dec = run_chunked([bytes([b]) for b in full])
    assert (out, rest, dec.done) == (data, NEXT, True)


@pytest.mark.parametrize("seed", SEEDS)
def test_chunked_random_bodies_random_splits(seed):
    rng = random.Random(seed)
    wire = bytearray()
    data = bytearray()
    for _ in range(rng.randint(0, 12)):
        size = rng.choice([1, 2, 15, 16, 255, 256, 4096, rng.randint(1, 70000)])
        chunk = rng.randbytes(size)
        digits = f"{size:x}"
        digits = rng.choice([digits, digits.upper(), "0" * rng.randint(1, 3) + digits])
        ext = rng.choice(["", ";a", ';name="v;al"', " ;x=1 ; y"])
        eol = rng.choice([b"\r\n", b"\n"])
        wire += f"{digits}{ext}".encode() + eol + chunk + rng.choice([b"\r\n", b"\n"])
        data += chunk
    wire += b"0" + rng.choice([b"\r\n", b"\n"])
    for i in range(rng.randint(0, 3)):
        wire += f"X-T{i}: {'v' * rng.randint(0, 40)}".encode() + rng.choice([b"\r\n", b"\n"])
    wire += rng.choice([b"\r\n", b"\n"])
    full = bytes(wire) + NEXT
    n = rng.randint(1, 40)
    cuts = sorted(rng.sample(range(1, len(full)), min(n, len(full) - 1)))
    pieces = [full[a:b] for a, b in zip([0] + cuts, cuts + [len(full)], strict=True)]
    out, rest, dec = run_chunked(pieces)
    assert dec.done, f"seed={seed}"
    assert out == data, f"seed={seed} cuts={cuts}"
    assert rest == NEXT, f"seed={seed} cuts={cuts}"


def test_chunked_returns_whole_windows_without_copying():
    payload = b"x" * 16384
    buf = bytearray(b"4000\r\n" + payload + b"\r\n0\r\n\r\n")
    dec = ChunkedDecoder(LIMITS)
    pos, start, stop = dec.feed(buf, 0, len(buf))
    assert (pos, start, stop) == (6 + 16384, 6, 6 + 16384)  # one window over the buffer
    assert dec.bytes_received == 16384 and not dec.done
    pos, start, stop = dec.feed(buf, pos, len(buf))
    assert (pos, start, stop, dec.done) == (len(buf), len(buf), len(buf), True)


def test_chunked_partial_data_windows():
    buf = bytearray(b"a\r\n0123456789\r\n0\r\n\r\n")
    dec = ChunkedDecoder(LIMITS)
    assert dec.feed(buf, 0, 3) == (3, 3, 3)
    assert dec.feed(buf, 3, 7) == (7, 3, 7)
    assert dec.feed(buf, 7, 7) == (7, 7, 7)
    assert dec.feed(buf, 7, 13) == (13, 7, 13)
    assert dec.bytes_received == 10
    assert dec.feed(buf, 13, len(buf)) == (len(buf),) * 3
    assert dec.done


def test_chunked_feed_after_done_consumes_nothing():
    buf = bytearray(b"0\r\n\r\n" + NEXT)
    dec = ChunkedDecoder(LIMITS)
    assert dec.feed(buf, 0, len(buf)) == (5, 5, 5)
    assert dec.done
    assert dec.feed(buf, 5, len(buf)) == (5, 5, 5)


def test_chunked_sixteen_hex_digits():
    dec = ChunkedDecoder(LIMITS)
    buf = bytearray(b"FFFFFFFFFFFFFFFF\r\nabc")
    assert dec.feed(buf, 0, len(buf)) == (len(buf), 18, len(buf))
    assert not dec.done
    with pytest.raises(errors.BadRequest, match="hex digits"):
        run_chunked([b"1" + b"0" * 16 + b"\r\n"])


BAD_BODIES = [
    ("empty-size", b"\r\nabc\r\n0\r\n\r\n", "hex digits"),
    ("not-hex", b"g\r\n", "hex digits"),
    ("0x-prefix", b"0x5\r\nhello\r\n", "hex digits"),
    ("plus-sign", b"+5\r\nhello\r\n", "hex digits"),
    ("minus-sign", b"-5\r\nhello\r\n", "hex digits"),
    ("underscore", b"1_0\r\n", "hex digits"),
    ("leading-space", b" 5\r\nhello\r\n", "hex digits"),
    ("trailing-space-no-ext", b"5 \r\nhello\r\n", "hex digits"),
    ("bare-cr-in-size", b"5\r\r\nhello\r\n", "hex digits"),
    ("ext-no-name", b"5;\r\nhello\r\n", "extension"),
    ("ext-bad-name", b"5;a b\r\nhello\r\n", "extension"),
    ("ext-bad-value", b"5;a=\r\nhello\r\n", "extension"),
    ("ext-unterminated-quote", b'5;a="x\r\nhello\r\n', "extension"),
    ("ext-ctl", b"5;a=\x01\r\nhello\r\n", "extension"),
    ("data-too-long", b"3\r\nhello\r\n", "not followed by CRLF"),
    ("data-cr-without-lf", b"3\r\nhel\rx", "CR without LF"),
    ("missing-crlf-before-last", b"3\r\nhel0\r\n\r\n", "not followed by CRLF"),
    ("trailer-no-colon", b"0\r\nX-T 1\r\n\r\n", "trailer"),
    ("trailer-empty-name", b"0\r\n: v\r\n\r\n", "trailer"),
    ("trailer-space-before-colon", b"0\r\nX-T : v\r\n\r\n", "trailer"),
    ("trailer-obs-fold", b"0\r\nX-T: v\r\n continued\r\n\r\n", "trailer"),
    ("trailer-ctl", b"0\r\nX-T: \x00\r\n\r\n", "control character"),
    ("trailer-bare-cr", b"0\r\nX-T: a\rb\r\n\r\n", "control character"),
]


@pytest.mark.parametrize(
    ("wire", "match"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_chunked_malformed(wire, match):
    with pytest.raises(errors.BadRequest, match=match) as info:
        run_chunked([wire])
    assert type(info.value) is errors.BadRequest and info.value.status == 400
    assert "at body byte" in info.value.message
    with pytest.raises(errors.BadRequest, match=match):
        run_chunked([bytes([b]) for b in wire])


def test_chunked_error_offset():
    with pytest.raises(errors.BadRequest, match=r"at body byte 8\)"):
        run_chunked([b"3\r\nabc\r\nzz\r\n"])
    with pytest.raises(errors.BadRequest, match=r"at body byte 6\)"):
        run_chunked([b"3\r\nab", b"cde"])


@pytest.mark.parametrize("limit", [4096, 10])
def test_chunk_line_limit(limit):
    limits = HttpLimits(max_chunk_line=limit)
    ok = b"5;x=" + b"a" * (limit - 4)
    assert len(ok) == limit
    for eol in (b"\r\n", b"\n"):
        out, rest, dec = run_chunked([ok + eol + b"hello\r\n0\r\n\r\n"], limits)
        assert (out, dec.done) == (b"hello", True)
        with pytest.raises(errors.BadRequest, match="longer than"):
            run_chunked([ok + b"a" + eol + b"hello\r\n0\r\n\r\n"], limits)
    # While incomplete: limit + CR may still end well; limit + 2 bytes cannot.
    out, rest, dec = run_chunked([ok + b"\r"], limits)
    assert not dec.done
    with pytest.raises(errors.BadRequest, match="longer than"):
        run_chunked([ok + b"aa"], limits)
    with pytest.raises(errors.BadRequest, match="longer than"):
        run_chunked([bytes([b]) for b in ok + b"aa"], limits)


@pytest.mark.parametrize("limit", [16384, 20])
def test_trailer_limit(limit):
    limits = HttpLimits(max_trailer_bytes=limit)
    half = limit // 2
    line1 = b"X-A: " + b"v" * (half - 7) + b"\r\n"
    line2 = b"X-B: " + b"v" * (limit - half - 7) + b"\r\n"
    assert len(line1 + line2) == limit
    body = b"1\r\nz\r\n0\r\n"
    out, rest, dec = run_chunked([body + line1 + line2 + b"\r\n" + NEXT], limits)
    assert (out, rest, dec.done) == (b"z", NEXT, True)
    out, rest, dec = run_chunked([bytes([b]) for b in body + line1 + line2 + b"\n" + NEXT], limits)
    assert (out, rest, dec.done) == (b"z", NEXT, True)
    over = line1 + line2[:-2] + b"v\r\n"
    with pytest.raises(errors.HeadersTooLarge) as info:
        run_chunked([body + over + b"\r\n"], limits)
    assert info.value.status == 431
    with pytest.raises(errors.HeadersTooLarge):
        run_chunked([bytes([b]) for b in body + over + b"\r\n"], limits)
    # While incomplete: a trailer line that cannot end within the budget.
    with pytest.raises(errors.HeadersTooLarge):
        run_chunked([body + b"X-A: " + b"v" * limit], limits)


def test_zero_trailer_budget_still_accepts_no_trailers():
    limits = HttpLimits(max_trailer_bytes=0)
    out, rest, dec = run_chunked([b"1\r\nz\r\n0\r\n\r\n"], limits)
    assert dec.done
    with pytest.raises(errors.HeadersTooLarge):
        run_chunked([b"1\r\nz\r\n0\r\nX:\r\n\r\n"], limits)
