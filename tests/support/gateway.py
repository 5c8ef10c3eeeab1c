"""The gateway under test as a real process (``python -m gateway``) on a free loopback port,
and what tests read off it from outside: its /metrics samples and its resident memory."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.kafka.embedded import find_free_port

from .http import request

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class GatewayCrashed(AssertionError):
    """The gateway's log shows an unhandled exception (a Traceback) or a fatal error."""


class GatewayProcess:
    def __init__(
        self,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        """Run ``command`` (``python -m gateway`` unless given) with ``--listen`` on a free port
        and ``args``."""
        self.port = find_free_port("127.0.0.1")
        self.host = "127.0.0.1"
        self.log_path = log_path
        self.bootstrap = args[args.index("--bootstrap-servers") + 1] if "--bootstrap-servers" in args else None
        self.log_checked = False
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "gateway"]), "--listen", f"127.0.0.1:{self.port}", *args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not listen within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until the log holds ``count`` matches of the regular expression ``pattern``. A
        line is not on disk the moment the port answers: the gateway logs after it listens,
        and the access log is written by a thread every 0.1 s."""
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.log())) < count:
            assert time.monotonic() < deadline, f"no {pattern!r} in the log:\n{self.log()[-3000:]}"
            time.sleep(0.05)

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def assert_no_crash(self) -> None:
        """An unhandled exception in the gateway is a bug, even when the client saw no harm.

        ``gateway_factory`` checks this after the test unless the test did (``log_checked``):
        a test that stops the gateway itself checks the whole log, shutdown included."""
        self.log_checked = True
        text = self.log()
        # librdkafka's own log lines (the ``gateway.rdkafka`` logger, or ``%<level>|...`` from a
        # client it did not take over) report broker trouble, e.g. "Fatal error: ... Unknown
        # Producer Id" after a broker lost its state: not a crash of ours.
        ours = "\n".join(line for line in text.splitlines()
                         if not line.startswith("%") and " gateway.rdkafka: " not in line)
        if "Traceback" in ours or "Fatal error" in ours:
            raise GatewayCrashed(text[-5000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident memory of the gateway process now (VmRSS in /proc/<pid>/status)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for gateway pid {self.proc.pid}")

    def client_sockets(self) -> int:
        """Open sockets of the gateway on its listening port other than the listener: its
        client connections (from /proc: the process's socket inodes and /proc/net/tcp*)."""
        inodes = set()
        fd_dir = f"/proc/{self.proc.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        n = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    # st 0A is LISTEN
                    if local_port == self.port and fields[3] != "0A" and fields[9] in inodes:
                        n += 1
        return n

    def scrape(self) -> Samples:
        """Every sample of GET /metrics, keyed by (name, labels)."""
        r = request(self.host, self.port, "GET", "/metrics", timeout=10)
        assert r.status == 200, r
        samples: Samples = {}
        for family in text_string_to_metric_families(r.body.decode()):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return samples

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of this (single-worker) gateway's /metrics, None if absent."""
        return self.scrape().get((name, frozenset({"worker": "0", **labels}.items())))


@contextmanager
def crash_checked(g: GatewayProcess) -> Iterator[None]:
    """Check the gateway's log for a crash when the block ends, also when it fails: a failure
    the crash explains is raised as ``GatewayCrashed`` (the block's own error chained to it), so
    that a known crash can be marked ``xfail(raises=GatewayCrashed)`` and anything else fails."""
    try:
        yield
    except BaseException:
        g.assert_no_crash()
        raise
    g.assert_no_crash()


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (of every thread of it), from /proc."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return out


def process_name(pid: int) -> str | None:
    """``/proc/<pid>/comm``; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None
