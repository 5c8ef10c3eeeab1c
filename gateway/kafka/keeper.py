"""The embedded broker, kept running: started, watched, restarted.

``BrokerKeeper`` runs an ``EmbeddedBroker`` from a thread of its own for the life of the
gateway (or of the ``--workers`` supervisor, which owns the broker then):

- It starts the broker, runs ``setup`` (the ``--topic`` topics) and reports the broker up.
- It waits for the broker's exit in ``waitpid()``: a child watcher, not a health poll. The
  kernel wakes it the moment the broker exits; it reaps the process, logs how it ended (exit
  status or signal, and its last output lines when it exited on its own) and reports it down
  at once.
- It starts it again on the same address after a back-off (``backoff`` doubling up to
  ``max_backoff`` while it keeps failing; back to ``backoff`` once a broker has run for
  ``healthy_after`` seconds), runs ``setup`` again (memory storage comes back empty: the
  topics are created again before anyone is told the broker is up), and reports it up.

Why a thread: starting Tansu blocks (fork and exec, up to 15 s until it answers metadata, then
topic creation), and the kernel kills the broker when the *thread* that forked it ends
(``PR_SET_PDEATHSIG``, see gateway.kafka.embedded): one long-lived thread forks every broker
and lives exactly as long as the keeper. The broker still dies with the process however the
process dies.

Watchers (``watch``) are told every change: ``callback(None)`` when the broker is up,
``callback(reason)`` when it is down. They are called on the keeper's thread (and once, with
the current state, by ``watch`` itself) with the keeper's lock held, so they are told in order
and must only hand the news on (``loop.call_soon_threadsafe``, a non-blocking pipe write).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from gateway.kafka.embedded import EmbeddedBroker, describe_exit

log = logging.getLogger("gateway.kafka")

Watcher = Callable[[str | None], None]

# How long ``stop`` waits for the broker to exit on SIGINT (Tansu exits at once), then on SIGKILL.
STOP_TIMEOUT = 5.0


class BrokerKeeper:
    def __init__(
        self,
        broker: EmbeddedBroker,
        setup: Callable[[str], None] | None = None,
        *,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        healthy_after: float = 60.0,
        start_timeout: float = 15.0,
    ) -> None:
        self.broker = broker
        self.setup = setup
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.start_timeout = start_timeout
        self.restarts = 0  # brokers started after the first one
        self._lock = threading.Lock()
        self._watchers: list[Watcher] = []
        self._down: str | None = "the embedded broker is not started yet"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._first_start: BaseException | None = None
        self._first_done = threading.Event()

    @property
    def down(self) -> str | None:
        """Why the broker is not serving now (None: it is up, its topics created)."""
        return self._down

    # -- the caller's side ---------------------------------------------------------------
    def start(self) -> None:
        """Start the broker (and run ``setup``) on the keeper's thread and wait for it; then
        keep it running. Raises what the first start raised (``AddressInUse``,
        ``RuntimeError``, or ``setup``'s exception); nothing is left running then."""
        if self._thread is not None:
            raise RuntimeError("the broker keeper was started already")
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        self._first_done.wait()
        if self._first_start is not None:
            self._thread.join()
            raise self._first_start

    def watch(self, callback: Watcher) -> None:
        """Tell ``callback`` the current state now, and every change from now on."""
        with self._lock:
            self._watchers.append(callback)
            callback(self._down)

    def unwatch(self, callback: Watcher) -> None:
        with self._lock:
            if callback in self._watchers:
                self._watchers.remove(callback)

    def stop(self) -> None:
        """Stop the broker (SIGINT, then SIGKILL) and the keeper; nobody is told it is down.
        Idempotent."""
        self._stopping.set()
        thread = self._thread
        if thread is None:
            return
        self.broker.send_signal(signal.SIGINT)  # Tansu exits at once on SIGINT
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            log.warning("the embedded broker did not stop within %gs: killing it", STOP_TIMEOUT)
            self.broker.send_signal(signal.SIGKILL)
            thread.join(STOP_TIMEOUT)

    # -- the keeper's thread -------------------------------------------------------------
    def _tell(self, down: str | None) -> None:
        with self._lock:
            self._down = down
            for callback in list(self._watchers):
                try:
                    callback(down)
                except Exception:
                    log.exception("a watcher of the embedded broker failed")

    def _start_once(self) -> None:
        """Start the broker and run ``setup``; on failure nothing is left running."""
        self.broker.start(timeout=self.start_timeout)
        try:
            if self.setup is not None:
                self.setup(self.broker.bootstrap)
        except BaseException:
            self.broker.stop()
            raise
        self._started_at = time.monotonic()

    def _run(self) -> None:
        try:
            self._start_once()
        except BaseException as exc:
            self._first_start = exc
            self._first_done.set()
            return
        self._tell(None)
        self._first_done.set()
        delay = self.backoff
        try:
            while not self._stopping.is_set():
                pid = self.broker.pid
                returncode = self.broker.wait()  # the child watcher: returns when it exits
                if self._stopping.is_set():
                    break
                uptime = time.monotonic() - self._started_at
                how = describe_exit(returncode)
                if uptime >= self.healthy_after:
                    delay = self.backoff
                self._tell(f"the embedded broker {how}; it is being restarted")
                tail = self.broker.log_tail(5) if returncode >= 0 else []
                log.error(
                    "the embedded broker (pid %s) %s after %.1fs: starting it again in %gs%s",
                    pid, how, uptime, delay,
                    "".join(f"\n  | {line}" for line in tail),
                )
                delay = self._restart(delay)
        finally:
            self.broker.stop()

    def _restart(self, delay: float) -> float:
        """Start the broker again after ``delay``, and after a longer one each time that
        fails; returns the delay before the next restart should this broker die soon."""
        while not self._stopping.wait(delay):
            delay = min(delay * 2, self.max_backoff)
            try:
                self._start_once()
            except Exception as exc:
                if self._stopping.is_set():
                    break
                log.error("could not start the embedded broker again (next try in %gs): %s", delay, exc)
                continue
            if self._stopping.is_set():
                break  # the loop above sees it and stops this broker
            self.restarts += 1
            log.info(
                "the embedded broker is up again on %s (pid %s), with empty storage%s",
                self.broker.bootstrap, self.broker.pid,
                ": its topics were created again" if self.setup is not None else "",
            )
            self._tell(None)
            break
        return delay
