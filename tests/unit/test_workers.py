"""The ``--workers`` supervisor (gateway/workers.py) with stand-in worker commands: a worker that
cannot start (exit status 2) is not restarted, the others are stopped and the supervisor exits 2;
a worker that dies otherwise is restarted."""

from __future__ import annotations

import signal
import sys
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
