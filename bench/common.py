"""What every benchmark shares: /proc CPU and memory sampling, machine facts, the broker and
gateway processes they run against, topics, and the table / ``--json`` / ``--plot`` output.

A benchmark module builds a ``Rig`` (embedded Tansu broker or ``--bootstrap-servers``, on
loopback only; the gateway as a child process; a log directory), measures, and returns a
result dict. ``bench_main`` wraps that: argument checks, SIGTERM as Ctrl-C, clean-up of every
child on every exit path, and the output. Each result carries ``verdicts``: the figure the
issue's target table names, the same-run baseline, their ratio, the target and pass/fail.
The pass/fail column is information for the reader, never an assertion: machines are noisy.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import platform
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
VALUE_SEED = 20261121  # the value bytes are the same in every run and in every phase
MAX_EXAMPLES = 5
LOG_TAIL_LINES = 30
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
#: Below this share of one core, the gateway's event loop was not the bottleneck at "peak".
SATURATED_LOOP = 0.9


class BenchError(Exception):
    """The run could not produce figures; the message says why."""


# -- /proc helpers ---------------------------------------------------------------------------


def _stat_ticks(path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    # Fields after "(comm)": state is field 3, utime field 14, stime field 15 (proc(5)).
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def cpu_ticks(pid: int | str = "self") -> int:
    """utime + stime of a whole process (every thread, live or exited), in clock ticks."""
    return _stat_ticks(f"/proc/{pid}/stat")


def main_thread_ticks(pid: int) -> int:
    """utime + stime of a process's main thread: the gateway's event loop runs there, its
    librdkafka and consumer threads do not."""
    return _stat_ticks(f"/proc/{pid}/task/{pid}/stat")


def child_pids(pid: int) -> list[int]:
    """Every descendant of *pid* (from the ppid field of /proc/*/stat)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data[data.rindex(b")") + 2 :].split()[1])
        parents[ppid].append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def rss_mb(pid: int | str = "self") -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def machine_busy_ticks() -> int:
    """Non-idle CPU time of the whole machine (all CPUs), in clock ticks, from /proc/stat.

    Compared with our own processes' CPU it shows how much else ran during a phase: the
    figures are only comparable between runs on an otherwise quiet machine.
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
    values = [int(x) for x in fields[1:9]]
    return sum(values) - values[3] - values[4]


def _tcp_queues(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(send queue, receive queue) in bytes of the IPv4 TCP socket local -> remote, from
    /proc/net/tcp (proc(5)); None if not found."""
    def hexaddr(addr: tuple[str, int]) -> str:
        return f"{socket.inet_aton(addr[0])[::-1].hex().upper()}:{addr[1]:04X}"

    want = (hexaddr(local), hexaddr(remote))
    try:
        with open("/proc/net/tcp") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if (fields[1], fields[2]) == want:
                    tx, rx = fields[4].split(":")
                    return int(tx, 16), int(rx, 16)
    except (OSError, IndexError, ValueError):
        pass
    return None


def tcp_queues(sock: socket.socket) -> dict[str, int] | None:
    """Kernel queues of both ends of a loopback connection, in bytes."""
    try:
        ours, theirs = sock.getsockname(), sock.getpeername()
    except OSError:
        return None
    client, server = _tcp_queues(ours, theirs), _tcp_queues(theirs, ours)
    if client is None or server is None:
        return None
    return {"client_unsent": client[0], "client_unread": client[1],
            "server_unsent": server[0], "server_unread": server[1]}


def describe_tcp(sock: socket.socket) -> str:
    """Where the bytes are stuck on a stalled connection: both ends' kernel queues."""
    q = tcp_queues(sock)
    if q is None:
        return "TCP queues unknown"
    return (f"gateway socket: {q['server_unread']:,} request bytes unread by the gateway, "
            f"{q['server_unsent']:,} response bytes unsent; bench socket: "
            f"{q['client_unsent']:,} request bytes unsent, {q['client_unread']:,} response bytes unread")


def thread_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime + ru.ru_stime


def raise_nofile(want: int) -> int:
    """Raise this process's open-file limit towards *want* (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def machine_info() -> dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model or platform.processor() or "unknown",
        "kernel": platform.release(),
        "clk_tck": CLK_TCK,
        "loadavg_1m_at_start": os.getloadavg()[0],
    }


def versions() -> dict[str, Any]:
    import confluent_kafka

    def first(v: Any) -> Any:  # version() is a string or a (string, int) tuple
        return v[0] if isinstance(v, tuple) else v

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "confluent_kafka": first(confluent_kafka.version()),
        "librdkafka": first(confluent_kafka.libversion()),
    }
    try:
        import gateway

        out["gateway"] = getattr(gateway, "__version__", None)
    except ImportError:
        out["gateway"] = None
    try:
        out["git"] = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        out["git"] = None
    return out


def child_preexec(sig: int, nofile: int | None = None) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send *sig* to the child when the bench dies (a bench
    killed with SIGKILL then leaves no child behind), and raising the child's open-file
    limit to *nofile* (up to the hard limit) when given."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None
    parent = os.getpid()
    limits = None
    if nofile is not None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limits = (nofile if hard == resource.RLIM_INFINITY else min(nofile, hard), hard)

    def preexec() -> None:
        if limits is not None and limits[0] > resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        if prctl is not None:
            prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:
                os._exit(127)

    return preexec


def stop_child(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM,
               timeout: float = 10.0) -> int | None:
    """Signal a child, wait for it (SIGKILL after *timeout*); its exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"  (cannot read {path}: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail) if tail else "  (empty)"


def log_findings(path: str) -> dict[str, Any]:
    """Counts of WARNING/ERROR/CRITICAL lines and Tracebacks in the gateway log, with examples,
    and how many lines and bytes the log has (a log line per request is a cost too)."""
    counts: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    lines = size = 0
    try:
        with open(path, "rb") as f:
            for raw in f:
                lines += 1
                size += len(raw)
                line = raw.decode("utf-8", "replace").rstrip()
                for level in ("WARNING", "ERROR", "CRITICAL", "Traceback"):
                    if level in line:
                        counts[level] += 1
                        if len(examples) < MAX_EXAMPLES:
                            examples.append(line[:300])
                        break
    except OSError:
        pass
    return {"counts": dict(counts), "examples": examples, "lines": lines, "bytes": size}


def remove_dir(path: str) -> None:
    for name in os.listdir(path):
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            return
    try:
        os.rmdir(path)
    except OSError:
        pass


# -- records ---------------------------------------------------------------------------------


def value_bytes(size: int) -> bytes:
    return random.Random(VALUE_SEED).randbytes(size)


def record_json(value: bytes) -> bytes:
    """One v3 record with a BINARY value (docs/api.md §1)."""
    import base64

    return b'{"value":{"type":"BINARY","data":"' + base64.b64encode(value) + b'"}}'


def records_path(cluster_id: str, topic: str) -> str:
    return f"/v3/clusters/{cluster_id}/topics/{topic}/records"


# -- CPU sampling over time ------------------------------------------------------------------


class CpuSampler:
    """Samples the gateway's CPU (all its processes and threads, and its event-loop threads)
    every *interval* seconds on a thread of its own, for plots and for "was the gateway's
    loop saturated at peak". Cheap: two small /proc reads per sample."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.25) -> None:
        self._pids = pids
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter, all ticks, loop ticks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu", daemon=True)

    def sample(self) -> tuple[float, int, int]:
        total = loop = 0
        for pid in self._pids():
            try:
                total += cpu_ticks(pid)
                loop += main_thread_ticks(pid)
            except (OSError, ValueError):
                pass
        return time.perf_counter(), total, loop

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.samples.append(self.sample())

    def series(self, t0: float, t1: float | None = None) -> dict[str, list[float]]:
        """CPU in cores per interval: process and event loop, time from *t0*."""
        out: dict[str, list[float]] = {"t": [], "cores": [], "loop_cores": []}
        for (ta, ca, la), (tb, cb, lb) in zip(self.samples, self.samples[1:], strict=False):
            # (A last sample right after another says nothing at 1/CLK_TCK resolution.)
            if tb - ta < self.interval / 2 or tb < t0 or (t1 is not None and ta > t1):
                continue
            out["t"].append(round(tb - t0, 3))
            out["cores"].append(round((cb - ca) / CLK_TCK / (tb - ta), 3))
            out["loop_cores"].append(round((lb - la) / CLK_TCK / (tb - ta), 3))
        return out

    def peak_loop(self, t0: float, t1: float, window: float = 1.0) -> float | None:
        """Highest event-loop CPU share over any *window* seconds inside [t0, t1]."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        best = None
        j = 0
        for i in range(len(inside)):
            while j < len(inside) and inside[j][0] - inside[i][0] < window:
                j += 1
            if j >= len(inside):
                break
            dt = inside[j][0] - inside[i][0]
            share = (inside[j][2] - inside[i][2]) / CLK_TCK / dt
            best = share if best is None else max(best, share)
        return best


# -- the gateway process ---------------------------------------------------------------------


class GatewayProcess:
    def __init__(self, bootstrap: str, port: int, log_path: str,
                 extra_args: Sequence[str] = (), nofile: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.port = port
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.nofile = nofile
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.stop_s: float | None = None

    def start(self, timeout: float) -> None:
        argv = [
            sys.executable, "-m", "gateway",
            "--listen", f"127.0.0.1:{self.port}",
            "--bootstrap-servers", self.bootstrap,
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                close_fds=True, start_new_session=True,  # a Ctrl-C reaches only the bench
                preexec_fn=child_preexec(signal.SIGTERM, self.nofile),
            )
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise BenchError(f"the gateway exited with status {rc} while starting")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"the gateway did not listen within {timeout:g} s ({exc})") from None
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The gateway process and its descendants (``--workers`` runs one process each)."""
        return [self.pid, *child_pids(self.pid)]

    def cpu_ticks(self) -> int:
        """utime + stime of the gateway and every process under it, in clock ticks."""
        total = 0
        for pid in self.pids():
            try:
                total += cpu_ticks(pid)
            except (OSError, ValueError):
                pass  # exited between the listing and the read
        return total

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float | None:
        values = [rss_mb(pid) for pid in self.pids()]
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    def stop(self, timeout: float) -> None:
        if self.proc is None or self.exit_code is not None:
            return
        t0 = time.monotonic()
        self.exit_code = stop_child(self.proc, signal.SIGTERM, timeout)
        self.stop_s = time.monotonic() - t0

    def report(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "stop_s": self.stop_s,
            "log": self.log_path,
            "log_findings": log_findings(self.log_path),
        }


# -- topics ----------------------------------------------------------------------------------


def check_loopback(bootstrap: str) -> None:
    for server in bootstrap.split(","):
        host = server.strip().rsplit(":", 1)[0]
        if host not in LOOPBACK:
            raise BenchError(f"--bootstrap-servers: {server!r} is not on loopback; this bench targets 127.0.0.1 only")


def create_topics(bootstrap: str, names: list[str], partitions: int, timeout: float) -> str:
    """Create the topics, wait until metadata shows them whole; return the cluster id."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication_factor=1) for name in names],
        request_timeout=timeout,
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except Exception as exc:
            raise BenchError(f"could not create topic {name}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        if all(name in md.topics and len(md.topics[name].partitions) == partitions for name in names):
            return md.cluster_id or "cluster"
        if time.monotonic() > deadline:
            raise BenchError(f"topics {names} not in metadata with {partitions} partitions")
        time.sleep(0.1)


def delete_topics(bootstrap: str, names: list[str], timeout: float = 15.0) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(names, request_timeout=timeout).values():
        try:
            fut.result(timeout)
        except Exception:
            pass


# -- the rig: broker, gateway, topics, logs --------------------------------------------------


class Rig:
    """The broker (embedded Tansu unless ``--bootstrap-servers``), the gateway child, fresh
    topics, all on 127.0.0.1, stopped and removed on every exit path (``close``)."""

    def __init__(self, name: str, args: argparse.Namespace, log_dir: str) -> None:
        self.name = name
        self.args = args
        self.log_dir = log_dir
        self.timeout: float = args.timeout
        self.broker: Any = None
        self.bootstrap: str = args.bootstrap_servers or ""
        self.topics: list[str] = []
        self.cluster_id = "cluster"
        self.run_id = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self.gateways: list[GatewayProcess] = []
        self.info: dict[str, Any] = {}

    def __enter__(self) -> Rig:
        try:
            if not self.bootstrap:
                from gateway.kafka.embedded import EmbeddedBroker, find_free_port

                self.broker = EmbeddedBroker(
                    "127.0.0.1", find_free_port(), log_path=os.path.join(self.log_dir, "tansu.log")
                )
                self.broker.start(timeout=min(self.timeout, 60.0))
                self.bootstrap = self.broker.bootstrap
                self.info = {"kind": "embedded Tansu (memory storage)", "bootstrap": self.bootstrap}
            else:
                check_loopback(self.bootstrap)
                self.info = {"kind": "external", "bootstrap": self.bootstrap}
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def broker_pid(self) -> int | None:
        return self.broker.pid if self.broker is not None else None

    def topic(self, suffix: str, partitions: int) -> str:
        """A fresh topic of this run, created and visible in metadata."""
        name = f"{self.run_id}-{suffix}"
        self.cluster_id = create_topics(self.bootstrap, [name], partitions, self.timeout)
        self.topics.append(name)
        return name

    def start_gateway(self, log_name: str = "gateway.log", nofile: int | None = None) -> GatewayProcess:
        from gateway.kafka.embedded import find_free_port

        gw = GatewayProcess(self.bootstrap, find_free_port(), os.path.join(self.log_dir, log_name),
                            extra_args=self.args.gateway_arg or (), nofile=nofile)
        self.gateways.append(gw)
        try:
            gw.start(self.timeout)
        except BenchError as exc:
            raise BenchError(f"{exc} (log: {gw.log_path})\n{log_tail(gw.log_path)}") from None
        return gw

    def gateway_failed(self, gw: GatewayProcess, exc: BaseException, what: str) -> BenchError:
        return BenchError(
            f"{what}: {exc}\n(gateway {'running' if gw.alive() else 'exited'}; "
            f"log: {gw.log_path})\n{log_tail(gw.log_path)}"
        )

    def stop_gateway(self, gw: GatewayProcess) -> dict[str, Any]:
        gw.stop(timeout=40.0)
        return gw.report()

    def close(self) -> None:
        for gw in self.gateways:
            try:
                gw.stop(timeout=40.0)
            except BaseException:  # keep stopping the rest, even on a second Ctrl-C
                if gw.proc is not None and gw.proc.poll() is None:
                    gw.proc.kill()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        elif self.topics and self.bootstrap:
            delete_topics(self.bootstrap, self.topics)
            self.topics = []


def gateway_reports(rig: Rig) -> list[dict[str, Any]]:
    return [gw.report() for gw in rig.gateways]


# -- output ----------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


#: What a benchmark that reports rounds refuses below: the median of fewer is not a median.
MIN_ROUNDS = 3


def check_rounds(rounds: int) -> str | None:
    if rounds < MIN_ROUNDS:
        return f"--rounds must be at least {MIN_ROUNDS} (the median of the rounds is reported)"
    return None


def spread(values: Iterable[float | None]) -> dict[str, float] | None:
    """Median and min–max of the rounds' values (None where a round has no figure)."""
    xs = [x for x in values if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def round_ratios(rounds: Sequence[dict[str, Any]], top: str, bottom: str,
                 key: str) -> dict[str, float] | None:
    """The median and min–max of ``round[top][key] / round[bottom][key]``: each round's
    figure against the reference measured in that same round."""
    return spread([ratio(r[top][key], r[bottom][key]) for r in rounds
                   if r.get(top) is not None and r.get(bottom) is not None])


def fmt_spread(s: dict[str, float] | None, spec: str) -> str:
    """``median (min–max)``."""
    if s is None:
        return "-"
    return f"{fmt(s['median'], spec)} ({fmt(s['min'], spec)}–{fmt(s['max'], spec)})"


def fmt_pair(a: Sequence[float], b: Sequence[float], spec: str) -> tuple[str, str, str]:
    """Two sides' rounds, interleaved: each side's median (min–max), and the median of the
    rounds' own ratios a/b."""
    return (fmt_spread(spread(a), spec), fmt_spread(spread(b), spec),
            fmt(median_of(spread(ratio(x, y) for x, y in zip(a, b, strict=True))), ".2f"))


def median_of(s: dict[str, float] | None) -> float | None:
    return None if s is None else s["median"]


def print_rows(rows: Sequence[Sequence[str]], indent: str = "") -> None:
    """An aligned table: the first column left-aligned, the others right-aligned."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print(indent + "  ".join(cells).rstrip())


def verdict(row: str, metric: str, gateway: float | None, baseline: float | None,
            baseline_what: str, target: float | None, target_on: str = "gateway",
            unit: str = "", target_text: str | None = None,
            higher_is_better: bool = False,
            rounds_ratio: dict[str, float] | None = None) -> dict[str, Any]:
    """One line of the target table. *target_on*: "gateway" (the gateway's figure must be at
    most *target*) or "ratio" (gateway/baseline must be at most *target*); with
    *higher_is_better*, at least *target* instead (a rate). With *rounds_ratio* (the spread of
    the rounds' own ratios, ``round_ratios``), the ratio shown and judged is its median, not
    the ratio of the medians."""
    r = ratio(gateway, baseline) if rounds_ratio is None else rounds_ratio["median"]
    judged = gateway if target_on == "gateway" else r
    if target is None or judged is None:
        passed = None
    else:
        passed = judged >= target if higher_is_better else judged <= target
    if target_text is None:
        sign = "≥" if higher_is_better else "≤"
        if target is None:
            target_text = "-"
        elif target_on == "ratio":
            target_text = f"{sign} {target:g}× baseline"
        else:
            target_text = f"{sign} {target:g} {unit}".rstrip()
    out = {"row": row, "metric": metric, "unit": unit, "gateway": gateway, "baseline": baseline,
           "baseline_what": baseline_what, "ratio": r, "target": target, "target_on": target_on,
           "target_text": target_text, "pass": passed}
    if higher_is_better:
        out["higher_is_better"] = True  # bench.plot draws it as target / figure
    if rounds_ratio is not None:
        out["ratio_min"], out["ratio_max"] = rounds_ratio["min"], rounds_ratio["max"]
    return out


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _ratio_cell(v: dict[str, Any]) -> str:
    if v["ratio"] is None:
        return "-"
    if v.get("ratio_min") is None:
        return f"{v['ratio']:.2f}×"
    return f"{v['ratio']:.2f}× ({v['ratio_min']:.2f}–{v['ratio_max']:.2f})"


def print_verdicts(verdicts: Iterable[dict[str, Any]]) -> None:
    rows = [("target row", "metric", "gateway", "baseline (same run)", "ratio", "target", "result")]
    for v in verdicts:
        if v.get("skipped"):
            rows.append((v["row"], v.get("metric", ""), "-", "-", "-", v.get("target_text", "-"),
                         "skipped: " + v["skipped"]))
            continue
        unit = f" {v['unit']}" if v["unit"] else ""
        result = {True: "PASS", False: "FAIL", None: "-"}[v["pass"]]
        rows.append((
            v["row"], v["metric"], _num(v["gateway"]) + unit,
            f"{_num(v['baseline'])} ({v['baseline_what']})" if v["baseline"] is not None else "-",
            _ratio_cell(v),
            v["target_text"], result,
        ))
    print_rows(rows)


def print_header(result: dict[str, Any], first_line: str) -> None:
    m, v = result["machine"], result["versions"]
    print(first_line)
    print(
        f"machine:  {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, "
        f"load average {m['loadavg_1m_at_start']:.2f} at start"
    )
    print(
        f"versions: Python {v['python']}, confluent-kafka {v['confluent_kafka']}, "
        f"librdkafka {v['librdkafka']}, gateway {v['gateway']} ({v['git']})"
    )
    if "broker" in result:
        print(f"broker:   {result['broker']['kind']} at {result['broker']['bootstrap']}")
    if result.get("params", {}).get("gateway_args"):
        print(f"gateway:  extra arguments {' '.join(result['params']['gateway_args'])}")


def print_gateway_processes(result: dict[str, Any]) -> None:
    for g in result.get("gateway_processes", []):
        findings = g.get("log_findings", {})
        print(
            f"gateway process: exit status {g.get('exit_code')} after SIGTERM "
            f"({fmt(g.get('stop_s'), '.2f')} s); log {g.get('log')}: "
            f"{findings.get('lines', 0):,} lines, {findings.get('bytes', 0) / 1e6:.1f} MB, "
            f"{findings.get('counts') or 'no warnings or errors'}"
        )
        for line in findings.get("examples", []):
            print(f"  | {line}")


def print_warnings(result: dict[str, Any]) -> None:
    for w in result.get("warnings", []):
        print(f"WARNING: {w}")


def new_result(name: str, args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "benchmark": name,
        "params": dict(params, timeout_s=args.timeout, gateway_args=list(args.gateway_arg or ())),
        "machine": machine_info(),
        "versions": versions(),
        "verdicts": [],
        "warnings": [],
        "series": {},
    }


def other_load_warning(result: dict[str, Any], cores: float | None, what: str) -> None:
    if cores is not None and cores > 0.2:
        result["warnings"].append(
            f"other processes used {cores:.2f} of {result['machine']['nproc']} cores during {what}: "
            "these figures are not comparable with a quiet machine's"
        )


def loop_warning(result: dict[str, Any], what: str, loop_share: float | None, why: str = "") -> None:
    """The check that the load generator was not the bottleneck: at peak, the gateway's event
    loop should be busy nearly all the time."""
    if loop_share is not None and loop_share < SATURATED_LOOP:
        result["warnings"].append(
            f"{what}: the gateway's event loop was at {loop_share:.0%} of a core at peak (< "
            f"{SATURATED_LOOP:.0%}): the gateway was not the bottleneck{why}"
        )


# -- the command line and the run ------------------------------------------------------------


def common_arguments(p: argparse.ArgumentParser, timeout: float = 120.0) -> None:
    p.add_argument("--bootstrap-servers", metavar="LIST",
                   help="use this (loopback) Kafka instead of an embedded Tansu broker")
    p.add_argument("--timeout", type=float, default=timeout, metavar="SECONDS",
                   help=f"limit for each phase (default {timeout:g})")
    p.add_argument("--gateway-arg", action="append", metavar="ARG",
                   help="extra argument for the gateway's command line (repeatable), "
                   "e.g. --gateway-arg=--max-in-flight=4096")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the run into this PNG (matplotlib)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the temporary log directory even when the run succeeds")


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _logs_clean(result: dict[str, Any]) -> bool:
    return all(g.get("exit_code") in (0, None) and not g.get("log_findings", {}).get("counts")
               for g in result.get("gateway_processes", []))


def run_bench(name: str, args: argparse.Namespace,
              run: Callable[[argparse.Namespace, str], dict[str, Any]]) -> dict[str, Any]:
    """Run one benchmark in a fresh log directory; removes the directory when the run was
    clean (unless --keep-logs). Raises BenchError / KeyboardInterrupt with the logs kept."""
    log_dir = tempfile.mkdtemp(prefix=f"{name.replace('.', '-')}-")
    try:
        result = run(args, log_dir)
    except BaseException as exc:
        if isinstance(exc, BenchError):
            raise BenchError(f"{exc}\n(logs in {log_dir})") from None
        raise
    result["log_dir"] = log_dir
    if not args.keep_logs and _logs_clean(result):
        remove_dir(log_dir)
        result["log_dir"] = None
        for g in result.get("gateway_processes", []):
            g["log"] = "clean, removed (--keep-logs keeps it)"
    return result


def bench_main(name: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace, str], dict[str, Any]],
               print_table: Callable[[dict[str, Any]], None], argv: list[str] | None = None,
               check: Callable[[argparse.Namespace], str | None] | None = None) -> int:
    args = parser.parse_args(argv)
    problem = check(args) if check is not None else None
    if args.timeout <= 0:
        problem = "--timeout must be positive"
    if problem:
        print(f"{name}: {problem}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C stops the run (and the clean-up runs) even when started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_bench(name, args, run)
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    if args.plot:
        from bench import plot

        result["plot"] = plot.write_plot([result], args.plot)
    if args.json:
        print(json.dumps(result, indent=None))
    else:
        print_table(result)
        if result.get("plot"):
            print(f"plot: {result['plot']}")
    return 0
