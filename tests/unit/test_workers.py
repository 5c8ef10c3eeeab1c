"""The ``--workers`` supervisor (gateway/workers.py) with stand-in worker commands: a worker that
cannot start (exit status 2) is not restarted, the others are stopped and the supervisor exits 2;
a worker that dies otherwise is restarted; every worker hears of the embedded broker's state on
its lifeline, and a worker dies with the process that started it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import workers
from gateway.config import Config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    """The supervisor installs its own handlers: the test runner gets its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def stand_in(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Workers run ``code`` (slot in sys.argv[1]) instead of the gateway."""
    monkeypatch.setattr(workers, "worker_argv", lambda slot: [sys.executable, "-c", code, str(slot)])


def test_a_worker_that_cannot_start_stops_the_gateway_with_status_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    starts = tmp_path / "starts"
    # Slot 0 cannot start (as with its address taken), once slot 1 is up; slot 1 serves until it
    # is told to stop.
    stand_in(monkeypatch, (
        "import signal, sys, time\n"
        f"path = {str(starts)!r}\n"
        "open(path, 'a').write(sys.argv[1] + '\\n')\n"
        "if sys.argv[1] == '0':\n"
        "    deadline = time.monotonic() + 20\n"
        "    while '1' not in open(path).read().split() and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    sys.exit(2)\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "time.sleep(50)\n"
    ))
    supervisor = workers.Supervisor(Config(workers=2, listen=("127.0.0.1", 1)), "127.0.0.1:9")
    assert supervisor.run() == 2
    assert sorted(starts.read_text().split()) == ["0", "1"]  # neither was started again
    assert all(p.poll() is not None for p in supervisor.procs.values())


def test_a_worker_that_dies_is_restarted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    # The first start of slot 0 dies (status 1); its second start stops every worker.
    stand_in(monkeypatch, (
        "import os, signal, sys, time\n"
        f"path = {str(starts)!r}\n"
        "before = open(path).read().split() if os.path.exists(path) else []\n"
        "open(path, 'a').write(sys.argv[1] + '\\n')\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "if sys.argv[1] == '0' and '0' not in before:\n"
        "    sys.exit(1)\n"
        "if sys.argv[1] == '0':\n"
        "    os.kill(os.getppid(), signal.SIGTERM)\n"
        "time.sleep(50)\n"
    ))
    supervisor = workers.Supervisor(Config(workers=1, listen=("127.0.0.1", 1)), "127.0.0.1:9")
    assert supervisor.run() == 0
    assert starts.read_text().split() == ["0", "0"]


def test_the_workers_share_a_private_run_directory_removed_at_exit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    # Each worker notes the directory it was given and its mode, leaves a file in it; slot 1
    # then stops the supervisor.
    stand_in(monkeypatch, (
        "import os, signal, stat, sys, time\n"
        f"path = {str(seen)!r}\n"
        "d = os.environ['GATEWAY_WORKER_RUN_DIR']\n"
        "open(os.path.join(d, 'worker-' + sys.argv[1] + '.sock'), 'w').close()\n"
        "mode = oct(stat.S_IMODE(os.stat(d).st_mode))\n"
        "open(path, 'a').write(sys.argv[1] + ' ' + d + ' ' + mode + '\\n')\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "if sys.argv[1] == '1':\n"
        "    while len(open(path).read().splitlines()) < 2:\n"
        "        time.sleep(0.01)\n"
        "    os.kill(os.getppid(), signal.SIGTERM)\n"
        "time.sleep(50)\n"
    ))
    supervisor = workers.Supervisor(Config(workers=2, listen=("127.0.0.1", 1)), "127.0.0.1:9")
    assert supervisor.run() == 0
    lines = sorted(seen.read_text().splitlines())
    assert [line.split()[0] for line in lines] == ["0", "1"]
    dirs = {line.split()[1] for line in lines}
    assert dirs == {supervisor.run_dir} and all(line.endswith(" 0o700") for line in lines)
    assert supervisor.run_dir is not None and not os.path.exists(supervisor.run_dir)
    assert len(os.fsencode(supervisor.run_dir + "/worker-999.sock")) <= workers.SOCKET_PATH_MAX


# -- the embedded broker's state, from the supervisor to its workers (the lifeline) ------------
class FakeKeeper:
    """The supervisor's broker keeper: ``tell`` is a change of the broker's state."""

    def __init__(self, down: str | None) -> None:
        self.down = down
        self.watchers: list = []

    def watch(self, callback) -> None:
        self.watchers.append(callback)
        callback(self.down)

    def unwatch(self, callback) -> None:
        self.watchers.remove(callback)

    def tell(self, down: str | None) -> None:
        self.down = down
        for callback in list(self.watchers):
            callback(down)


# Each stand-in worker writes every lifeline line it reads to a file; slot 0 stops the
# supervisor when it reads a line starting as its third argument says ("never": it does not).
LISTENER = (
    "import os, signal, sys\n"
    "slot, path, last = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "for line in sys.stdin:\n"
    "    open(path, 'a').write(slot + ' ' + line)\n"
    "    if slot == '0' and line.startswith(last):\n"
    "        os.kill(os.getppid(), signal.SIGTERM)\n"
)


def listening_stand_in(monkeypatch: pytest.MonkeyPatch, path: Path, last: str) -> None:
    monkeypatch.setattr(
        workers, "worker_argv", lambda slot: [sys.executable, "-c", LISTENER, str(slot), str(path), last]
    )


def _wait_file(path: Path, predicate, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if predicate(text):
            return text
        assert time.monotonic() < deadline, text
        time.sleep(0.02)


def test_every_worker_hears_each_change_of_the_embedded_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    heard = tmp_path / "heard"
    listening_stand_in(monkeypatch, heard, "never")
    keeper = FakeKeeper(None)
    supervisor = workers.Supervisor(Config(workers=2, listen=("127.0.0.1", 1)), "127.0.0.1:9", keeper)  # type: ignore[arg-type]

    def broker_dies_and_comes_back() -> None:
        while len(supervisor.lifelines) < 2:
            time.sleep(0.01)
        keeper.tell("the embedded broker was killed by SIGKILL; it is being restarted")
        _wait_file(heard, lambda t: t.count("broker-down") == 2)
        keeper.tell(None)
        _wait_file(heard, lambda t: t.count("broker-up") == 2)
        os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's handler: stop the workers

    news = threading.Thread(target=broker_dies_and_comes_back)
    news.start()
    assert supervisor.run() == 0
    news.join()
    lines = heard.read_text().splitlines()
    for slot in "01":
        assert [line for line in lines if line.startswith(slot + " ")][:2] == [
            f"{slot} broker-down the embedded broker was killed by SIGKILL; it is being restarted",
            f"{slot} broker-up",
        ]
    assert keeper.watchers == []  # the supervisor stopped listening when it stopped


def test_a_worker_started_while_the_broker_is_down_is_told_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    heard = tmp_path / "heard"
    listening_stand_in(monkeypatch, heard, "broker-down")
    keeper = FakeKeeper("the embedded broker exited with status 1; it is being restarted")
    supervisor = workers.Supervisor(Config(workers=1, listen=("127.0.0.1", 1)), "127.0.0.1:9", keeper)  # type: ignore[arg-type]
    assert supervisor.run() == 0
    assert heard.read_text() == "0 broker-down the embedded broker exited with status 1; it is being restarted\n"


def test_the_lifeline_reads_whole_lines_and_ends_when_the_supervisor_is_gone() -> None:
    loop = asyncio.new_event_loop()
    read_end, write_end = os.pipe()
    told: list[str | None] = []
    gone: list[str] = []
    lifeline = workers.Lifeline(loop, told.append, gone.append, fd=read_end)
    try:
        os.write(write_end, workers.broker_line("killed by SIGKILL") + b"broker-u")
        lifeline.start()  # what is there already is read at once
        assert told == ["killed by SIGKILL"]
        os.write(write_end, b"p\n" + workers.broker_line("line\nbreaks  and " + "x" * 5000))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert told[1] is None
        assert told[2] is not None and told[2].startswith("line breaks and xxx")
        assert len(workers.broker_line("x" * 5000)) <= workers.LINE_MAX  # one atomic pipe write
        assert not gone
        os.close(write_end)  # the supervisor is gone: every write end is closed
        loop.run_until_complete(asyncio.sleep(0.05))
        assert gone == ["its lifeline was closed"]
        assert len(told) == 3
    finally:
        lifeline.close()
        os.close(read_end)
        loop.close()


def test_a_child_of_parent_death_preexec_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """The supervisor killed with SIGKILL: its child (a worker) gets the parent-death signal."""
    pid_file = tmp_path / "child"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import signal, subprocess, sys, time\n"
        "from gateway.kafka.embedded import parent_death_preexec\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                         preexec_fn=parent_death_preexec(signal.SIGHUP))\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.02)
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 2
        while _alive(child):
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.01)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _alive(pid: int) -> bool:
    """Running (not gone, and not a zombie waiting for its new parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
