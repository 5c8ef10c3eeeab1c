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
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from gateway.config import Config
from gateway.config_sources import worker_environ

log = logging.getLogger("gateway.workers")

RESTART_BACKOFF = 1.0
START_FAILED = 2  # a gateway's exit status when it cannot start (configuration, address)


def worker_argv(slot: int) -> list[str]:
    """A worker's command line: its slot; its settings come in GATEWAY_WORKER_CONFIG."""
    return [sys.executable, "-m", "gateway", "--worker-slot", str(slot)]


class Supervisor:
    def __init__(self, cfg: Config, bootstrap: str) -> None:
        self.count = cfg.workers
        self.shutdown_timeout = cfg.shutdown_timeout
        self.environ = worker_environ(cfg, bootstrap, os.environ)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started_at: dict[int, float] = {}
        self.stopping = False
        self.failed = False  # a worker could not start: exit START_FAILED

    def _start(self, slot: int) -> None:
        proc = subprocess.Popen(worker_argv(slot), env=self.environ)
        self.procs[slot] = proc
        self.started_at[slot] = time.monotonic()
        log.info("worker %d started (pid %d)", slot, proc.pid)

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

