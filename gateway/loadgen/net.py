"""One client connection of the load: a non-blocking socket, TLS through memory BIOs, and the
kernel's receive timestamp of what it reads.

Each read is a ``recvmsg`` with ``SO_TIMESTAMPNS``: the kernel says when the data reached the
socket, so a report's arrival time does not include how late the loadgen's own loop was to
read it (the loop may be busy writing). TLS is an ``ssl.SSLObject`` over two ``MemoryBIO``s
(``SSLContext.wrap_bio``) so that the bytes still come through ``recvmsg``. Where the kernel
gives no timestamp, the clock is read instead.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time

from gateway.loadgen.http import Target

RECV_BYTES = 256 * 1024
SEND_LOW_WATER = 256 * 1024  # a writer adds more only below this many pending bytes
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux: SO_TIMESTAMPNS_OLD
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
_ANC = socket.CMSG_SPACE(16)  # one struct timespec
_TIMESPEC = struct.Struct("@qq")
CONNECT_TIMEOUT = 5.0


def now_us() -> float:
    """The clock every latency is measured on: CLOCK_REALTIME (the kernel's receive timestamps
    are on it), in microseconds."""
    return time.time() * 1e6


class Transport:
    """A connected socket (after a blocking connect and TLS handshake) then used non-blocking:
    ``read()`` and ``write()``/``flush()`` never block. Output waits in one bounded-by-caller
    buffer: writers check ``pending`` against SEND_LOW_WATER before adding more."""

    def __init__(self, target: Target) -> None:
        self.closed = False
        sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                pass  # no kernel timestamps: read() uses the clock
            self._ssl: ssl.SSLObject | None = None
            if target.ssl_context is not None:
                self._in = ssl.MemoryBIO()
                self._out = ssl.MemoryBIO()
                self._ssl = target.ssl_context.wrap_bio(
                    self._in, self._out, server_hostname=target.host
                )
                self._handshake(sock)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buf = bytearray()  # output not yet taken by the kernel

    def _handshake(self, sock: socket.socket) -> None:
        assert self._ssl is not None
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            out = self._out.read()
            if out:
                sock.sendall(out)
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection during the TLS handshake")
            self._in.write(data)
        out = self._out.read()
        if out:
            sock.sendall(out)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def read(self) -> tuple[bytes, float] | None:
        """(bytes read, their arrival time in µs); b"" at the end of the connection; None when
        nothing can be read now. OSError on a reset, ssl.SSLError on a TLS failure."""
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(RECV_BYTES, _ANC)
        except (BlockingIOError, InterruptedError):
            return None
        ts = 0.0
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(cdata)
                ts = sec * 1e6 + nsec / 1000.0
        if not ts:
            ts = now_us()
        if self._ssl is None or not data:
            return data, ts
        self._in.write(data)
        parts = []
        while True:
            try:
                piece = self._ssl.read(RECV_BYTES)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                break  # after close_notify the socket's own end follows: read() then says b""
            if not piece:
                break
            parts.append(piece)
        if self._out.pending:  # post-handshake messages (key updates) to answer
            self._buf += self._out.read()
            self.flush()
        if not parts:
            return None
        return (parts[0] if len(parts) == 1 else b"".join(parts)), ts

    def write(self, data: bytes) -> bool:
        """Queue ``data`` and write what the socket takes; True when nothing is left pending."""
        if self._ssl is not None:
            self._ssl.write(data)
            self._buf += self._out.read()
        else:
            self._buf += data
        return self.flush()

    def write_parts(self, *parts: bytes) -> None:
        """Queue ``parts`` without writing (the caller flushes once)."""
        if self._ssl is not None:
            for p in parts:
                self._ssl.write(p)
            self._buf += self._out.read()
        else:
            buf = self._buf
            for p in parts:
                buf += p

    def flush(self) -> bool:
        """Write what the socket takes; True when nothing is left. OSError when the peer is
        gone."""
        buf = self._buf
        while buf:
            try:
                n = self.sock.send(buf)
            except (BlockingIOError, InterruptedError):
                return False
            del buf[:n]  # bytearray: O(1) from the front
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._buf.clear()
            self.sock.close()
