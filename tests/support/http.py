"""A small blocking HTTP/1.1 client for tests, written against the wire format (not our code):
simple requests, and full-duplex v3 produce streams that read reports while still sending."""

from __future__ import annotations

import json
import socket
import ssl
import time
from typing import Any


class HttpResponse:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpResponse({self.status}, {self.body[:200]!r})"


class Conn:
    """One TCP connection with a byte buffer and response readers."""

    def __init__(
        self, host: str, port: int, timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:  # HTTPS: the handshake happens here
            sock = ssl_context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.buf = bytearray()
        self.host = host
        self.port = port
        self.timeout = timeout

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the server")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, sep: bytes, deadline: float) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[: i + len(sep)])
                del self.buf[: i + len(sep)]
                return out
            if not self._fill(deadline):
                raise ConnectionError(f"connection closed before {sep!r}; have {bytes(self.buf)!r}")

    def read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnectionError(f"connection closed with {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self, timeout: float | None = None) -> tuple[int, str, list[tuple[str, str]]]:
        deadline = time.monotonic() + (timeout or self.timeout)
        head = self.read_until(b"\r\n\r\n", deadline).decode("latin-1")
        lines = head.split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers.append((k.strip().lower(), v.strip()))
        return int(status), (reason[0] if reason else ""), headers

    def read_response(self, timeout: float | None = None) -> HttpResponse:
        """A whole response (skipping 1xx), body by Content-Length, chunks, or close."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            status, reason, headers = self.read_head(timeout)
            if status >= 200:
                break
        h = dict(headers)
        if status in (204, 304):  # no content, whatever the headers say (RFC 9112 §6.3)
            body = b""
        elif "content-length" in h:
            body = self.read_exact(int(h["content-length"]), deadline)
        elif h.get("transfer-encoding", "").lower() == "chunked":
            body = b"".join(iter(lambda: self.read_chunk(deadline), b""))
        else:
            while self._fill(deadline):
                pass
            body = bytes(self.buf)
            self.buf.clear()
        return HttpResponse(status, reason, headers, body)

    def read_chunk(self, deadline: float) -> bytes:
        """One chunk's data; b"" for the last chunk (trailers consumed)."""
        line = self.read_until(b"\r\n", deadline)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while self.read_until(b"\r\n", deadline) != b"\r\n":
                pass
            return b""
        data = self.read_exact(size + 2, deadline)
        assert data[-2:] == b"\r\n", data[-10:]
        return data[:-2]

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return True


def request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResponse:
    with Conn(host, port, timeout, ssl_context) as c:
        c.send(build_request(method, path, body, headers))
        return c.read_response()


def build_request(
    method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    h = {"Host": "gateway.test"}
    if body is not None:
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")


class ProduceStream:
    """A v3 produce request with a chunked body that stays open: send records, read reports."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        *,
        cluster_id: str = "cluster-1",
        prefix: str = "/v3",
        content_type: str = "application/json",
        timeout: float = 60.0,
        extra_headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.conn = Conn(host, port, timeout, ssl_context)
        self.path = f"{prefix}/clusters/{cluster_id}/topics/{topic}/records"
        h = {
            "Host": "gateway.test",
            "Content-Type": content_type,
            "Transfer-Encoding": "chunked",
        }
        h.update(extra_headers or {})
        head = f"POST {self.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        self.conn.send((head + "\r\n").encode("latin-1"))
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self._pending = bytearray()  # report bytes not yet split into lines
        self.ended = False
        self.timeout = timeout

    def __enter__(self) -> ProduceStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def send(self, data: bytes) -> None:
        """One chunk of body (no-op for empty data: an empty chunk would end the body)."""
        if data:
            self.conn.send(b"%x\r\n%s\r\n" % (len(data), data))

    def send_records(self, records: list[dict[str, Any]]) -> None:
        self.send(b"".join(json.dumps(r).encode() for r in records))

    def end(self) -> None:
        self.conn.send(b"0\r\n\r\n")

    def read_status(self, timeout: float | None = None) -> int:
        while True:
            status, _, headers = self.conn.read_head(timeout)
            if status >= 200:
                break
        self.status = status
        self.headers = headers
        return status

    def read_reports(self, n: int, timeout: float | None = None) -> list[dict[str, Any]]:
        """Exactly ``n`` more reports (fails on timeout or if the response ends first)."""
        return [json.loads(r) for r in self.read_raw_reports(n, timeout)]

    def read_raw_reports(self, n: int, timeout: float | None = None) -> list[bytes]:
        if self.status is None:
            self.read_status(timeout)
        deadline = time.monotonic() + (timeout or self.timeout)
        out: list[bytes] = []
        while len(out) < n:
            i = self._pending.find(b"\r\n")
            if i >= 0:
                out.append(bytes(self._pending[:i]))
                del self._pending[: i + 2]
                continue
            if self.ended:
                raise AssertionError(f"response ended after {len(out)} of {n} reports")
            data = self.conn.read_chunk(deadline)
            if not data:
                self.ended = True
            self._pending += data
        return out

    def read_rest(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every remaining report up to the end of the response."""
        if self.status is None:
            self.read_status(timeout)
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.ended:
            data = self.conn.read_chunk(deadline)
            if not data:
                self.ended = True
            self._pending += data
        lines = bytes(self._pending).split(b"\r\n")
        assert lines[-1] == b"", f"response ended inside a report: {lines[-1][:200]!r}"
        self._pending.clear()
        return [json.loads(x) for x in lines[:-1]]
