"""The loadgen's client side of HTTP/1.1: the target URL, an incremental response parser, and a
blocking request for the few set-up calls (cluster discovery, consumer instances).

The parser follows RFC 9112: a status line and header section (1xx interim heads skipped), then
a body framed by ``Transfer-Encoding: chunked`` (§7.1), ``Content-Length`` (§6.2), or the
connection's end (§6.3, item 8); no body for 204, 304 and the answer to HEAD.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

MAX_HEAD_BYTES = 64 * 1024  # a response head larger than this is refused
MAX_LINE_BYTES = 4096  # a chunk-size line (with extensions) or trailer line
USER_AGENT = "kafka-gateway-loadgen"


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 as RFC 9112 frames it."""


class UsageError(Exception):
    """The command line asks for something that cannot work (exit status 2)."""


class TargetUnusable(Exception):
    """The target cannot be used at all: refused connection, 401, no such cluster (exit 2)."""


@dataclass
class Target:
    """Where the load goes: the REST proxy's base URL, split, with its credentials and TLS."""

    url: str
    host: str
    port: int
    tls: bool
    prefix: str  # path prefix without a trailing "/", "" for none
    authorization: str | None = None  # the Authorization header's value
    ssl_context: ssl.SSLContext | None = None
    host_header: str = field(init=False)

    def __post_init__(self) -> None:
        default = 443 if self.tls else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if self.port == default else f"{name}:{self.port}"

    @classmethod
    def parse(
        cls, url: str, user: str | None = None, cacert: str | None = None, insecure: bool = False
    ) -> Target:
        """The target of ``url`` (``http[s]://[user:password@]host[:port][/prefix]``);
        ``user`` (``NAME:PASSWORD``) takes precedence over the URL's userinfo."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise UsageError(f"the URL must start with http:// or https://, got {url!r}")
        if not parts.hostname:
            raise UsageError(f"the URL has no host: {url!r}")
        if parts.query or parts.fragment:
            raise UsageError(f"the URL must have no query or fragment: {url!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"bad port in {url!r}: {exc}") from None
        tls = parts.scheme == "https"
        creds = user
        if creds is None and parts.username is not None:
            creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = None
        if creds is not None:
            if ":" not in creds:
                raise UsageError("credentials must be NAME:PASSWORD")
            auth = "Basic " + base64.b64encode(creds.encode()).decode("ascii")
        ctx = None
        if tls:
            try:
                ctx = ssl.create_default_context(cafile=cacert)
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot read --cacert {cacert}: {exc}") from None
            if insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        elif cacert or insecure:
            raise UsageError("--cacert and --insecure need an https:// URL")
        safe = url if parts.username is None else url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1])
        return cls(safe, parts.hostname, port or (443 if tls else 80), tls,
                   parts.path.rstrip("/"), auth, ctx)

    def path(self, *segments: str) -> str:
        """The prefix followed by the percent-encoded ``segments``."""
        return self.prefix + "".join("/" + quote(s, safe="") for s in segments)

    def head(self, method: str, path: str, fields: list[tuple[str, str]]) -> bytes:
        """A request head with Host, User-Agent, Authorization (if any) and ``fields``."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}",
                 f"User-Agent: {USER_AGENT}"]
        if self.authorization:
            lines.append(f"Authorization: {self.authorization}")
        lines += [f"{k}: {v}" for k, v in fields]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class ResponseParser:
    """An incremental parser of HTTP/1.1 responses on one connection, fed any split of bytes.

    It calls ``on_head(status, headers)`` (headers: lower-case name -> value, repeated fields
    joined with ", "), ``on_body(data)`` for each piece of decoded body, and ``on_end()`` when
    the response is complete; the next bytes start the next response. ``head_request`` is set
    by the caller before feeding the answer to a HEAD request.
    """

    def __init__(
        self,
        on_head: Callable[[int, dict[str, str]], None],
        on_body: Callable[[bytes], None],
        on_end: Callable[[], None],
    ) -> None:
        self._on_head = on_head
        self._on_body = on_body
        self._on_end = on_end
        self._buf = b""  # an incomplete line or head
        self._state = _HEAD
        self._left = 0
        self.head_request = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = True

    @property
    def idle(self) -> bool:
        """Between responses: nothing of the next one read yet."""
        return self._state == _HEAD and not self._buf

    def feed(self, data: bytes) -> None:
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        while pos < end:
            st = self._state
            if st == _CHUNK_DATA or st == _LENGTH:
                take = min(self._left, end - pos)
                self._on_body(data[pos : pos + take] if take != end else data)
                pos += take
                self._left -= take
                if not self._left:
                    if st == _LENGTH:
                        self._finish()
                    else:
                        self._state = _CHUNK_CRLF
            elif st == _CHUNK_SIZE:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_LINE_BYTES:
                        raise ProtocolError("a chunk-size line longer than 4 KiB")
                    self._buf = data[pos:]
                    return
                self._chunk_size(data[pos:eol])
                pos = eol + 2
            elif st == _CHUNK_CRLF:
                if end - pos < 2:
                    if data[pos] != 13:  # CR
                        raise ProtocolError("chunk data not followed by CRLF")
                    self._buf = data[pos:]
                    return
                if data[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                pos += 2
                self._state = _CHUNK_SIZE
            elif st == _HEAD:
                eoh = data.find(b"\r\n\r\n", pos)
                if eoh < 0:
                    if end - pos > MAX_HEAD_BYTES:
                        raise ProtocolError("a response head larger than 64 KiB")
                    self._buf = data[pos:]
                    return
                self._head(data[pos:eoh])
                pos = eoh + 4
            elif st == _TRAILER:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_LINE_BYTES:
                        raise ProtocolError("a trailer line longer than 4 KiB")
                    self._buf = data[pos:]
                    return
                empty = eol == pos
                pos = eol + 2
                if empty:  # the blank line that ends the trailer section: the response is whole
                    self._finish()
            elif st == _UNTIL_CLOSE:
                self._on_body(data[pos:] if pos else data)
                pos = end
            else:  # _DONE: a response after one that ended with the connection
                raise ProtocolError("data after a response that ends with the connection")

    def feed_eof(self) -> None:
        """The connection ended: completes a response framed by the close; ProtocolError if a
        response was cut short (an idle connection may end at any time)."""
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            self._on_end()
        elif self._state != _DONE and not self.idle:
            raise ProtocolError("the connection ended in the middle of a response")

    def _head(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (
            len(parts[1]) == 3 and parts[1].isdigit()
        ):
            raise ProtocolError(f"bad status line {lines[0][:200]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise ProtocolError(f"bad header line {line[:200]!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        self.status = status
        self.headers = headers
        conn = headers.get("connection", "").lower()
        self.keep_alive = parts[0] == "HTTP/1.1" and "close" not in conn
        self._on_head(status, headers)
        te = headers.get("transfer-encoding")
        if self.head_request or status in (204, 304):
            self._finish()
        elif te is not None:
            if te.lower().rsplit(",", 1)[-1].strip() != "chunked":
                self._state = _UNTIL_CLOSE
                self.keep_alive = False
            else:
                self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            cl = headers["content-length"]
            if not cl.isdigit():
                raise ProtocolError(f"bad Content-Length {cl[:40]!r}")
            self._left = int(cl)
            if self._left:
                self._state = _LENGTH
            else:
                self._finish()
        else:
            self._state = _UNTIL_CLOSE
            self.keep_alive = False

    def _chunk_size(self, line: bytes) -> None:
        text = line.split(b";", 1)[0].strip()
        if not text or len(text) > 16 or text.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError(f"bad chunk-size line {line[:80]!r}")
        size = int(text, 16)
        if size:
            self._left = size
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILER

    def _finish(self) -> None:
        self._state = _HEAD
        self.head_request = False
        self._on_end()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_text(self) -> str:
        return f"{self.status} {self.body[:300].decode('utf-8', 'replace')}".strip()


def blocking_request(
    target: Target,
    method: str,
    path: str,
    body: bytes | None = None,
    fields: list[tuple[str, str]] | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One request on a new connection, for set-up and tear-down (not the load): the answer,
    or OSError / ssl.SSLError / ProtocolError."""
    all_fields = list(fields or [])
    if body is not None:
        all_fields.append(("Content-Length", str(len(body))))
    all_fields.append(("Connection", "close"))
    raw = target.head(method, path, all_fields) + (body or b"")
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    try:
        if target.ssl_context is not None:
            sock = target.ssl_context.wrap_socket(sock, server_hostname=target.host)
        sock.sendall(raw)
        got: list[Answer] = []
        parts: list[bytes] = []
        parser = ResponseParser(
            lambda s, h: None, parts.append,
            lambda: got.append(Answer(parser.status, parser.headers, b"".join(parts))),
        )
        parser.head_request = method == "HEAD"
        while not got:
            data = sock.recv(65536)
            if not data:
                parser.feed_eof()
                if not got:
                    raise ProtocolError("the connection ended before an answer")
                break
            parser.feed(data)
        return got[0]
    finally:
        sock.close()
