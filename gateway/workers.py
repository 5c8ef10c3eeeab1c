"""``--workers N``: N gateway processes on one listening address (SO_REUSEPORT), one producer
each, watched by a small supervisor.

Workers are fresh interpreters (never forked: by then librdkafka threads may exist, and a fork
copies their locks but not the threads). Each gets the configuration the supervisor resolved,
in its environment (``gateway.config_sources.worker_environ``): the same settings whatever flags,
variables or configuration file produced them, even if the file changes or goes away while the
gateway runs, and nothing of it on a command line that ``ps`` shows. The supervisor starts the
embedded broker and creates topics once; workers only serve. It forwards SIGTERM/SIGINT (each
worker then stops gracefully, see gateway.app) and SIGUSR1, restarts a worker that dies on its
own (at most once a second per slot), and exits 0 when all have stopped. A worker that exits
with status 2 could not start (its address is taken, or its configuration is refused: a
restart would not change either): the supervisor then stops the others and exits 2.

**The embedded broker** is the supervisor's (gateway.kafka.keeper keeps it running: restarted,
with its topics, when it dies). Workers hear about it from the supervisor itself, on a
**lifeline**: a pipe from the supervisor that is each worker's standard input. The supervisor
writes one line per change (``broker-down <why>``, ``broker-up``) to every worker, and the
current state to a worker it starts while the broker is down; a worker marks the cluster down
or up as its own keeper would (gateway.app). No worker polls the broker's port: the news comes
the moment the supervisor's child watcher has it.

**Workers die with their supervisor, however it dies** (SIGKILL, the OOM killer): each is
started with ``PR_SET_PDEATHSIG`` = ``PARENT_DEATH_SIGNAL`` (SIGHUP), set between fork and exec,
after which the child checks that its parent is still the supervisor
(gateway.kafka.embedded.parent_death_preexec: no window in which the supervisor can die
unnoticed); and its lifeline reads end-of-file once the supervisor is gone. A worker told either
way closes its listener at once (nothing serves the port alone, or beside a new gateway started
on it), finishes its in-flight records within ``--shutdown-timeout`` and exits. Before its
handler is installed the signal's default action ends the worker (it serves nothing yet).
The signal is not SIGTERM because the kernel sends it when the supervisor's *thread* that
started the worker ends, possibly while other threads of the dying supervisor are still there
(the worker's parent is then still the supervisor's pid): a SIGTERM could not tell it from the
supervisor's own graceful stop, which keeps the listener open while it drains.

**The run directory.** The supervisor makes a private directory (mode 0700, removed when it
exits; ``make_run_dir``) and hands it to its workers with their configuration. Each worker
listens there on its hand-off socket (``worker-<slot>.sock``, gateway.server) and keeps the
ownership records of the consumer instances it holds (gateway.consume.owners): a request for an
instance that lands on another worker is handed over to it (gateway.api.consumers). A worker
started in a slot removes that slot's records first: the instances they name died with the
process that had the slot before.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.config_sources import worker_environ
from gateway.kafka.embedded import parent_death_preexec

if TYPE_CHECKING:
    from gateway.kafka.keeper import BrokerKeeper

log = logging.getLogger("gateway.workers")

RESTART_BACKOFF = 1.0
START_FAILED = 2  # a gateway's exit status when it cannot start (configuration, address)

# Lifeline lines (supervisor -> worker), each at most PIPE_BUF bytes: written whole or not at all.
BROKER_DOWN = b"broker-down "
BROKER_UP = b"broker-up"
LINE_MAX = 4096

# Sent by the kernel to a worker when its supervisor dies (PR_SET_PDEATHSIG; see above).
PARENT_DEATH_SIGNAL = signal.SIGHUP


# sun_path holds 108 bytes with the terminating NUL; the longest socket name is a slot's.
SOCKET_PATH_MAX = 107
_LONGEST_SOCKET = "/worker-999.sock"


def make_run_dir() -> str:
    """A new private directory (mode 0700) for the workers' hand-off sockets and ownership
    records: in the temporary directory ($TMPDIR), or in /tmp when a socket path there would
    be too long."""
    path = tempfile.mkdtemp(prefix="kafka-gateway-")
    if len(os.fsencode(path + _LONGEST_SOCKET)) > SOCKET_PATH_MAX:
        os.rmdir(path)
        path = tempfile.mkdtemp(prefix="kafka-gateway-", dir="/tmp")
    return path


def worker_argv(slot: int) -> list[str]:
    """A worker's command line: its slot; its settings come in GATEWAY_WORKER_CONFIG."""
    return [sys.executable, "-m", "gateway", "--worker-slot", str(slot)]


def broker_line(down: str | None) -> bytes:
    """The lifeline line that tells a worker the embedded broker's state."""
    if down is None:
        return BROKER_UP + b"\n"
    text = " ".join(down.split()).encode("utf-8", "replace")
    return BROKER_DOWN + text[: LINE_MAX - len(BROKER_DOWN) - 1] + b"\n"


class Supervisor:
    def __init__(self, cfg: Config, bootstrap: str, keeper: BrokerKeeper | None = None) -> None:
        self.count = cfg.workers
        self.shutdown_timeout = cfg.shutdown_timeout
        self._cfg = cfg
        self._bootstrap = bootstrap
        self.run_dir: str | None = None  # made by run(), removed when it returns
        self.environ = worker_environ(cfg, bootstrap, os.environ)
        self.keeper = keeper
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.lifelines: dict[int, int] = {}  # slot -> write end of its worker's lifeline
        self.started_at: dict[int, float] = {}
        self.stopping = False
        self.failed = False  # a worker could not start: exit START_FAILED
        # The keeper's thread tells us of the broker while the main thread starts workers.
        self._lock = threading.Lock()
        self._broker_down: str | None = None

    def _start(self, slot: int) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # a worker that does not read never holds us
        with self._lock:
            self._close_lifeline(slot)
            try:
                proc = subprocess.Popen(
                    worker_argv(slot), env=self.environ, stdin=read_end,
                    preexec_fn=parent_death_preexec(PARENT_DEATH_SIGNAL),
                )
            except BaseException:
                os.close(write_end)
                raise
            finally:
                os.close(read_end)
            self.procs[slot] = proc
            self.lifelines[slot] = write_end
            self.started_at[slot] = time.monotonic()
            if self._broker_down is not None:
                self._send(slot, broker_line(self._broker_down))
        log.info("worker %d started (pid %d)", slot, proc.pid)

    def _close_lifeline(self, slot: int) -> None:
        fd = self.lifelines.pop(slot, None)
        if fd is not None:
            os.close(fd)

    def _send(self, slot: int, line: bytes) -> None:
        """Write one lifeline line (lock held). A worker that died or does not read misses it
        (a new worker is told the state when it starts)."""
        try:
            os.write(self.lifelines[slot], line)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EAGAIN):
                log.warning("cannot tell worker %d of the embedded broker: %s", slot, exc)

    def _on_broker(self, down: str | None) -> None:
        """The keeper's watcher (on its thread): every worker hears of the change now."""
        with self._lock:
            self._broker_down = down
            line = broker_line(down)
            for slot, proc in self.procs.items():
                if proc.poll() is None and slot in self.lifelines:
                    self._send(slot, line)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping %d workers", len(self.procs))
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def _on_usr1(self, signum: int, _frame: FrameType | None) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGUSR1, self._on_usr1)
        self.run_dir = make_run_dir()
        self.environ = worker_environ(self._cfg, self._bootstrap, os.environ, self.run_dir)
        if self.keeper is not None:
            self.keeper.watch(self._on_broker)
        try:
            return self._run()
        finally:
            if self.keeper is not None:
                self.keeper.unwatch(self._on_broker)
            with self._lock:
                for slot in list(self.lifelines):
                    self._close_lifeline(slot)
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _run(self) -> int:
        for slot in range(self.count):
            self._start(slot)
        deadline = None
        while True:
            alive = {s: p for s, p in self.procs.items() if p.poll() is None}
            if self.stopping:
                if not alive:
                    break
                if deadline is None:
                    deadline = time.monotonic() + self.shutdown_timeout + 5.0
                elif time.monotonic() > deadline:
                    for proc in alive.values():
                        log.error("worker pid %d did not stop in time: killing it", proc.pid)
                        proc.kill()
            else:
                for slot, proc in self.procs.items():
                    if slot in alive:
                        continue
                    if proc.returncode == START_FAILED:
                        log.error("worker %d (pid %d) could not start: stopping", slot, proc.pid)
                        self.failed = True
                        self._on_stop(signal.SIGTERM, None)
                        break
                    if time.monotonic() - self.started_at[slot] < RESTART_BACKOFF:
                        continue
                    log.error("worker %d (pid %d) exited with %s: restarting it", slot, proc.pid, proc.returncode)
                    self._start(slot)
            time.sleep(0.05)
        codes = {s: p.returncode for s, p in self.procs.items()}
        log.info("all workers stopped: %s", codes)
        if self.failed:
            return START_FAILED
        # A worker still starting when the stop came has no handler yet and ends by the signal:
        # it had nothing in flight, so that is a clean stop too.
        clean = (0, -signal.SIGTERM, -signal.SIGINT)
        return 0 if all(c in clean for c in codes.values()) else 1


class Lifeline:
    """A worker's end of its lifeline (standard input, from the supervisor): ``on_broker(down)``
    for each state of the embedded broker the supervisor reports (None: up), ``on_gone(why)``
    once when the supervisor is gone (end of file). Runs on the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_broker: Callable[[str | None], None],
        on_gone: Callable[[str], None],
        fd: int = 0,
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.on_broker = on_broker
        self.on_gone = on_gone
        self._pending = b""
        self._watching = False

    def start(self) -> None:
        """Act on what is already there (the supervisor may be gone already), then on every
        line as it comes."""
        os.set_blocking(self.fd, False)
        if self._read():
            self.loop.add_reader(self.fd, self._readable)
            self._watching = True

    def close(self) -> None:
        if self._watching:
            self.loop.remove_reader(self.fd)
            self._watching = False

    def _readable(self) -> None:
        if not self._read():
            self.close()

    def _read(self) -> bool:
        """Read what is there and act on each whole line; False once the supervisor is gone."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            except OSError as exc:
                self.on_gone(f"its lifeline failed: {exc}")
                return False
            if not data:
                self.on_gone("its lifeline was closed")
                return False
            lines = (self._pending + data).split(b"\n")
            self._pending = lines.pop()[-LINE_MAX:]  # bounded: a line is at most LINE_MAX
            for line in lines:
                self._line(line)

    def _line(self, line: bytes) -> None:
        if line == BROKER_UP:
            self.on_broker(None)
        elif line.startswith(BROKER_DOWN):
            self.on_broker(line[len(BROKER_DOWN):].decode("utf-8", "replace"))
        else:
            log.warning("unknown line from the supervisor: %r", line[:100])
