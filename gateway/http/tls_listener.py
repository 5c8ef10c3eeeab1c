"""The HTTPS listener: our own accept loop, so that plain HTTP sent to the TLS port gets an answer.

``loop.create_server(ssl=...)`` starts a TLS handshake on every connection: a client speaking
plain HTTP to it sees the connection close without a byte (curl: "Empty reply from server").
Here each accepted connection waits, without a protocol, for its first byte (within the
first-byte timeout, --header-timeout) and is looked at with ``recv(1, MSG_PEEK)``:

- 0x16, a TLS handshake record (RFC 8446 §5.1, ContentType ``handshake(22)``; every TLS
  version starts with one), goes to ``loop.connect_accepted_socket`` with the TLS context,
  which does the handshake (within the handshake timeout) and then runs the protocol;
- anything else is plain text: it gets a ``400`` with our JSON error body and
  ``Connection: close`` (what nginx answers in the same case), and the connection closes after
  a short lingering read, so that the client reads the answer rather than a reset.

Bounded: at most ``max_pending`` connections wait for their first byte, do their handshake or
linger at once; connections accepted beyond that are closed at once and counted
(``refused_over_limit``). One readiness callback accepts at most ``ACCEPT_BATCH`` connections,
and nothing here blocks: the sockets are non-blocking, and every wait is a reader or a timer on
the loop. This module knows sockets and HTTP, nothing of the application: the protocol factory
is given.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable

from gateway.errors import error_body
from gateway.http.writer import fixed_response

log = logging.getLogger("gateway.http")

TLS_HANDSHAKE = 0x16
PLAIN_HTTP_ANSWER = fixed_response(
    400,
    error_body(400, "plain HTTP request sent to the TLS port: use https://"),
    close=True,
)
ACCEPT_BATCH = 64  # connections accepted per readiness callback: the loop serves others between
DEFAULT_MAX_PENDING = 4096
LINGER_TIMEOUT = 1.0  # after the 400: how long the rest of the plain request is read and dropped
LINGER_BYTES = 64 * 1024  # ... and how much of it, at most
ACCEPT_RETRY_DELAY = 1.0  # out of file descriptors: accepting pauses this long (as asyncio does)
# accept() errors that concern the connection being accepted, not the listener.
_PEER_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET, errno.EPERM})
_NO_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def bind_sockets(host: str, port: int, *, reuse_port: bool) -> list[socket.socket]:
    """A socket bound to each address of ``host`` (SO_REUSEADDR; SO_REUSEPORT when the
    address is shared by --workers; IPv6 sockets only for IPv6), as ``create_server`` binds
    them. OSError naming the address if one cannot be bound; nothing is left open then."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {sockaddr!r}: "
                    f"{(exc.strerror or str(exc)).lower()}"
                ) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class TlsListener(asyncio.AbstractServer):
    """Listening sockets for ``host:port`` that serve ``protocol_factory`` over TLS. Made by
    ``listen``; closed with ``close()`` and ``await wait_closed()`` like ``asyncio.Server``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        ssl_context: ssl.SSLContext,
        *,
        first_byte_timeout: float | None,
        handshake_timeout: float | None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._ssl = ssl_context
        self.first_byte_timeout = first_byte_timeout
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.sockets: list[socket.socket] = []
        # Accepted connections waiting for their first byte, or lingering after the 400: the
        # timer that closes them.
        self._waiting: dict[socket.socket, asyncio.TimerHandle | None] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._serving = False
        self._closed: asyncio.Future[None] = loop.create_future()
        self._paused_handle: asyncio.TimerHandle | None = None
        self.refused_over_limit = 0
        self.plain_http_answered = 0

    # -- listening ---------------------------------------------------------------------
    def listen(self, host: str, port: int, *, backlog: int, reuse_port: bool) -> None:
        """Bind and listen on every address of ``host`` (as ``create_server`` does), then
        accept. OSError (e.g. EADDRINUSE) if one cannot be bound; nothing is left open then."""
        self.sockets = bind_sockets(host, port, reuse_port=reuse_port)
        try:
            for sock in self.sockets:
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            for sock in self.sockets:
                sock.close()
            self.sockets.clear()
            raise
        self._serving = True
        self._watch_listeners()

    def _watch_listeners(self) -> None:
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _PEER_GONE:
                    continue
                if exc.errno in _NO_RESOURCES:
                    log.error(
                        "cannot accept connections (%s): trying again in %gs", exc, ACCEPT_RETRY_DELAY
                    )
                    self._pause_accepting()
                    return
                log.error("accepting a connection failed: %s", exc)
                return
            if self.pending >= self.max_pending:
                self.refused_over_limit += 1
                if self.refused_over_limit == 1 or self.refused_over_limit % 1000 == 0:
                    log.warning(
                        "%d TLS connections wait for their first byte or handshake: closing new "
                        "ones (%d closed so far)", self.pending, self.refused_over_limit,
                    )
                conn.close()
                continue
            conn.setblocking(False)
            self._await_first_byte(conn)

    def _pause_accepting(self) -> None:
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())

        def resume() -> None:
            self._paused_handle = None
            if self._serving:
                self._watch_listeners()

        self._paused_handle = self._loop.call_later(ACCEPT_RETRY_DELAY, resume)

    @property
    def pending(self) -> int:
        """Connections accepted but not yet served or closed: waiting for their first byte,
        in their TLS handshake, or lingering after the plain-HTTP answer."""
        return len(self._waiting) + len(self._handshakes)

    # -- the first byte ----------------------------------------------------------------
    def _await_first_byte(self, conn: socket.socket) -> None:
        timer = None
        if self.first_byte_timeout:
            timer = self._loop.call_later(self.first_byte_timeout, self._drop, conn)
        self._waiting[conn] = timer
        self._loop.add_reader(conn.fileno(), self._on_first_byte, conn)

    def _forget(self, conn: socket.socket) -> None:
        timer = self._waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()
        self._loop.remove_reader(conn.fileno())

    def _drop(self, conn: socket.socket) -> None:
        self._forget(conn)
        conn.close()

    def _on_first_byte(self, conn: socket.socket) -> None:
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not first:  # closed without sending anything
            self._drop(conn)
            return
        self._forget(conn)
        if first[0] == TLS_HANDSHAKE:
            task = self._loop.create_task(self._start_tls(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)
        else:
            self._answer_plain_http(conn)

    async def _start_tls(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=self.handshake_timeout
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # A failed or timed-out handshake is the client's business (as with create_server);
            # the transport has closed the socket, which is its own from the call on.
            log.debug("TLS handshake failed: %s", exc)

    # -- plain HTTP ------------------------------------------------------------------
    def _answer_plain_http(self, conn: socket.socket) -> None:
        self.plain_http_answered += 1
        try:
            # A fresh connection's send buffer takes the whole answer (under 300 bytes).
            conn.send(PLAIN_HTTP_ANSWER)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        # Closing with unread request bytes would send a reset, which may reach the client
        # before it has read the answer: read and drop the rest of the request for a moment.
        self._waiting[conn] = self._loop.call_later(LINGER_TIMEOUT, self._drop, conn)
        self._loop.add_reader(conn.fileno(), self._on_linger_read, conn, [0])

    def _on_linger_read(self, conn: socket.socket, read: list[int]) -> None:
        try:
            data = conn.recv(16384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        read[0] += len(data)
        if not data or read[0] > LINGER_BYTES:
            self._drop(conn)

    # -- asyncio.AbstractServer ----------------------------------------------------------
    def close(self) -> None:
        """Stop listening; connections not yet handed to a protocol are closed (TLS
        connections already served are not this listener's any more)."""
        if not self._serving:
            return
        self._serving = False
        if self._paused_handle is not None:
            self._paused_handle.cancel()
            self._paused_handle = None
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for conn in list(self._waiting):
            self._drop(conn)
        for task in self._handshakes:
            task.cancel()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        """It serves from ``listen`` on."""

    async def serve_forever(self) -> None:
        await asyncio.shield(self._closed)
